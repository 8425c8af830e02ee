"""`sipdiag fleet` over `sipdiag watch` timelines (issue 18): per agent the share of time
registered and reachable, the count of each event, the last sample and agents that stopped
reporting; the Prometheus series and the ECS documents (one sipdiag.run per watch and hour, one
per event). Real timelines (TimelineWriter) read by real DuckDB."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli
from prometheus_client.parser import text_string_to_metric_families
from timelinedata import Watch, at, headset_watch


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timelines' cache in a directory of the test's own (not among the paths it gives
    match and fleet), not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


def fleet(*args: str) -> Any:
    r = cli("fleet", *args)
    assert r.code == 0, r.err
    return r


def three_agents(directory: Path) -> None:
    """A-17: the headset example (ends at 11:08:30 without an end line, still current);
    A-20: 10 samples a minute apart, unregistered for the 3rd and 4th, unreachable for the 5th,
    ended by Ctrl-C at 11:10; A-21: stopped sampling at 10:30 without an end line."""
    headset_watch(directory).close()
    w = Watch(directory / "a20.jsonl", "w20", "A-20", start=at(11, 0), hostname="pc20")
    for m in range(10):
        w.sample(at(11, m), registered=m not in (2, 3), inbound_reachable=m != 4)
    w.event(at(11, 2), "registration_lost", code=408)
    w.event(at(11, 4), "registration_recovered", code=200)
    w.end(at(11, 10))
    w.close()
    w = Watch(directory / "a21.jsonl", "w21", "A-21", start=at(10, 0))
    for m in range(0, 31, 10):
        w.sample(at(10, m))
    w.close()


def test_each_agent_gets_its_share_of_time_registered_and_reachable_and_its_events(
    tmp_path: Path,
) -> None:
    three_agents(tmp_path)
    s = fleet(str(tmp_path), "--format", "json").json
    assert (s["timelines_read"], s["timelines_skipped"], s["reports_read"]) == (3, 0, 0)
    agents = {a["agent"]: a for a in s["watch_agents"]}
    assert sorted(agents) == ["A-17", "A-20", "A-21"]
    a20 = agents["A-20"]
    # 10 samples, each holding a minute (the last one interval): 2 of 10 minutes unregistered.
    assert a20["samples"] == 10 and a20["observed_s"] == 600.0
    assert a20["registered_ratio"] == 0.8 and a20["inbound_reachable_ratio"] == 0.9
    assert a20["events"] == {"registration_lost": 1, "registration_recovered": 1}
    assert a20["ended"] == "interrupted" and a20["stopped_reporting"] is False
    assert a20["last_sample"] == "2026-12-02T11:09:00.000Z"
    assert a20["last_sample_timestamp"] == at(11, 9).timestamp()
    assert agents["A-21"]["stopped_reporting"] is True  # 39 min before the newest sample
    assert agents["A-17"]["stopped_reporting"] is False
    assert agents["A-17"]["events"]["audio_device_removed"] == 1
    # 3 of the 9 minutes unregistered (11:04:30 to 11:07:30), one without a device.
    assert agents["A-17"]["registered_ratio"] == round(6 / 9, 4)
    text = fleet(str(tmp_path)).out
    assert "A-20: registered 80.0%, reachable 90.0%, 10 samples until" in text
    assert "A-21: registered 100.0%" in text and "stopped reporting" in text
    md = fleet(str(tmp_path), "--format", "md").out
    assert "| A-20 | 80.0% | 90.0% | 10 |" in md


def test_since_leaves_out_older_samples_and_events(tmp_path: Path) -> None:
    three_agents(tmp_path)
    s = fleet(str(tmp_path), "--format", "json", "--since", "2026-12-02T11:04:00Z").json
    agents = {a["agent"]: a for a in s["watch_agents"]}
    assert "A-21" not in agents
    assert agents["A-20"]["samples"] == 6 and agents["A-20"]["registered_ratio"] == 1.0
    assert agents["A-20"]["events"] == {"registration_recovered": 1}


def test_prometheus_gets_the_watch_series_and_parses(tmp_path: Path) -> None:
    three_agents(tmp_path)
    out = fleet(str(tmp_path), "--format", "prom").out
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert samples[("sipdiag_watch_registered_ratio", (("agent", "A-20"),))] == 0.8
    assert samples[("sipdiag_watch_inbound_reachable_ratio", (("agent", "A-20"),))] == 0.9
    assert samples[
        ("sipdiag_watch_events_total", (("agent", "A-20"), ("event", "registration_lost")))
    ] == 1  # fmt: skip
    assert samples[("sipdiag_watch_last_sample_timestamp_seconds", (("agent", "A-21"),))] == (
        at(10, 30).timestamp()
    )
    assert samples[("sipdiag_watch_stopped_reporting", (("agent", "A-21"),))] == 1
    assert out == fleet(str(tmp_path), "--format", "prom").out  # the same files, the same text


def test_ecs_has_a_sipdiag_run_document_per_watch_and_hour_and_one_per_event(
    tmp_path: Path,
) -> None:
    three_agents(tmp_path)
    lines = fleet(str(tmp_path), "--format", "ndjson").out.splitlines()
    docs = [json.loads(line) for line in lines]  # each line valid JSON
    assert all(d["event"]["dataset"] for d in docs)
    runs = [d for d in docs if d["event"]["dataset"] == "sipdiag.run"]
    events = [d for d in docs if d["event"]["dataset"] == "sipdiag.watch_event"]
    assert len(docs) == len(runs) + len(events)
    # sampled in the 11:00 hour, A-21 in the 10:00 hour.
    assert sorted((d["sipdiag"]["agent"], d["@timestamp"]) for d in runs) == [
        ("A-17", "2026-12-02T11:00:00.000Z"),
        ("A-20", "2026-12-02T11:00:00.000Z"),
        ("A-21", "2026-12-02T10:00:00.000Z"),
    ]
    a21 = next(d for d in runs if d["sipdiag"]["agent"] == "A-21")
    assert a21["event"]["outcome"] == "success" and a21["sipdiag"]["samples"] == 4
    a20 = next(d for d in runs if d["sipdiag"]["agent"] == "A-20")
    assert a20["event"]["outcome"] == "failure" and a20["labels"]["verdict"] == "degraded"
    assert a20["sipdiag"]["registered_ratio"] == 0.8 and a20["host"]["name"] == "pc20"
    assert len(events) == 6  # 4, A-20: 2
    lost = next(d for d in events if d["event"]["action"] == "registration_lost")
    assert lost["@timestamp"] == "2026-12-02T11:02:00.000Z"
    assert lost["event"]["category"] == ["authentication"]
    assert lost["sipdiag"]["evidence"] == {"code": 408}


def test_timelines_and_garbage_side_by_side_are_read_and_skipped(tmp_path: Path) -> None:
    three_agents(tmp_path)
    (tmp_path / "notes.jsonl").write_text("not json\n")
    (tmp_path / "stray.json").write_text("{}")
    with (tmp_path / "a20.jsonl").open("ab") as f:
        f.write(b'{"v":1,"type":"sample","watch_id":"w20","seq":77,"t":"2026-12-02T11:11')
    s = fleet(str(tmp_path), "--format", "json").json
    assert s["timelines_read"] == 3
    assert s["skipped_timelines"] == [
        {"path": str(tmp_path / "notes.jsonl"), "reason": "not a sipdiag timeline"}
    ]
    assert [x["path"] for x in s["skipped"]] == [str(tmp_path / "stray.json")]
    assert {a["agent"]: a["samples"] for a in s["watch_agents"]}["A-20"] == 10


def test_a_fifo_among_the_timelines_is_skipped_never_opened_for_a_blocking_read(
    tmp_path: Path,
) -> None:
    """A FIFO named like a timeline (or a rotated one) would block a read for ever: fleet and
    match list it as not a regular file and go on."""
    headset_watch(tmp_path).close()
    os.mkfifo(tmp_path / "x.jsonl")
    os.mkfifo(tmp_path / "A-17.jsonl.1")
    s = fleet(str(tmp_path), "--format", "json").json
    assert s["timelines_read"] == 1
    assert s["skipped_timelines"] == [
        {"path": str(tmp_path / name), "reason": "not a regular file"}
        for name in ("A-17.jsonl.1", "x.jsonl")
    ]
    assert {a["agent"]: a["samples"] for a in s["watch_agents"]} == {"A-17": 9}
    named = fleet(str(tmp_path / "A-17.jsonl"), "--format", "json").json  # brings its siblings
    assert named["timelines_read"] == 1


def test_a_line_longer_than_duckdbs_buffer_is_dropped_not_the_run(tmp_path: Path) -> None:
    """A 40 MB line (garbage in a file over 16 MiB) made DuckDB's reader fail the whole run even
    with ignore_errors: it is dropped, as read_lines drops it, the rest read."""
    headset_watch(tmp_path / "tl").close()
    path = tmp_path / "tl" / "A-17.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    with path.open("wb") as f:
        f.writelines(lines[:3])
        f.write(b"A" * 40_000_000 + b"\n")
        f.writelines(lines[3:])
    s = fleet(str(tmp_path / "tl"), "--format", "json").json
    assert {a["agent"]: a["samples"] for a in s["watch_agents"]} == {"A-17": 9}
    report = cli("report", str(path), "--format", "json")
    assert report.code == 0, report.err
    log = tmp_path / "log.csv"
    log.write_text(
        "Date/Time;Agent;Status;Call ID\n"
        "02/12/2026 11:02:10;A-17;Failure (Rejected – SIP 403 Forbidden);c1\n",
        encoding="utf-8",
    )
    r = cli("match", "--log", str(log), str(tmp_path / "tl"), "--format", "json")
    assert r.code == 0, r.err
    assert r.json["rows"][0]["timeline"]["likely_cause"] == "audio.no_input_device"
