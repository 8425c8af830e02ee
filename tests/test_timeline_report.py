"""`sipdiag report TIMELINE.jsonl` (issue 18): time in each state with gaps, the worst moments,
every event, central-log rows; text, Markdown, JSON and a self-contained HTML page whose lanes a
real headless Chromium draws at 1280 and 760 px and prints."""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli
from peers.chromium import chromium, probe
from peers.process import PeerStartError

from diag.render.timeline import render_timeline
from diag.timeline import TimelineWriter, read_lines
from diag.timeline_report import NO_END, summarise

T0 = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.timezone.utc)
GOOD = {"registered": True, "inbound_reachable": True, "quality_ok": True, "devices_present": True}
NETWORK = {"default_route": "wlan0", "addresses": {"wlan0": ["192.0.2.7"]}, "vpn": []}
CHECKS_OK = {"sip.bindings": {"status": "pass", "summary": "one registration"}}
AGENT: dict[str, Any] = {
    "id": "A-17",
    "sip_uri": "sip:1001@pbx.example.com",
    "numbers": ["+442079460123"],
}
# Central-log rows as `match` pairs them: one inside each worst moment, one after the watch.
PAIRED: list[dict[str, Any]] = [
    {"time": "2026-12-02T11:04:10.000Z", "status": "403", "likely_cause": "sip.not_registered",
     "explanation": "the agent was not registered", "call_id": "c-1@pbx"},
    {"time": "2026-12-02T11:21:30.000Z", "status": "480", "likely_cause": None,
     "explanation": "no answer", "call_id": None},
    {"time": "2026-12-02T12:30:00.000Z", "status": "200", "likely_cause": None,
     "explanation": "answered"},
]  # fmt: skip


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def write_timeline(path: Path, *, end: bool = True, hostile: str = "") -> Path:
    """A 22-minute watch every 60 s: registration lost at +180 s (inbound too at +240 s), back at
    +300 s; asleep from +360 s to +1200 s; the headset unplugged at +1230 s, back at +1320 s."""
    w = TimelineWriter(path, "w-1", now=lambda: T0)
    agent = {**AGENT, "id": AGENT["id"] + hostile}
    w.write("start", {"interval_s": 60, "host": {"hostname": "pc17" + hostile},
                      "sipdiag": "0.1.0", "agent": agent, "mono": 0.0}, _at(0))  # fmt: skip

    def sample(at: float, quality: bool | None = True, **state: bool) -> None:
        merged = {**GOOD, "quality_ok": quality, **state}
        checks = dict(CHECKS_OK)
        if not merged["registered"]:
            checks["sip.bindings"] = {"status": "fail", "summary": "no binding" + hostile}
        fields = {"mono": at, "state": merged, "checks": checks, "causes": [], "call_ids": [],
                  "network": NETWORK, "metrics": {"mos": 4.2}}  # fmt: skip
        w.write("sample", fields, _at(at))

    def event(at: float, kind: str, by: str = "sample", **evidence: Any) -> None:
        w.write("event", {"event": kind, "evidence": evidence, "detected_by": by}, _at(at))

    sample(0)
    sample(60, quality=None)
    sample(120)
    event(180, "registration_lost", code=503, reason="Service Unavailable" + hostile)
    sample(180, registered=False)
    sample(240, registered=False, inbound_reachable=False)
    event(240, "inbound_lost", detail="no OPTIONS answer")
    event(300, "registration_recovered", code=200)
    event(300, "inbound_recovered", detail=None)
    sample(300)
    sample(360)
    event(1200, "sleep_resume", slept_s=780.0, wall_s=840.0)
    sample(1200)
    event(1230, "audio_device_removed", by="notification", name="Jabra Evolve2" + hostile)
    sample(1260, devices_present=False)
    event(1320, "audio_device_added", name="Jabra Evolve2")
    sample(1320)
    if end:
        w.write("end", {"reason": "interrupted", "samples": 10, "events": 7}, _at(1340))
    w.close()
    return path


