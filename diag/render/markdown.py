"""Markdown report, for pasting into tickets: verdict, findings, checks, correlation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from diag.render.sections import correlation_rows, run_facts, status_counts

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "➖", "error": "💥"}
_SEVERITY_ICON = {"critical": "❌", "warning": "⚠️", "info": "ℹ️"}


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _json_block(value: Any) -> list[str]:
    body = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return ["```json", body.replace("```", "` ` `"), "```"]


def render_markdown(report: Mapping[str, Any]) -> str:
    tally = ", ".join(f"{n} {s}" for s, n in status_counts(report).items() if n)
    out = [
        f"# sipdiag report — {report['verdict']}",
        "",
        f"**Verdict: {report['verdict']}**"
        f"{'' if report['complete'] else ' (**incomplete**: the run was interrupted)'} — {tally}",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in run_facts(report)]
    out += ["", "## Findings", ""]
    if not report["findings"]:
        out += ["No problems found.", ""]
    for f in report["findings"]:
        evidence = {k: v for k, v in f["evidence"].items() if k != "checks"}
        checks = ", ".join(f"`{c}`" for c in f["evidence"].get("checks", []))
        out += [
            f"### {_SEVERITY_ICON.get(f['severity'], '')} {f['severity']}: {_cell(f['title'])}",
            "",
            f"- **Cause:** `{f['cause']}` ({f['family']})",
            f"- **Why:** {f['explanation']}",
            f"- **Action:** {f['action']}",
            f"- **Evidence:** {checks}",
            "",
        ]
        if evidence:
            out += [*_json_block(evidence), ""]
    out += [
        "## Checks",
        "",
        "| | Check | Status | Summary | Next action |",
        "|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        out.append(
            f"| {_ICON.get(c['status'], '')} | {_cell(c['title'])} (`{c['id']}`) | {c['status']} | "
            f"{_cell(c['summary'])} | {_cell(c['hint'])} |"
        )
    out.append("")
    for c in report["checks"]:
        if c.get("details"):
            out += [
                f"<details><summary>{c['id']} details</summary>",
                "",
                *_json_block(c["details"]),
            ]
            out += ["", "</details>", ""]
    out += ["## Correlation", "", "Search the platform's SIP logs for these values.", ""]
    out += [f"- {k}: `{_cell(v)}`" for k, v in correlation_rows(report)]
    return "\n".join(out).rstrip() + "\n"
