"""The one output layer: text (doctor style), Markdown, HTML."""

from __future__ import annotations

from typing import Any

from diag.render import Marks, format_for_path, render


def _report() -> dict[str, Any]:
    check = {
        "id": "sip.register",
        "title": "Registrar accepts our REGISTER",
        "status": "fail",
        "summary": "udp: 403 Forbidden",
        "hint": "ask the admin",
        "duration_ms": 3,
        "details": {},
    }
    ok = {
        "id": "host.os",
        "title": "OS <b>",
        "status": "pass",
        "summary": "Linux",
        "hint": "never shown for a pass",
        "duration_ms": 1,
        "details": {},
    }
    findings = [
        {
            "cause": "sip.forbidden",
            "family": "registration",
            "severity": "critical",
            "title": "Registrar refuses registration",
            "explanation": "403.",
            "action": "Act now",
            "evidence": {"checks": ["sip.register"]},
        },
        {
            "cause": "host.vpn_active",
            "family": "host",
            "severity": "warning",
            "title": "VPN active",
            "explanation": "tun0.",
            "action": "Disconnect",
            "evidence": {"checks": ["host.vpn"]},
        },
    ]
    return {
        "schema_version": 1,
        "tool": {"name": "sipdiag", "version": "0.1.0"},
        "run_id": "r-1",
        "started_at": "2026-11-27T04:00:00.000Z",
        "duration_ms": 5,
        "complete": False,
        "host": {"hostname": "h", "os": "Linux", "os_version": "6"},
        "target": {"registrar": "sip:pbx", "transports": ["udp"]},
        "correlation": {"user_agent": "sipdiag/0.1.0 run=r-1"},
        "checks": [ok, check],
        "findings": findings,
        "verdict": "failing",
    }


def test_text_shows_hints_only_under_problems_and_findings_most_severe_first() -> None:
    text = render(_report(), "text", Marks.for_encoding("utf-8"))
    lines = text.splitlines()
    fail = lines.index("[✗] Registrar accepts our REGISTER — udp: 403 Forbidden")
    assert lines[fail + 1] == "    → ask the admin"
    assert "never shown for a pass" not in text
    assert text.index("sip.forbidden") < text.index("host.vpn_active")
    assert "Action: Act now" in text
    assert "Verdict: failing (INCOMPLETE: interrupted) — 1 pass, 1 fail" in text


def test_text_falls_back_to_ascii_marks() -> None:
    text = render(_report(), "text", Marks.for_encoding("ascii"))
    assert "[x] Registrar accepts our REGISTER - udp: 403 Forbidden" in text
    assert "    -> ask the admin" in text
    assert text.isascii()


def test_markdown_and_html_escape_what_they_show() -> None:
    md = render(_report(), "md")
    assert md.startswith("# sipdiag report — failing") and "**incomplete**" in md
    html = render(_report(), "html")
    assert "OS &lt;b&gt;" in html
    assert "OS <b>" not in html


def test_format_follows_the_file_extension() -> None:
    assert [format_for_path(p, "text") for p in ("a.JSON", "a.md", "a.htm", "a.txt", "a.log")] == [
        "json",
        "md",
        "html",
        "text",
        "text",
    ]
