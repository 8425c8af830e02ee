"""Terminal output in the style of `flutter doctor`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diag.model import Check


@dataclass(frozen=True)
class Marks:
    by_status: Mapping[str, str]
    by_severity: Mapping[str, str]
    arrow: str
    dash: str

    @classmethod
    def for_encoding(cls, encoding: str | None) -> Marks:
        if (encoding or "").lower().replace("-", "") in ("utf8", "utf16", "utf32"):
            return cls(
                {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-", "error": "E"},
                {"critical": "✗", "warning": "!", "info": "i"},
                "→",
                "—",
            )
        return cls(
            {"pass": "+", "warn": "!", "fail": "x", "skip": "-", "error": "E"},
            {"critical": "x", "warning": "!", "info": "i"},
            "->",
            "-",
        )


def render_text(report: Mapping[str, Any], marks: Marks) -> str:
    lines = [f"sipdiag {report['tool']['version']}  run {report['run_id']}"]
    if report["target"]["registrar"]:
        lines.append(
            f"registrar {report['target']['registrar']} "
            f"({', '.join(report['target']['transports'])})"
        )
    lines.append("")
    for c in report["checks"]:
        mark = marks.by_status[c["status"]]
        label = {"skip": "skipped: ", "error": "error: "}.get(c["status"], "")
        lines.append(f"[{mark}] {c['title']} {marks.dash} {label}{c['summary']}")
        if c["hint"] and c["status"] in ("warn", "fail", "error"):
            lines.append(f"    {marks.arrow} {c['hint']}")
    findings = report["findings"]
    lines.append("")
    if findings:
        lines.append("Findings (most severe first):")
        for f in findings:
            sev = f["severity"]
            mark = marks.by_severity[sev]
            lines.append(f"  {mark} {sev:<8} {f['cause']} {marks.dash} {f['title']}")
            lines.append(f"      {f['explanation']}")
            lines.append(f"      Action: {f['action']}")
        lines.append("")
    counts = {
        s: sum(c["status"] == s for c in report["checks"])
        for s in ("pass", "warn", "fail", "error", "skip")
    }
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    state = "" if report["complete"] else " (INCOMPLETE: interrupted)"
    lines.append(f"Verdict: {report['verdict']}{state} {marks.dash} {tally}")
    return "\n".join(lines) + "\n"


def progress_line(event: str, check: Check, status: str | None, marks: Marks) -> str:
    if event == "start":
        return f"  … {check.id}"
    return f"  {marks.by_status.get(status or '', '?')} {check.id}"


def render_checks_table(checks: Sequence[Check]) -> str:
    rows = [("ID", "TITLE", "NEEDS")] + [(c.id, c.title, c.needs) for c in checks]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows) + "\n"
