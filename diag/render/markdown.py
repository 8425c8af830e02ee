"""Markdown report, for pasting into tickets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "➖", "error": "💥"}


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    out = [
        f"# sipdiag report — {report['verdict']}",
        "",
        f"- Run: `{report['run_id']}` ({report['started_at']}, {report['duration_ms']} ms"
        f"{'' if report['complete'] else ', **incomplete**'})",
        f"- Host: {report['host']['hostname']} "
        f"({report['host']['os']} {report['host']['os_version']})",
        f"- Registrar: {report['target']['registrar'] or 'not configured'}",
        f"- SIP User-Agent: `{report['correlation']['user_agent']}`",
        "",
        "## Checks",
        "",
        "| | Check | Status | Summary | Next action |",
        "|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        out.append(
            f"| {_ICON[c['status']]} | {_cell(c['title'])} (`{c['id']}`) | {c['status']} | "
            f"{_cell(c['summary'])} | {_cell(c['hint'])} |"
        )
    out += ["", "## Findings", ""]
    if not report["findings"]:
        out.append("No problems found.")
    for f in report["findings"]:
        out += [
            f"### {f['severity']}: {_cell(f['title'])} (`{f['cause']}`)",
            "",
            f["explanation"],
            "",
            f"**Action:** {f['action']}",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
