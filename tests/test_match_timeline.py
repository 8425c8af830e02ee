"""`sipdiag match` against `sipdiag watch` timelines (issue 18): a failure row is paired with the
agent's state at its time (the sample before and after, the events between) and gets a likely
cause from them, with the times. Real timelines (TimelineWriter), real exports, real DuckDB."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli
from logdata import RealReports, make_real_reports, started
from peers.kamailio import Kamailio
from timelinedata import Watch, at, headset_watch

from diag.logs import timeline_set
from diag.logs.match import run_match
from diag.logs.timeline_match import timeline_rows
from diag.render.match import MATCH_COLUMNS
from diag.timeline import read_lines


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timelines' cache in a directory of the test's own (not among the paths it gives
    match and fleet), not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


HEADER = "Date/Time;Agent;Status;Call ID"
FORBIDDEN = "Failure (Rejected – SIP 403 Forbidden)"
NO_ANSWER = "Failure (No Answer)"


def export(path: Path, *rows: tuple[str, str, str, str]) -> Path:
    path.write_text("\n".join([HEADER, *(";".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return path


def match(log: Path, *args: str) -> CliResult:
    return cli("match", "--log", str(log), *args)


def match_json(log: Path, *args: str) -> dict[str, Any]:
    r = match(log, *args, "--format", "json")
    assert r.code == 0, r.err
    loaded: dict[str, Any] = r.json
    return loaded


def row(result: dict[str, Any], call_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in result["rows"] if r["call_id"] == call_id)
    return found


def test_a_403_while_the_headset_was_unplugged_names_the_audio_cause_with_its_times(
    tmp_path: Path,
) -> None:
    headset_watch(tmp_path / "tl").close()
    log = export(tmp_path / "log.csv", ("02/12/2026 11:02:10", "A-17", FORBIDDEN, "c1"))
    result = match_json(log, str(tmp_path / "tl"))
    r = row(result, "c1")
    assert r["decided_by"] == "timeline" and r["run_id"] is None
    assert r["likely_cause"] == (
        "403 at 11:02:10 UTC — Jabra Evolve removed 11:01:52, back 11:03:05 → audio.no_input_device"
    )
    tl = r["timeline"]
    assert tl["watch_id"] == "watch-A-17" and tl["likely_cause"] == "audio.no_input_device"
    assert tl["explanation"] == r["likely_cause"]
    assert tl["before"]["t"] == "2026-12-02T11:01:30.000Z"
    assert tl["before"]["state"]["devices_present"] is True
    assert tl["after"]["t"] == "2026-12-02T11:02:30.000Z"
    assert tl["after"]["state"]["devices_present"] is False
    assert tl["events"] == [
        {"t": "2026-12-02T11:01:52.000Z", "event": "audio_device_removed",
         "evidence": {"name": "Jabra Evolve"}},
    ]  # fmt: skip
    s = result["summary"]
    assert (s["timelines_read"], s["matched_by_timeline"], s["decided_by_timeline"]) == (1, 1, 1)
    assert s["matched"] == 1 and s["unmatched"] == 0


def test_a_row_while_registration_was_lost_points_at_sip_not_registered(tmp_path: Path) -> None:
    headset_watch(tmp_path / "tl").close()
    log = export(tmp_path / "log.csv", ("02/12/2026 11:06:00", "A-17", NO_ANSWER, "c2"))
    r = row(match_json(log, str(tmp_path / "tl")), "c2")
    assert r["timeline"]["likely_cause"] == "sip.not_registered"
    # No event between the two samples: the samples said it, the events around it say when.
    assert r["likely_cause"] == (
        "Failure (No Answer) at 11:06:00 UTC — registration lost (408) 11:04:30, "
        "not registered (sample) 11:05:30, registered again 11:07:10 → sip.not_registered"
    )
    assert r["timeline"]["events"] == []
    assert r["timeline"]["before"]["state"]["registered"] is False


def test_the_agents_clock_offset_is_taken_off_the_timeline_times(tmp_path: Path) -> None:
    # The agent's clock runs 2 minutes ahead: its lines say 11:04:10 for 11:02:10.
    headset_watch(tmp_path / "tl", skew_ms=120_000).close()
    first = next(read_lines(tmp_path / "tl" / "A-17.jsonl"))
    assert first["t"] == "2026-12-02T11:02:00.000Z"
    log = export(tmp_path / "log.csv", ("02/12/2026 11:02:10", "A-17", FORBIDDEN, "c1"))
    r = row(match_json(log, str(tmp_path / "tl")), "c1")
    assert r["timeline"]["before"]["t"] == "2026-12-02T11:01:30.000Z"
    assert r["timeline"]["before"]["state"]["clock_offset_ms"] == 120_000
    assert r["timeline"]["likely_cause"] == "audio.no_input_device"
    assert "removed 11:01:52, back 11:03:05" in r["likely_cause"]


def test_rotated_files_and_a_partial_last_line_are_read_as_read_lines_reads_them(
    tmp_path: Path,
) -> None:
    w = Watch(tmp_path / "w.jsonl", "rot", "A-40", start=at(10, 0), max_bytes=2500)
    for m in range(1, 31):
        w.sample(at(10, m), registered=m < 20)  # unregistered from 10:20
    w.close()
    with (tmp_path / "w.jsonl").open("ab") as f:  # a kill -9 in the middle of a write
        f.write(b'{"v":1,"type":"sample","watch_id":"rot","seq":99,"t":"2026-12-02T10:25:0')
    rotated = sorted(p.name for p in tmp_path.glob("w.jsonl.*"))
    assert rotated and len(rotated) <= 5
    kept = [x for x in read_lines(tmp_path / "w.jsonl") if x["type"] == "sample"]
    log = export(
        tmp_path / "log.csv",
        ("02/12/2026 10:25:30", "A-40", NO_ANSWER, "late"),
        ("02/12/2026 10:10:30", "A-40", NO_ANSWER, "early"),
    )
    # Named as a file, the current one brings its rotated siblings.
    result = match_json(log, str(tmp_path / "w.jsonl"))
    assert result["summary"]["timelines_read"] == 1 and result["skipped_timelines"] == []
    late, early = row(result, "late"), row(result, "early")
    assert late["timeline"]["likely_cause"] == "sip.not_registered"
    assert late["timeline"]["before"]["t"] == "2026-12-02T10:25:00.000Z"
    assert any(x["t"] == "2026-12-02T10:10:00.000Z" for x in kept)  # in a rotated file
    assert early["timeline"]["likely_cause"] is None
    assert "show nothing wrong" in early["likely_cause"]
    fleet = cli("fleet", str(tmp_path), "--format", "json").json
    assert fleet["watch_agents"][0]["samples"] == len(kept) == 30


def test_a_rotated_timeline_is_still_matched_by_the_start_line_each_file_repeats(
    tmp_path: Path,
) -> None:
    w = Watch(tmp_path / "w.jsonl", "old", "A-41", start=at(10, 0), max_bytes=600, keep=1)
    for m in range(1, 11):
        w.sample(at(10, m))
    w.close()
    log = export(tmp_path / "log.csv", ("02/12/2026 10:09:30", "A-41", NO_ANSWER, "x"))
    result = match_json(log, str(tmp_path))
    assert result["summary"]["timelines_read"] == 1
    assert row(result, "x")["timeline"]["watch_id"] == "old"


def test_a_timeline_without_its_start_line_is_skipped_with_the_reason(tmp_path: Path) -> None:
    # As written before start lines were repeated after rotation: the first file rotated away.
    w = Watch(tmp_path / "w.jsonl", "old", "A-41", start=at(10, 0))
    for m in range(1, 11):
        w.sample(at(10, m))
    w.close()
    lines = (tmp_path / "w.jsonl").read_text().splitlines()
    (tmp_path / "w.jsonl").write_text("\n".join(lines[1:]) + "\n")
    log = export(tmp_path / "log.csv", ("02/12/2026 10:09:30", "A-41", NO_ANSWER, "x"))
    result = match_json(log, str(tmp_path))
    assert result["summary"]["timelines_read"] == 0
    assert {s["reason"] for s in result["skipped_timelines"]} == {"timeline without its start line"}
    assert row(result, "x")["timeline"] is None


def test_a_row_outside_the_watched_time_is_not_paired_with_it(tmp_path: Path) -> None:
    headset_watch(tmp_path / "tl").close()
    log = export(tmp_path / "log.csv", ("02/12/2026 09:00:00", "A-17", NO_ANSWER, "c9"))
    r = row(match_json(log, str(tmp_path / "tl")), "c9")
    assert r["timeline"] is None and r["decided_by"] is None
    assert r["likely_cause"].startswith("no report from this agent within the window")


def test_a_sleep_between_the_samples_says_the_machine_was_asleep(tmp_path: Path) -> None:
    w = Watch(tmp_path / "s.jsonl", "sleepy", "A-50", start=at(9, 0))
    w.sample(at(9, 0))
    w.event(at(9, 40), "sleep_resume", slept_s=2390.0, wall_s=2400.0)
    w.sample(at(9, 40, 5))
    w.close()
    log = export(tmp_path / "log.csv", ("02/12/2026 09:20:00", "A-50", NO_ANSWER, "z"))
    r = row(match_json(log, str(tmp_path)), "z")
    assert r["timeline"]["likely_cause"] is None
    assert r["likely_cause"] == (
        "Failure (No Answer) at 09:20:00 UTC — the machine was asleep for 2390 s, woke 09:40:00 "
        "→ no cause ID"
    )


def test_timeline_rows_lists_the_rows_of_one_watch_for_the_timeline_report(
    tmp_path: Path,
) -> None:
    headset_watch(tmp_path / "tl").close()
    headset_watch(tmp_path / "tl", agent="A-18").close()
    log = export(
        tmp_path / "log.csv",
        ("02/12/2026 11:06:00", "A-17", NO_ANSWER, "c2"),
        ("02/12/2026 11:02:10", "A-17", FORBIDDEN, "c1"),
        ("02/12/2026 11:02:10", "A-18", FORBIDDEN, "other"),
    )
    result = run_match(log, [tmp_path / "tl"], {}, 4 * 3600, "UTC")
    rows = timeline_rows(result, "watch-A-17")
    assert [r["call_id"] for r in rows] == ["c1", "c2"]
    assert rows[0] == {
        "time": "2026-12-02T11:02:10Z",
        "status": FORBIDDEN,
        "likely_cause": "audio.no_input_device",
        "explanation": "403 at 11:02:10 UTC — Jabra Evolve removed 11:01:52, back 11:03:05 "
        "→ audio.no_input_device",
        "call_id": "c1",
    }
    assert timeline_rows(result, "no-such-watch") == []


def test_hostile_strings_in_a_timeline_do_not_break_csv_markdown_or_text(tmp_path: Path) -> None:
    agent = "=HYPERLINK(1)|x"
    w = Watch(tmp_path / "h.jsonl", "evil|\x1b[31m", agent, start=at(11, 0))
    w.sample(at(11, 0, 30))
    w.event(at(11, 1), "audio_device_removed", name="=cmd|' /C calc'!A0\n| \x1b[2J \u202e")
    w.sample(at(11, 1, 30), devices_present=False)
    w.close()
    log = export(tmp_path / "log.csv", ("02/12/2026 11:01:10", agent, FORBIDDEN, "h1"))
    r = match(log, str(tmp_path), "--format", "csv")
    assert r.code == 0, r.err
    rows = list(csv.reader(io.StringIO(r.out)))
    assert rows[0] == list(MATCH_COLUMNS) and len(rows) == 2
    cells = dict(zip(MATCH_COLUMNS, rows[1], strict=True))
    assert cells["timeline_cause"] == "audio.no_input_device"
    assert cells["watch_id"] == "evil|\x1b[31m"  # not a formula: kept as it is
    for name in ("agent", "likely_cause", "timeline_explanation"):
        assert not cells[name].startswith(("=", "+", "-", "@")), cells[name]
    md = match(log, str(tmp_path), "--format", "md")
    table = [x for x in md.out.splitlines() if x.startswith("| ")]
    assert len(table) == 2  # the header and one row: no line break or pipe escaped the cell
    unescaped = [line.replace("\\|", "").count("|") for line in table]
    assert unescaped[0] == unescaped[1] == len(MATCH_COLUMNS) + 1
    text = match(log, str(tmp_path))
    assert "\x1b" not in text.out and "\u202e" not in text.out and "\x1b" not in md.out
    assert "evidence" in json.dumps(match_json(log, str(tmp_path))["rows"][0]["timeline"])


@pytest.fixture(scope="module")
def reports(kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealReports]:
    yield make_real_reports(kamailio, tmp_path_factory.mktemp("match-timeline"))


def test_timelines_mixed_with_reports_the_nearer_evidence_decides(
    reports: RealReports, tmp_path: Path
) -> None:
    both = tmp_path / "both"
    both.mkdir()
    for report in (reports.ok, reports.bad):
        (both / f"{report['run_id']}.json").write_text(json.dumps(report))
    (both / "platform-export.jsonl").write_text('{"Status": "not a timeline"}\n')
    t0 = started(reports.ok)  # A-17's healthy report
    w = Watch(both / "a17.jsonl", "mixed", "A-17", start=t0)
    w.sample(t0 + dt_s(3600 - 20))
    w.sample(t0 + dt_s(3600 + 40), registered=False)
    w.close()

    def when(seconds: float) -> str:
        return (t0 + dt_s(seconds)).strftime("%d/%m/%Y %H:%M:%S")

    log = export(
        tmp_path / "log.csv",
        (when(60), "A-17", NO_ANSWER, "near-report"),
        (when(3600), "A-17", NO_ANSWER, "near-timeline"),
    )
    result = match_json(log, str(both))
    near_report, near_timeline = row(result, "near-report"), row(result, "near-timeline")
    assert near_report["decided_by"] == "report" and near_report["timeline"] is None
    assert near_report["run_id"] == reports.ok["run_id"]
    assert near_timeline["decided_by"] == "timeline"
    assert near_timeline["run_id"] == reports.ok["run_id"]  # paired with both
    assert near_timeline["timeline"]["likely_cause"] == "sip.not_registered"
    assert near_timeline["likely_cause"] == near_timeline["timeline"]["explanation"]
    s = result["summary"]
    assert (s["reports_read"], s["timelines_read"], s["reports_skipped"]) == (2, 1, 0)
    assert result["skipped_timelines"] == [
        {"path": str(both / "platform-export.jsonl"), "reason": "not a sipdiag timeline"}
    ]
    text = match(log, str(both))
    assert "      timeline: " not in text.out.split("\n")[1]  # decided by the timeline itself
    assert "rows paired with a timeline 1, decided by it 1" in text.out


def dt_s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def test_match_reads_only_the_rotated_files_near_the_rows_of_the_export(tmp_path: Path) -> None:
    w = Watch(tmp_path / "long.jsonl", "long", "A-60", start=at(0, 0), max_bytes=4000)
    for h in range(12):
        for m in range(0, 60, 10):
            w.sample(at(h, m), registered=h != 11)
    w.close()
    found = timeline_set.collect([tmp_path])
    spans = found.spans("long")
    assert len(spans) == 6 and spans[-1][2] is None  # 5 rotated files and the current one
    near = timeline_set.needed_files(found, {"long": (int(at(11, 5).timestamp() * 1e6),) * 2}, 0)
    assert near == [spans[-1][0]]
    assert len(timeline_set.needed_files(found, {"long": (0, 2**62)}, 0)) == 6
    log = export(tmp_path / "log.csv", ("02/12/2026 11:05:00", "A-60", NO_ANSWER, "r"))
    r = row(match_json(log, "--window", "30m", str(tmp_path)), "r")
    assert r["timeline"]["likely_cause"] == "sip.not_registered"


def test_a_file_holding_several_watches_is_read_for_each_of_them(tmp_path: Path) -> None:
    """Timelines concatenated into one file (or appended to by an older watch): each watch's
    start line in it names its agent, so every watch's rows are paired, fleet counts every
    sample, and a second run (from the cache) says the same."""
    parts = tmp_path / "parts"
    w1 = Watch(parts / "a.jsonl", "w-morning", "A-17", start=at(9, 0))
    for m in range(5):
        w1.sample(at(9, m, 30), registered=m != 2)
    w1.end(at(9, 5))
    w1.close()
    headset_watch(parts).close()  # A-17 again, 11:00-11:08:30: the Jabra out at 11:02:30
    w3 = Watch(parts / "c.jsonl", "w-other", "B-9", start=at(12, 0), interval_s=600)
    for m in (0, 10, 20):
        w3.sample(at(12, m), devices_present=m != 10)
    w3.close()
    both = tmp_path / "tl" / "A-17-and-B-9.jsonl"
    both.parent.mkdir()
    both.write_bytes(
        b"".join((parts / n).read_bytes() for n in ("a.jsonl", "A-17.jsonl", "c.jsonl"))
    )
    log = export(
        tmp_path / "log.csv",
        ("02/12/2026 09:02:40", "A-17", FORBIDDEN, "m1"),
        ("02/12/2026 11:02:10", "A-17", FORBIDDEN, "h1"),
        ("02/12/2026 12:10:05", "B-9", FORBIDDEN, "b1"),
    )
    for _ in range(2):  # parsed, then from the cache
        result = match_json(log, str(tmp_path / "tl"))
        causes = {r["call_id"]: r["timeline"]["likely_cause"] for r in result["rows"]}
        no_device = "audio.no_input_device"
        assert causes == {"m1": "sip.not_registered", "h1": no_device, "b1": no_device}
        assert row(result, "h1")["timeline"]["watch_id"] == "watch-A-17"
        assert row(result, "m1")["timeline"]["watch_id"] == "w-morning"
        assert result["skipped_timelines"] == []
    r = cli("fleet", str(tmp_path / "tl"), "--format", "json")
    assert r.code == 0, r.err
    samples = {a["agent"]: a["samples"] for a in r.json["watch_agents"]}
    assert samples == {"A-17": 5 + 9, "B-9": 3}
