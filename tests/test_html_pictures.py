"""The HTML report's pictures: the SIP ladder, the microphone level meter and the RTT/jitter
chart. Pure tests of the SVG they draw from a report; then a real headless Chromium (1280 and
760 px screenshots, a PDF, the pictures' elements in the DOM inside the viewport); then a real
run against Kamailio, coturn (STUN) and PulseAudio whose own REGISTER/401/200, refused test call,
RTTs and microphone level the pictures draw."""

from __future__ import annotations

import copy
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli_process
from peers.chromium import chromium, probe
from peers.kamailio import Kamailio
from peers.process import PeerStartError
from peers.pulse import Pulse
from peers.stun import Stun
from test_report_html import sample_report

from checks.net.quality import rfc3550_jitter, rtt_series
from diag.render import render
from diag.render.exchange import build_ladder
from diag.render.pictures import (
    AMBER,
    BLUE,
    GREEN,
    GREY,
    RED,
    code_colour,
    ladder,
    level_meter,
    quality_chart,
    running_jitter,
)

# A digest response and a password, planted where a careless renderer would show them.
DIGEST = "5f2b8c0e9d1a7b3c4e6f8a0b2c4d6e8f"
SECRET_HEADER = f'Digest username="1001", realm="pbx", nonce="abc", response="{DIGEST}"'
PASSWORD = "hunter2-not-shown"
TARGET = {"host": "pbx.example.com", "port": 5060, "address": "192.0.2.10"}


def _check(cid: str, status: str, details: dict[str, Any], problem: str | None = None) -> Any:
    if problem:
        details = {**details, "problem": problem}
    return {
        "id": cid,
        "title": f"Title of {cid}",
        "status": status,
        "summary": f"{status} summary of {cid}",
        "hint": None,
        "duration_ms": 12,
        "details": details,
    }


def _finding(cause: str, check: str) -> dict[str, Any]:
    return {
        "cause": cause,
        "family": "registration",
        "severity": "critical",
        "title": f"Title of {cause}",
        "explanation": "because",
        "action": "do something",
        "evidence": {"checks": [check]},
    }


def exchange_report() -> dict[str, Any]:
    """A failing run behind a NAT: OPTIONS over UDP answered and over TCP lost, a REGISTER
    query refused with 403 after its challenge, the control probe challenged, and the
    platform's OPTIONS answered by the softphone; credentials planted in three details."""
    options = {
        "transports": {
            "udp": {
                "target": "192.0.2.10:5060", "address": "192.0.2.10", "local": "10.0.0.7:40000",
                "outcome": "answered", "code": 200, "reason": "OK", "rtt_ms": 12,
                "received": "198.51.100.7", "rport": 61000,
            },
            "tcp": {
                "target": "192.0.2.10:5060", "address": "192.0.2.10", "local": "10.0.0.7:40001",
                "outcome": "timeout", "code": None, "reason": None, "rtt_ms": None,
            },
        },
        "local_address": "10.0.0.7",
    }  # fmt: skip
    query = {
        "transport": "udp", "target": TARGET, "local": "10.0.0.7:40002",
        "received": "198.51.100.7", "rport": 61002, "local_time": "2026-11-27T04:00:01.000Z",
        "outcome": "rejected", "code": 403, "reason": "Forbidden", "duration_ms": 40,
        "challenged": True, "challenges": 1, "credentials": True,
        "warning": ['399 pbx "Wrong password"'], "sent": {"authorization": SECRET_HEADER},
    }  # fmt: skip
    baseline = {
        "transport": "udp", "target": TARGET, "local_time": "2026-11-27T04:00:01.100Z",
        "outcome": "challenged", "code": 401, "reason": "Unauthorized", "rtt_ms": 9,
        "challenged": True, "challenges": 1, "credentials": False,
    }  # fmt: skip
    register = {
        "mode": "query", "attempts": [query], "baseline": baseline, "call_ids": [],
        "local_address": "10.0.0.7", "password": PASSWORD,
    }  # fmt: skip
    inbound = {
        "mode": "softphone", "method": "OPTIONS", "transport": "udp",
        "sent_at": "2026-11-27T04:00:02.000Z", "challenged": True, "provisional": [],
        "for_bindings": ["sip:1001@10.0.0.7:5062"], "arrived": None,
        "final": {"code": 200, "reason": "OK", "by": "binding", "rtt_ms": 30},
        "other_requests": [f"OPTIONS sip:x SIP/2.0\r\nProxy-Authorization: {SECRET_HEADER}\r\n"],
    }  # fmt: skip
    report = sample_report()
    report["checks"] = [
        _check("net.sip-options", "fail", options),
        _check("sip.register", "fail", register),
        _check("sip.inbound", "pass", inbound),
    ]
    report["findings"] = [
        _finding("sip.credentials_rejected", "sip.register"),
        _finding("network.tcp_blocked", "net.sip-options"),
    ]
    return report


