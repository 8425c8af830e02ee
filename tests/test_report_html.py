"""The HTML report in a real headless Chromium: findings present, status colours, nothing
overflowing on a laptop or a narrow window, a screenshot and a printable PDF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers.chromium import chromium, probe
from peers.process import PeerStartError

from diag.render import render

LONG = "x" * 400  # an unbreakable value: must wrap, not widen the page
# What the probe reads from the rendered page; appended to a copy, never part of the report.
PROBE = """<script>
const badge = s => getComputedStyle(document.querySelector('.badge.' + s)).backgroundColor;
const tables = [...document.querySelectorAll('table')];
document.body.insertAdjacentHTML('beforeend', '<pre id="probe">' + JSON.stringify({
  findings: [...document.querySelectorAll('section.finding')].map(s => s.dataset.cause),
  checks: [...document.querySelectorAll('tr.check')].map(r => [r.dataset.check, r.className]),
  colours: Object.fromEntries(['pass','warn','fail','error','skip'].map(s => [s, badge(s)])),
  verdict: getComputedStyle(document.getElementById('verdict')).backgroundColor,
  headings: [...document.querySelectorAll('h2')].map(h => h.id),
  page: [document.documentElement.scrollWidth, window.innerWidth],
  tables: tables.map(t => [t.className, t.scrollWidth, t.parentElement.clientWidth]),
}) + '</pre>');
</script>"""


def _check(cid: str, status: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid,
        "title": f"Title of {cid}",
        "status": status,
        "summary": f"{status} summary of {cid}",
        "hint": None if status == "pass" else f"do something about {cid}",
        "duration_ms": 12,
        "details": details,
    }


def sample_report() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "tool": {"name": "sipdiag", "version": "0.1.0"},
        "run_id": "5b0c7f5e-3d0c-4a55-9b1e-0d6a8a1f2c3d",
        "started_at": "2026-11-27T04:00:00.000Z",
        "finished_at": "2026-11-27T04:00:03.000Z",
        "duration_ms": 3000,
        "complete": True,
        "host": {
            "hostname": "pc7",
            "os": "Linux",
            "os_version": "6",
            "python": "3.11.7",
            "user": "alice",
            "interfaces": [],
            "proxies": {},
        },
        "agent": {"id": "A-17", "sip_uri": "sip:1001@pbx.example.com", "numbers": []},
        "target": {"registrar": "sip:pbx.example.com", "domain": None, "transports": ["udp"]},
        "checks": [
            _check("host.os", "pass", {"os": "Linux"}),
            _check("net.sip-options", "warn", {"long": LONG, "nested": {"a": [1, 2, LONG]}}),
            _check("sip.register", "fail", {"attempts": [{"code": 403, "reason": LONG}]}),
            _check("net.stun", "error", {}),
            _check("net.nat", "skip", {}),
        ],
        "findings": [
            {
                "cause": "sip.forbidden",
                "family": "registration",
                "severity": "critical",
                "title": "Registrar refuses this account",
                "explanation": "The registrar answers 403 Forbidden.",
                "action": "Ask the platform administrator.",
                "evidence": {"checks": ["sip.register"], "sip.register": {"reason": LONG}},
            },
            {
                "cause": "host.vpn_active",
                "family": "host",
                "severity": "warning",
                "title": "A VPN is up",
                "explanation": "tun0 is up.",
                "action": "Disconnect the VPN and compare.",
                "evidence": {"checks": ["host.vpn"]},
            },
        ],
        "correlation": {
            "user_agent": "sipdiag/0.1.0 run=5b0c7f5e-3d0c-4a55-9b1e-0d6a8a1f2c3d",
            "call_ids": ["call-id-" + LONG],
            "local_addresses": ["10.0.0.7"],
            "public_addresses": ["198.51.100.7"],
            "clock_offset_ms": -1250,
        },
        "verdict": "failing",
    }


def _probe(report_html: str, tmp_path: Path, width: int) -> dict[str, Any]:
    try:
        return probe(report_html, PROBE, tmp_path, width)
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the report: {exc}", pytrace=False)


def test_html_report_is_one_file_with_no_scripts_or_external_assets() -> None:
    page = render(sample_report(), "html")
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=|@import|url\(|<link", page, re.I)
    # Order: verdict, findings, checks (with details), correlation.
    order = [page.index(s) for s in ("id='verdict'", "id='findings'", "id='checks'")]
    assert order == sorted(order) and page.index("id='correlation'") > order[-1]
    assert "-1250 ms" in page and "198.51.100.7" in page and "&quot;attempts&quot;" in page


@pytest.mark.parametrize("width", [1280, 760])
def test_chromium_shows_findings_status_colours_and_no_overflowing_table(
    tmp_path: Path, width: int
) -> None:
    seen = _probe(render(sample_report(), "html"), tmp_path, width)
    assert seen["findings"] == ["sip.forbidden", "host.vpn_active"]
    assert [c[0] for c in seen["checks"]] == [
        "host.os",
        "net.sip-options",
        "sip.register",
        "net.stun",
        "net.nat",
    ]
    assert seen["headings"] == ["findings", "checks", "correlation"]
    assert seen["colours"] == {
        "pass": "rgb(23, 109, 26)",
        "warn": "rgb(154, 82, 0)",
        "fail": "rgb(176, 0, 32)",
        "error": "rgb(106, 27, 154)",
        "skip": "rgb(95, 99, 104)",
    }
    assert seen["verdict"] == "rgb(176, 0, 32)"  # failing
    scroll, inner = seen["page"]
    assert scroll <= inner, f"the page is {scroll}px wide in a {inner}px window"
    for name, table_width, room in seen["tables"]:
        assert table_width <= room, f"table {name} overflows: {table_width}px in {room}px"


def test_chromium_takes_a_screenshot_and_prints_the_report(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(sample_report(), "html"))
    shot, pdf = tmp_path / "report.png", tmp_path / "report.pdf"
    try:
        chromium(page, tmp_path, f"--screenshot={shot}")
        chromium(page, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    except PeerStartError as exc:
        pytest.fail(f"chromium could not render the report: {exc}", pytrace=False)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