def _summary(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    lines = list(read_lines(write_timeline(tmp_path / "watch.jsonl", **kw)))
    return summarise(lines, PAIRED)


def test_time_in_each_state_counts_a_long_gap_as_unknown_and_the_last_sample_until_the_end(
    tmp_path: Path,
) -> None:
    s = _summary(tmp_path)
    # Samples hold to the next one; +360 s holds one interval (the gap to +1200 s is > 3
    # intervals), the rest of the gap is unknown; +1320 s holds until the end line at +1340 s.
    assert s["span"] == {"from": "2026-12-02T11:00:00.000Z", "to": "2026-12-02T11:22:20.000Z",
                         "seconds": 1340.0}  # fmt: skip
    reg = s["states"]["registered"]
    assert (reg["true_s"], reg["false_s"], reg["unknown_s"]) == (440.0, 120.0, 780.0)
    assert (reg["true_pct"], reg["false_pct"], reg["unknown_pct"]) == (32.8, 9.0, 58.2)
    inbound = s["states"]["inbound_reachable"]
    assert (inbound["true_s"], inbound["false_s"]) == (500.0, 60.0)
    quality = s["states"]["quality_ok"]  # +60 s did not measure quality
    assert (quality["true_s"], quality["false_s"], quality["unknown_s"]) == (500.0, 0.0, 840.0)
    devices = s["states"]["devices_present"]
    assert (devices["true_s"], devices["false_s"]) == (500.0, 60.0)
    assert s["states"]["softphone_running"]["unknown_pct"] == 100.0
    assert s["series"]["lanes"]["registration"] == [
        [0.0, 180.0, "true"], [180.0, 300.0, "false"], [300.0, 420.0, "true"],
        [420.0, 1200.0, "unknown"], [1200.0, 1340.0, "true"],
    ]  # fmt: skip
    assert s["series"]["lanes"]["network"][0] == [0.0, 420.0, "true"]


def test_worst_moments_are_longest_first_with_their_events_checks_and_log_rows(
    tmp_path: Path,
) -> None:
    s = _summary(tmp_path)
    first, second = s["worst_moments"]
    assert (first["start"], first["end"], first["duration_s"]) == (
        "2026-12-02T11:03:00.000Z", "2026-12-02T11:05:00.000Z", 120.0,
    )  # fmt: skip
    assert first["states"] == ["registered", "inbound_reachable"]
    assert [e["event"] for e in first["events"]] == [
        "registration_lost", "inbound_lost", "registration_recovered", "inbound_recovered",
    ]  # fmt: skip
    assert first["checks"] == [{"id": "sip.bindings", "status": "fail", "summary": "no binding"}]
    assert [r["status"] for r in first["log_rows"]] == ["403"]
    assert second["states"] == ["devices_present"] and second["duration_s"] == 60.0
    # What broke it (the notification before the sample that saw it) and what mended it.
    assert [e["event"] for e in second["events"]] == ["audio_device_removed", "audio_device_added"]
    assert [r["status"] for r in second["log_rows"]] == ["480"]


def test_only_the_20_longest_worst_moments_are_listed_for_people() -> None:
    lines = [
        {"v": 1, "type": "sample", "watch_id": "w", "seq": i, "state": {"registered": i % 2 == 0},
         "checks": {}, "t": (T0 + dt.timedelta(seconds=60 * i)).isoformat()}
        for i in range(50)
    ]  # fmt: skip
    summary = summarise(lines)
    assert len(summary["worst_moments"]) == 25
    for fmt in ("text", "md", "html"):
        out = render_timeline(summary, fmt)
        assert "… and 5 shorter ones (all in --format json)" in out, fmt
    assert render_timeline(summary, "html").count("class='finding critical worst-moment'") == 20


def test_every_event_is_listed_in_order_and_the_end_reason_is_read(tmp_path: Path) -> None:
    s = _summary(tmp_path)
    assert s["watch_id"] == "w-1" and s["agent"] == AGENT and s["interval_s"] == 60.0
    assert (s["samples"], s["events"], s["dropped_lines"]) == (10, 7, 0)
    assert [(e["event"], e["lane"]) for e in s["event_list"]] == [
        ("registration_lost", "registration"), ("inbound_lost", "inbound"),
        ("registration_recovered", "registration"), ("inbound_recovered", "inbound"),
        ("sleep_resume", "network"), ("audio_device_removed", "audio"),
        ("audio_device_added", "audio"),
    ]  # fmt: skip
    assert s["end_reason"] == "interrupted"
    assert s["first_t"] == "2026-12-02T11:00:00.000Z" and s["last_t"] == "2026-12-02T11:22:20.000Z"
    # The row after the watch is listed, not drawn.
    assert [r["status"] for r in s["log_rows"]] == ["403", "480", "200"]
    assert [r[1] for r in s["series"]["log_rows"]] == ["403", "480"]


def test_a_timeline_without_an_end_line_says_the_watch_was_killed_or_is_running(
    tmp_path: Path,
) -> None:
    s = _summary(tmp_path, end=False)
    assert s["end_reason"] == NO_END
    assert s["end_reason"] == "no end line: the watch was killed or is still running"
    # The last sample then holds one whole interval.
    assert s["span"]["seconds"] == 1380.0


def test_lines_that_are_not_timeline_v1_are_dropped_and_counted() -> None:
    good = {"v": 1, "type": "sample", "watch_id": "w", "seq": 0, "t": "2026-12-02T11:00:00Z",
            "state": {"registered": True}, "checks": {}}  # fmt: skip
    bad = [
        {**good, "t": "yesterday"},
        {**good, "state": "registered"},
        {**good, "type": "event", "event": "coffee", "evidence": {}},
        {**good, "checks": {"x": {"status": "pass", "summary": "\ud800"}}},
    ]
    s = summarise([good, *bad])
    assert (s["samples"], s["dropped_lines"]) == (1, 4)
    assert s["states"]["registered"]["true_s"] == 60.0  # no start line: 60 s assumed


def _cli_timeline(tmp_path: Path, name: str = "watch.jsonl", **kw: Any) -> Path:
    return write_timeline(tmp_path / name, **kw)


def test_report_summarises_a_timeline_in_each_format(tmp_path: Path) -> None:
    path = _cli_timeline(tmp_path)
    text = cli("report", str(path))
    assert text.code == 0, text.err
    assert "Time in each state (yes / no / unknown):" in text.out
    assert "  registered                32.8%    9.0%   58.2%" in text.out
    assert "  11:03:00–11:05:00 UTC (2 min): not registered, not reachable inbound" in text.out
    assert "  Ended: interrupted" in text.out
    md = cli("report", str(path), "--format", "md")
    assert md.code == 0 and md.out.startswith("# sipdiag timeline — A-17 ")
    assert "| registered | 32.8% (7 min 20 s) | 9.0% (2 min) | 58.2% |" in md.out
    as_json = cli("report", str(path), "--format", "json")
    assert as_json.code == 0 and as_json.json["kind"] == "timeline_summary"
    assert as_json.json["states"]["registered"]["false_s"] == 120.0
    assert as_json.json["log_rows"] == []  # the CLI pairs no log rows (yet)
    out = tmp_path / "timeline.html"
    page = cli("report", str(path), "--out", str(out))
    assert page.code == 0 and page.err == f"sipdiag: report written to {out}\n"
    assert out.read_text().startswith("<!doctype html>") and "id='timeline-lanes'" in (
        out.read_text()
    )


def test_a_timeline_is_recognised_by_its_start_line_whatever_its_name(tmp_path: Path) -> None:
    path = _cli_timeline(tmp_path, "shift-log.txt")
    r = cli("report", str(path), "--format", "json")
    assert r.code == 0, r.err
    assert r.json["samples"] == 10


def test_a_timeline_with_no_valid_line_is_one_line_and_exit_64(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"v": 1, "type": "sample"}\nnot json\n{"v": 1, "type": "start"')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    cases = [
        (garbage, "has no line valid against timeline format v1"),
        (empty, "has no complete line of timeline format v1"),
        (folder, "is not a regular file"),
        (tmp_path / "missing.jsonl", "not found"),
    ]
    for path, what in cases:
        r = cli("report", str(path))
        assert r.code == 64, (path, r.err)
        assert r.err.startswith("sipdiag: error: timeline ") and what in r.err, r.err
        assert r.err.count("\n") == 1 and "(hint: give a timeline written by `sipdiag watch`" in (
            r.err
        )


HOSTILE = "\x1b]0;pwned\x07<script>alert(1)</script><img src=x onerror=alert(1)>[x](http://e)\u202e"


def test_hostile_text_in_a_timeline_is_shown_never_obeyed(tmp_path: Path) -> None:
    path = _cli_timeline(tmp_path, hostile=HOSTILE)
    paired = [{**PAIRED[0], "explanation": HOSTILE, "call_id": HOSTILE}]
    summary = summarise(read_lines(path), paired)
    for fmt in ("text", "md", "html"):
        out = render_timeline(summary, fmt)
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, fmt
        assert "␛" in out and "pwned␇" in out, fmt
        if fmt != "text":  # a terminal shows markup as the characters it is
            assert "<script" not in out and "<img" not in out, fmt
    md = render_timeline(summary, "md")
    assert "](http" not in md and "&lt;script&gt;" in md
    page = render_timeline(summary, "html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in page
    # The JSON keeps the file's text as it is (only what is shown is neutralised).
    assert json.loads(render_timeline(summary, "json"))["agent"]["id"] == "A-17" + HOSTILE


def test_the_html_page_is_one_file_with_no_scripts_or_external_assets(tmp_path: Path) -> None:
    page = render_timeline(summarise(read_lines(_cli_timeline(tmp_path)), PAIRED), "html")
    assert "<script" not in page.lower()
    # The SVG namespace is a name, not a fetch; nothing else may point outside the page.
    assert not re.search(r"(src|href)\s*=|@import|url\(|<link", page, re.I)
    assert "@media print" in page and "viewBox='0 0 1000 " in page and "width='100%'" in page
    order = [page.index(f"id='{x}'") for x in ("timeline-lanes", "states", "worst", "events")]
    assert order == sorted(order) and page.index("id='log-rows'") > order[-1]


# What the probe reads from the rendered page; appended to a copy, never part of the page.
PROBE = """<script>
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width]; };
const svg = document.getElementById('timeline-lanes');
document.body.insertAdjacentHTML('beforeend', '<pre id="probe">' + JSON.stringify({
  lanes: [...svg.querySelectorAll('g.lane')].map(g => g.dataset.lane),
  segments: Object.fromEntries([...svg.querySelectorAll('g.lane')].map(g =>
    [g.dataset.lane, [...g.querySelectorAll('rect.seg')].map(r => r.classList[1])])),
  events: [...svg.querySelectorAll('.event-marker')].map(m =>
    [m.dataset.event, m.closest('g.lane').dataset.lane, m.querySelector('title').textContent]),
  logRows: [...svg.querySelectorAll('.log-row-marker')].map(m => m.dataset.status),
  worst: svg.querySelectorAll('rect.worst').length,
  ticks: [...svg.querySelectorAll('.tick text')].map(t => t.textContent),
  listed: [...document.querySelectorAll('#event-list tr.event')].map(r => r.dataset.event),
  legend: !!document.getElementById('legend').offsetHeight,
  colours: ['true', 'false', 'unknown'].map(v =>
    getComputedStyle(svg.querySelector('rect.seg.' + v)).fill),
  boxes: [svg, ...svg.querySelectorAll('.event-marker, .log-row-marker, .tick text')].map(box),
  page: [document.documentElement.scrollWidth, window.innerWidth],
}) + '</pre>');
</script>"""


def _probe(page_html: str, tmp_path: Path, width: int) -> dict[str, Any]:
    try:
        return probe(page_html, PROBE, tmp_path, width)
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the timeline: {exc}", pytrace=False)


@pytest.mark.parametrize("width", [1280, 760])
def test_chromium_draws_the_lanes_markers_and_log_rows_inside_the_window(
    tmp_path: Path, width: int
) -> None:
    page = render_timeline(summarise(read_lines(_cli_timeline(tmp_path)), PAIRED), "html")
    seen = _probe(page, tmp_path, width)
    assert seen["lanes"] == ["registration", "inbound", "quality", "audio", "network", "log"]
    assert seen["segments"]["registration"] == ["true", "false", "true", "unknown", "true"]
    assert seen["segments"]["audio"] == ["true", "unknown", "true", "false", "true"]
    assert [(e, lane) for e, lane, _ in seen["events"]] == [
        ("registration_lost", "registration"), ("registration_recovered", "registration"),
        ("inbound_lost", "inbound"), ("inbound_recovered", "inbound"),
        ("audio_device_removed", "audio"), ("audio_device_added", "audio"),
        ("sleep_resume", "network"),
    ]  # fmt: skip
    assert (
        seen["events"][0][2]
        == "11:03:00 UTC registration_lost: code=503, reason=Service Unavailable"
    )
    assert seen["logRows"] == ["403", "480"]  # the row after the watch is listed, not drawn
    assert seen["worst"] == 2 and seen["legend"]
    assert seen["ticks"] == ["11:00", "11:05", "11:10", "11:15", "11:20"]
    assert len(seen["listed"]) == 7
    assert seen["colours"] == ["rgb(23, 109, 26)", "rgb(176, 0, 32)", "rgb(217, 217, 217)"]
    scroll, inner = seen["page"]
    assert scroll <= inner, f"the page is {scroll}px wide in a {inner}px window"
    svg_left, svg_right, svg_width = seen["boxes"][0]
    assert svg_width > 0.8 * min(inner, 1000) and svg_right <= inner
    for left, right, _ in seen["boxes"][1:]:
        assert svg_left <= left and right <= svg_right, (left, right, svg_left, svg_right)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_screenshots_the_timeline_at_1280_and_760_px_and_prints_it(
    tmp_path: Path,
) -> None:
    page = tmp_path / "timeline.html"
    page.write_text(render_timeline(summarise(read_lines(_cli_timeline(tmp_path)), PAIRED), "html"))
    pdf = tmp_path / "timeline.pdf"
    try:
        for width in (1280, 760):
            chromium(page, tmp_path, f"--screenshot={tmp_path / f'shot-{width}.png'}", width=width)
        chromium(page, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the timeline: {exc}", pytrace=False)
    for width in (1280, 760):
        shot = tmp_path / f"shot-{width}.png"
        assert _png_size(shot) == (width, 900) and shot.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_a_sample_near_the_last_representable_time_holds_until_it_and_reports(
    tmp_path: Path,
) -> None:
    """A clock set to year 9999 (or a huge interval) must not overflow the report's arithmetic:
    the last sample holds until the latest time a timeline can say."""
    path = tmp_path / "future.jsonl"
    w = TimelineWriter(path, "w-1", now=lambda: T0)
    w.write("start", {"interval_s": 60, "host": {}, "sipdiag": "0.1.0", "mono": 0.0}, T0)
    fields = {"mono": 0.0, "state": GOOD, "checks": CHECKS_OK}
    w.write("sample", fields, T0)
    w.write("sample", fields, dt.datetime(9999, 12, 31, 23, 59, 59, 900_000, dt.timezone.utc))
    w.close()
    s = summarise(read_lines(path))
    assert s["span"]["to"] == "9999-12-31T23:59:59.999Z"
    registered = s["states"]["registered"]
    assert (registered["true_s"], registered["false_s"]) == (60.099, 0.0)
    for fmt in ("text", "md", "json", "html"):
        r = cli("report", str(path), "--format", fmt)
        assert r.code == 0, (fmt, r.err)
    # A start line's interval of 1e300 s: the one sample holds until then too.
    lines = [{**x, "interval_s": 1e300} if x["type"] == "start" else x for x in read_lines(path)]
    huge = summarise(lines[:2])
    assert (huge["samples"], huge["span"]["to"]) == (1, "9999-12-31T23:59:59.999Z")