# (check, method or "", code or "") of every arrow, in the order the run had them.
EXPECTED = [
    ("net.sip-options", "OPTIONS", ""),
    ("net.sip-options", "", "200"),
    ("net.sip-options", "OPTIONS", ""),  # TCP: no answer
    ("sip.register", "REGISTER", ""),
    ("sip.register", "", "401"),
    ("sip.register", "REGISTER", ""),  # with credentials
    ("sip.register", "", "403"),
    ("sip.register", "REGISTER", ""),  # the control probe
    ("sip.register", "", "401"),
    ("sip.inbound", "OPTIONS", ""),
    ("sip.inbound", "", "407"),
    ("sip.inbound", "OPTIONS", ""),
    ("sip.inbound", "OPTIONS", ""),  # the platform to the softphone (inferred)
    ("sip.inbound", "", "200"),  # the softphone's answer (inferred)
    ("sip.inbound", "", "200"),
]

_MESSAGE = re.compile(
    r"<g class='ladder-message[^']*' data-check='([^']*)' data-code='([^']*)' "
    r"data-method='([^']*)'.*?<line [^>]*stroke='([^']*)'",
    re.S,
)


def _arrows(svg: str) -> list[tuple[str, str, str, str]]:
    """(check, method, code, stroke colour) of each arrow in the SVG."""
    return [(c, m, code, stroke) for c, code, m, stroke in _MESSAGE.findall(svg)]


def test_the_ladder_draws_one_arrow_per_message_in_the_order_of_the_run() -> None:
    report = exchange_report()
    arrows = _arrows(ladder(report))
    assert [a[:3] for a in arrows] == EXPECTED
    assert sum(len(g.messages) for g in build_ladder(report).groups) == len(EXPECTED)


def test_the_ladder_colours_each_answer_by_its_status_class() -> None:
    assert [code_colour(c) for c in (None, 100, 180, 200, 202, 401, 407, 403, 486, 503, 603)] == [
        code_colour(None), GREY, GREY, GREEN, GREEN, AMBER, AMBER, RED, RED, RED, RED,
    ]  # fmt: skip
    colours = {code: stroke for _, _, code, stroke in _arrows(ladder(exchange_report()))}
    assert colours == {"": code_colour(None), "200": GREEN, "401": AMBER, "403": RED, "407": AMBER}


def test_the_ladder_has_columns_for_us_the_nat_the_registrar_and_the_softphone() -> None:
    svg = ladder(exchange_report())
    columns = re.findall(r"class='ladder-column' data-column='(\w+)' data-address='([^']*)'", svg)
    assert columns == [
        ("binding", "sip:1001@10.0.0.7:5062"),
        ("local", "10.0.0.7"),
        ("nat", "seen as 198.51.100.7:61000, 198.51.100.7:61002"),
        ("registrar", "192.0.2.10:5060 udp/tcp"),
    ]
    # Where the registrar named the address it saw: OPTIONS over UDP, the REGISTER query and
    # its answer to the challenge, the request to the agent and its answer to the challenge.
    assert svg.count("class='ladder-nat-hop'") == 5
    assert svg.count("ladder-inferred") == 2


def test_the_ladder_labels_answers_with_the_finding_they_support_and_shows_times() -> None:
    svg = ladder(exchange_report())
    causes = re.findall(r"class='ladder-cause'[^>]*>↳ ([\w.]+)</text>", svg)
    assert causes == ["network.tcp_blocked", "sip.credentials_rejected"]
    assert "no answer: timeout" in svg
    assert "times: ms since 2026-11-27 04:00:01.000 UTC" in svg
    times = re.findall(r"class='ladder-time'[^>]*>([^<]+)</text>", svg)
    assert times == ["+0 ms", "+40 ms", "+100 ms", "+109 ms", "+1,000 ms", "+1,030 ms"]


LOCAL_TARGET = {"host": "127.0.0.1", "port": 5060, "address": "127.0.0.1"}


