"""Markdown report, for pasting into tickets: verdict, findings, checks, correlation.

Every field from a report is text from outside (a registrar's reason, a certificate, an edited
file): it is neutralised and escaped (diag/render/safe.py), so a viewer renders no HTML, link,
image or emphasis of its own, and a JSON block's fence is longer than any backtick run in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from diag.render.safe import md_code, md_fenced, md_text, neutralise_tree
from diag.render.sections import correlation_rows, run_facts, status_counts

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "➖", "error": "💥"}
_SEVERITY_ICON = {"critical": "❌", "warning": "⚠️", "info": "ℹ️"}


def _json_block(value: Any) -> list[str]:
    return md_fenced(json.dumps(value, indent=2, ensure_ascii=False, default=str), "json")


def render_markdown(report: Mapping[str, Any]) -> str:
    # Control characters go at the entrance (keys too), so the JSON blocks show them visibly.
    report = neutralise_tree(report)
    t = md_text
    tally = ", ".join(f"{n} {s}" for s, n in status_counts(report).items() if n)
    out = [
        f"# sipdiag report — {t(report['verdict'])}",
        "",
        f"**Verdict: {t(report['verdict'])}**"
        f"{'' if report['complete'] else ' (**incomplete**: the run was interrupted)'} — {tally}",
        "",
    ]
    out += [f"- {k}: {t(v)}" for k, v in run_facts(report)]
    out += ["", "## Findings", ""]
    if not report["findings"]:
        out += ["No problems found.", ""]
    for f in report["findings"]:
        evidence = {k: v for k, v in f["evidence"].items() if k != "checks"}
        checks = ", ".join(md_code(c) for c in f["evidence"].get("checks", []))
        out += [
            f"### {_SEVERITY_ICON.get(f['severity'], '')} {t(f['severity'])}: {t(f['title'])}",
            "",
            f"- **Cause:** {md_code(f['cause'])} ({t(f['family'])})",
            f"- **Why:** {t(f['explanation'])}",
            f"- **Action:** {t(f['action'])}",
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
            f"| {_ICON.get(c['status'], '')} | {t(c['title'])} ({md_code(c['id'])}) | "
            f"{t(c['status'])} | {t(c['summary'])} | {t(c['hint'])} |"
        )
    out.append("")
    for c in report["checks"]:
        if c.get("details"):
            # An HTML block: Markdown is not read inside it, so HTML escaping is what applies.
            out += [
                f"<details><summary>{escape(str(c['id']))} details</summary>",
                "",
                *_json_block(c["details"]),
            ]
            out += ["", "</details>", ""]
    out += ["## Correlation", "", "Search the platform's SIP logs for these values.", ""]
    out += [f"- {k}: {md_code(v)}" for k, v in correlation_rows(report)]
    return "\n".join(out).rstrip() + "\n"