def own_binding_report() -> dict[str, Any]:
    """sip.inbound through its own binding (the request for it sent from a second platform
    address), net.idle with one silence survived and one not, and a refused test call."""
    query = {
        "transport": "udp", "target": LOCAL_TARGET, "local": "127.0.0.1:40000",
        "received": "127.0.0.1", "rport": 40000, "local_time": "2026-11-27T04:00:00.000Z",
        "outcome": "ok", "code": 200, "reason": "OK", "rtt_ms": 2, "challenged": True,
        "challenges": 1, "credentials": True,
    }  # fmt: skip
    inbound = {
        "mode": "own_binding", "method": "OPTIONS", "transport": "udp",
        "sent_at": "2026-11-27T04:00:01.000Z", "challenged": True, "provisional": [],
        "registration": {
            "contact": "sip:alice@127.0.0.1:45755;transport=udp;sipdiag=87bc87d2in",
            "code": 200, "reason": "OK", "removed": True,
        },
        "arrived": {"source": "127.0.0.2:5060", "after_ms": 3, "answered": 200},
        "final": {"code": 200, "reason": "OK", "by": "binding", "rtt_ms": 5},
        "problem": None,
    }  # fmt: skip
    period = {
        "transport": "udp", "contact": "sip:alice@127.0.0.1:40100;sipdiag=x", "expires_granted": 60,
    }  # fmt: skip
    idle = {
        "periods": [
            {**period, "seconds": 30, "arrived": True, "source": "127.0.0.1:5060",
             "after_ms": 1, "started_at": "2026-11-27T04:00:02.000Z",
             "checked_at": "2026-11-27T04:00:32.000Z",
             "final": {"code": 200, "reason": "OK", "by": "binding"}},
            {**period, "seconds": 90, "arrived": False, "started_at": "2026-11-27T04:00:33.000Z",
             "checked_at": "2026-11-27T04:02:03.000Z",
             "final": {"code": 408, "reason": "Request Timeout", "by": "registrar"}},
            {**period, "seconds": 300, "arrived": None, "skipped": "no time left in --timeout"},
        ],
        "problem": "network.nat_binding_short",
    }  # fmt: skip
    dial = {
        "number": "9999", "uri": "sip:9999@127.0.0.1",
        "register": {**query, "local": None, "local_time": "2026-11-27T04:00:00.500Z",
                     "unregistered": True},
        "call": {"uri": "sip:9999@127.0.0.1", "challenged": True, "provisional": [100],
                 "code": 403, "reason": "Number Not Permitted", "outcome": "answered",
                 "ended_by": None},
    }  # fmt: skip
    report = sample_report()
    report["checks"] = [
        _check("sip.register", "pass", {"mode": "query", "attempts": [query], "baseline": None}),
        _check("number.dial-test", "fail", dial),
        _check("sip.inbound", "pass", inbound),
        _check("net.idle", "fail", idle),
    ]
    report["findings"] = [_finding("number.not_permitted", "number.dial-test")]
    return report


def test_the_ladder_follows_requests_from_the_platform_to_our_binding_and_the_test_call() -> None:
    svg = ladder(own_binding_report())
    columns = re.findall(r"class='ladder-column' data-column='(\w+)'", svg)
    assert columns == ["binding", "local", "registrar", "platform"]
    by_check: dict[str, list[tuple[str, str]]] = {}
    for check, method, code, _ in _arrows(svg):
        by_check.setdefault(check, []).append((method, code))
    req, ans = (lambda m: (m, "")), (lambda c: ("", c))
    assert by_check["number.dial-test"] == [
        req("REGISTER"), ans("401"), req("REGISTER"), ans("200"),
        req("INVITE"), ans("407"), req("INVITE"), ans("100"), ans("403"),
        req("REGISTER"), ans("200"),  # un-REGISTER after the call
    ]  # fmt: skip
    assert by_check["sip.inbound"] == [
        req("REGISTER"), ans("401"), req("REGISTER"), ans("200"),  # our test binding
        req("OPTIONS"), ans("407"), req("OPTIONS"),
        req("OPTIONS"), ans("200"),  # from the platform's second address to our binding
        ans("200"), req("REGISTER"), ans("200"),
    ]  # fmt: skip
    assert by_check["net.idle"] == [
        req("REGISTER"), ans("200"), req("OPTIONS"), req("OPTIONS"), ans("200"),
        req("REGISTER"), ans("200"), req("OPTIONS"), ans("408"),  # the 300 s one was not tested
    ]  # fmt: skip
    arrivals = re.findall(r"data-from='([^']*)' data-to='binding'", svg)
    assert arrivals == ["platform 127.0.0.2", "registrar 127.0.0.1:5060"]
    causes = re.findall(r"class='ladder-cause'[^>]*>↳ ([\w.]+)</text>", svg)
    assert causes == ["number.not_permitted", "network.nat_binding_short"]
    assert "30 s of silence over UDP" in svg and "+32,001 ms" in svg  # 04:00:32 + 1 ms


def test_no_credential_value_reaches_any_part_of_the_html_report() -> None:
    page = render(exchange_report(), "html")
    assert "id='sip-ladder'" in page
    assert DIGEST not in page and PASSWORD not in page and "nonce=" not in page
    assert "[scrubbed]" in page  # the fields are there, their values are not
    assert "Authorization" not in ladder(exchange_report())


def test_text_from_the_registrar_is_escaped_in_the_ladder() -> None:
    report = exchange_report()
    report["checks"][1]["details"]["attempts"][0]["reason"] = "<script>x</script>\x1b[2J"
    svg = ladder(report)
    assert "<script" not in svg and "&lt;script&gt;" in svg and "\x1b" not in svg


def test_each_picture_is_empty_when_the_report_has_no_data_for_it() -> None:
    report = sample_report()  # an attempt without transport or target: nothing to draw
    assert ladder(report) == level_meter(report) == quality_chart(report) == ""
    page = render(report, "html")
    assert "sip-exchange" not in page and "<svg" not in page
    skipped = copy.deepcopy(report)
    skipped["checks"] = [
        _check("audio.input", "skip", {}),
        _check("net.quality", "skip", {"sent": 50, "received": 0}),
    ]
    assert level_meter(skipped) == quality_chart(skipped) == ""


def _meter_report(rms: float, peak: float, ratio: float, thresholds: bool = True) -> Any:
    details: dict[str, Any] = {
        "rms_dbfs": rms, "peak_dbfs": peak, "clipping_ratio": ratio,
        "digital_silence": rms <= -120,
    }  # fmt: skip
    if thresholds:
        details["thresholds"] = {
            "silent_rms_dbfs": -70.0, "clip_dbfs": -0.01, "clip_warn_ratio": 0.01,
        }  # fmt: skip
    report = sample_report()
    report["checks"] = [_check("audio.input", "pass", details)]
    return report


def _bars(svg: str) -> dict[str, tuple[str, str]]:
    found = re.findall(
        r"class='meter-bar' data-kind='(\w+)' data-dbfs='([^']+)'>.*?<rect [^>]*fill='([^']+)'",
        svg,
    )
    return {kind: (dbfs, fill) for kind, dbfs, fill in found}


def test_the_level_meter_draws_rms_and_peak_against_the_silence_and_clipping_thresholds() -> None:
    svg = level_meter(_meter_report(-23.4, -6.1, 0.0))
    assert svg.startswith("<svg id='level-meter'")
    assert _bars(svg) == {"rms": ("-23.4", GREEN), "peak": ("-6.1", BLUE)}
    thresholds = re.findall(r"class='meter-threshold' data-kind='(\w+)' data-dbfs='([^']+)'", svg)
    assert thresholds == [("silence", "-70"), ("clipping", "-0.01")]
    # Too quiet: the RMS bar is amber; clipping: the peak bar is red.
    assert _bars(level_meter(_meter_report(-80.0, -50.0, 0.0)))["rms"][1] == AMBER
    assert _bars(level_meter(_meter_report(-3.0, 0.0, 0.05)))["peak"] == ("0", RED)
    silent = level_meter(_meter_report(-120.0, -120.0, 0.0, thresholds=False))
    assert "digital silence" in silent and "data-dbfs='-70'" in silent  # older reports


def _quality_report(series: list[float | None]) -> Any:
    received = [v for v in series if v is not None]
    details = {
        "server": "stun.example.com:3478", "sent": len(series), "received": len(received),
        "loss_pct": round(100 * (len(series) - len(received)) / len(series), 1),
        "rtt_ms": {"avg": sum(received) / len(received)}, "jitter_ms": 1.0, "mos": 4.3,
        "thresholds": {"warn": {"rtt_ms": 100.0, "jitter_ms": 30.0}},
        "rtt_series_ms": series,
    }  # fmt: skip
    report = sample_report()
    report["checks"] = [_check("net.quality", "pass", details)]
    return report


def test_the_quality_chart_draws_rtt_and_jitter_per_probe_and_marks_each_lost_probe() -> None:
    series: list[float | None] = [10.0, 12.0, None, 11.0, 30.0, None, 10.0]
    svg = quality_chart(_quality_report(series))
    assert svg.startswith("<svg id='quality-chart'")
    rtt = re.findall(r"data-series='rtt' data-probe='(\d+)' data-ms='([^']+)'", svg)
    assert rtt == [("0", "10"), ("1", "12"), ("3", "11"), ("4", "30"), ("6", "10")]
    assert len(re.findall(r"data-series='jitter' data-probe", svg)) == 5
    assert re.findall(r"class='chart-loss' data-probe='(\d+)'", svg) == ["2", "5"]
    assert "loss 28.6 %" in svg and "(5/7 answered)" in svg
    assert "RTT warns above" not in svg  # 100 ms is off this chart's scale
    high = quality_chart(_quality_report([90.0, 140.0, 120.0]))
    assert "RTT warns above 100 ms" in high


def test_the_running_jitter_ends_at_the_rfc_3550_figure_net_quality_reports() -> None:
    rtts = [10.0, 12.0, 11.0, 30.0, 10.0, 10.5]
    assert running_jitter(rtts)[-1] == pytest.approx(rfc3550_jitter(rtts), abs=1e-3)
    assert running_jitter([5.0, None, 7.0]) == [0.0, None, 0.125]


def test_net_quality_stores_each_probes_rtt_by_sequence_number_with_gaps_for_losses() -> None:
    assert rtt_series(5, [(0, 10.04), (3, 9.96), (2, 12.0)]) == [10.0, None, 12.0, 10.0, None]


# ---- in a real headless Chromium

PROBE = """<script>
const box = e => {
  const b = e.getBoundingClientRect();
  return [b.left, b.top, b.width, b.height];
};
const all = s => [...document.querySelectorAll(s)];
document.body.insertAdjacentHTML('beforeend', '<pre id="probe">' + JSON.stringify({
  svgs: Object.fromEntries(['sip-ladder', 'level-meter', 'quality-chart'].map(
    id => [id, document.getElementById(id) ? box(document.getElementById(id)) : null])),
  columns: all('#sip-ladder .ladder-column').map(c => [c.dataset.column, box(c)]),
  messages: all('#sip-ladder .ladder-message').map(
    m => [m.dataset.check, m.dataset.method, m.dataset.code, box(m)]),
  bars: all('#level-meter .meter-bar').map(b => [b.dataset.kind, b.dataset.dbfs, box(b)]),
  thresholds: all('#level-meter .meter-threshold').map(t => [t.dataset.kind, box(t)]),
  points: all('#quality-chart .chart-point').map(p => [p.dataset.series, box(p)]),
  losses: all('#quality-chart .chart-loss').length,
  headings: all('h2').map(h => h.id),
  page: [document.documentElement.scrollWidth, window.innerWidth],
}) + '</pre>');
</script>"""


def full_report() -> dict[str, Any]:
    report = exchange_report()
    report["checks"] += [
        _meter_report(-23.4, -6.1, 0.0)["checks"][0],
        _quality_report([10.0, 12.0, None, 11.0, 30.0, None, 10.0, 14.0])["checks"][0],
    ]
    return report


def _probe(page_html: str, tmp_path: Path, width: int) -> dict[str, Any]:
    try:
        return probe(page_html, PROBE, tmp_path, width)
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the report: {exc}", pytrace=False)


def _inside(name: str, box: list[float], width: float) -> None:
    left, _, w, h = box
    assert w > 0 and h > 0, f"{name} is not drawn: {box}"
    assert left >= 0 and left + w <= width + 0.5, f"{name} leaves the {width}px window: {box}"


@pytest.mark.parametrize("width", [1280, 760])
def test_chromium_draws_every_picture_inside_the_window(tmp_path: Path, width: int) -> None:
    seen = _probe(render(full_report(), "html"), tmp_path, width)
    assert seen["headings"] == ["findings", "sip-exchange", "checks", "correlation"]
    scroll, inner = seen["page"]
    assert scroll <= inner, f"the page is {scroll}px wide in a {inner}px window"
    for name, box in seen["svgs"].items():
        assert box is not None, f"no {name}"
        _inside(name, box, inner)
    assert [c[0] for c in seen["columns"]] == ["binding", "local", "nat", "registrar"]
    assert [tuple(m[:3]) for m in seen["messages"]] == EXPECTED
    assert [b[:2] for b in seen["bars"]] == [["rms", "-23.4"], ["peak", "-6.1"]]
    assert [t[0] for t in seen["thresholds"]] == ["silence", "clipping"]
    assert [p[0] for p in seen["points"]].count("rtt") == 6 and seen["losses"] == 2
    drawn = [
        *(("column " + c, b) for c, b in seen["columns"]),
        *((f"message {m[1] or m[2]}", m[3]) for m in seen["messages"]),
        *(("bar " + k, b) for k, _, b in seen["bars"]),
        *(("threshold " + k, b) for k, b in seen["thresholds"]),
        *(("point " + s, b) for s, b in seen["points"]),
    ]
    for name, box in drawn:
        _inside(name, box, inner)
    # The pictures scale with the window: the ladder fills the text column at both widths.
    assert seen["svgs"]["sip-ladder"][2] > 0.8 * min(inner, 1150)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_screenshots_the_pictures_at_1280_and_760_px_and_prints_them(
    tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(full_report(), "html"))
    pdf = tmp_path / "report.pdf"
    try:
        for width in (1280, 760):
            shot = tmp_path / f"report-{width}.png"
            chromium(page, tmp_path, f"--screenshot={shot}", width=width, height=2400)
            assert _png_size(shot) == (width, 2400)
            assert shot.stat().st_size > 30_000  # a page of text and pictures, not a blank
        chromium(page, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the report: {exc}", pytrace=False)
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 20_000
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2


# ---- a real run: Kamailio's challenge and 200, coturn's RTTs, PulseAudio's silent microphone


def test_a_real_run_draws_its_register_401_200_test_call_rtts_and_microphone_level(
    kamailio: Kamailio, stun: Stun, pulse: Pulse, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    run = cli_process(
        "check", "--registrar", kamailio.registrar_uri("udp"), "--user", "alice",
        "--only", "sip.register", "--only", "net.quality", "--only", "audio",
        "--only", "number.dial-test", "--dial-test", "9999",  # Kamailio refuses 9999: 403
        "--stun", stun.server, "--format", "json",
        env={**pulse.env, "SIPDIAG_PASSWORD": "alice-secret", "XDG_DATA_HOME": str(data)},
    )  # fmt: skip
    checks = {c["id"]: c for c in run.json["checks"]}
    assert checks["sip.register"]["status"] == "pass", checks["sip.register"]
    assert checks["net.quality"]["status"] == "pass", checks["net.quality"]
    assert "rms_dbfs" in checks["audio.input"]["details"], checks["audio.input"]
    saved = next(data.glob("sipdiag/reports/sipdiag-*.json"))
    page = tmp_path / "report.html"
    made = cli_process("report", str(saved), "--out", str(page))
    assert made.code == 0, made.err
    text = page.read_text()
    assert not re.search(r'response="?[0-9a-f]{32}', text) and "alice-secret" not in text

    seen = _probe(text, tmp_path, 760)
    register = [tuple(m[1:3]) for m in seen["messages"] if m[0] == "sip.register"]
    # Each transport's query, then our own binding: REGISTER, Kamailio's 401, ours with
    # credentials, its 200 (and the binding's un-REGISTER).
    assert register[:4] == [("REGISTER", ""), ("", "401"), ("REGISTER", ""), ("", "200")]
    call = [tuple(m[1:3]) for m in seen["messages"] if m[0] == "number.dial-test"]
    invite = [("INVITE", ""), ("", "407"), ("INVITE", ""), ("", "403")]
    assert call[4:8] == invite, call  # after its own REGISTER, 401, REGISTER, 200
    assert "↳ number.not_permitted" in text
    assert [c[0] for c in seen["columns"]] == ["local", "registrar"]
    quality = checks["net.quality"]["details"]
    assert len(quality["rtt_series_ms"]) == quality["sent"]
    assert [p[0] for p in seen["points"]].count("rtt") == quality["received"]
    mic = checks["audio.input"]["details"]
    assert [b[:2] for b in seen["bars"]] == [
        ["rms", f"{mic['rms_dbfs']:g}"],
        ["peak", f"{mic['peak_dbfs']:g}"],
    ]
    assert mic["thresholds"] == {
        "silent_rms_dbfs": -70.0,
        "clip_dbfs": -0.01,
        "clip_warn_ratio": 0.01,
    }
    _inside("sip-ladder", seen["svgs"]["sip-ladder"], seen["page"][1])
