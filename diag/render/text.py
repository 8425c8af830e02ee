"""Terminal output in the style of `flutter doctor`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diag.context import Check
from diag.render.safe import neutralise, neutralise_tree
from diag.render.sections import correlation_rows, status_counts

# ANSI colours for a terminal only (the caller decides: a tty and no NO_COLOR).
_COLOUR = {
    "pass": "32",
    "warn": "33",
    "fail": "31",
    "error": "35",
    "skip": "2",
    "critical": "31",
    "warning": "33",
    "info": "2",
    "healthy": "1;32",
    "degraded": "1;33",
    "failing": "1;31",
}


def paint(text: str, key: str, color: bool) -> str:
    code = _COLOUR.get(key)
    return f"\033[{code}m{text}\033[0m" if color and code else text


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


def render_text(report: Mapping[str, Any], marks: Marks, color: bool = False) -> str:
    # Every string of the report, keys too, neutralised here at the entrance, so no field can
    # reach the terminal raw; the renderer's own line breaks and colours come after.
    report = neutralise_tree(report)
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
        line = f"[{mark}] {c['title']} {marks.dash} {label}{c['summary']}"
        lines.append(paint(line, c["status"], color))
        if c["hint"] and c["status"] in ("warn", "fail", "error"):
            lines.append(f"    {marks.arrow} {c['hint']}")
    findings = report["findings"]
    lines.append("")
    if findings:
        lines.append("Findings (most severe first):")
        for f in findings:
            sev = f["severity"]
            mark = marks.by_severity[sev]
            head = f"  {mark} {sev:<8} {f['cause']} {marks.dash} {f['title']}"
            lines.append(paint(head, sev, color))
            lines.append(f"      {f['explanation']}")
            lines.append(f"      Action: {f['action']}")
        lines.append("")
    lines.append("Correlation (search the platform's SIP logs for these):")
    lines += [f"  {k + ':':<17} {v}" for k, v in correlation_rows(report)]
    lines.append("")
    tally = ", ".join(f"{n} {s}" for s, n in status_counts(report).items() if n)
    state = "" if report["complete"] else " (INCOMPLETE: interrupted)"
    verdict = f"Verdict: {report['verdict']}{state} {marks.dash} {tally}"
    lines.append(paint(verdict, report["verdict"], color))
    return "\n".join(lines) + "\n"


def progress_line(event: str, check: Check, status: str | None, marks: Marks) -> str:
    if event == "start":
        return f"  … {neutralise(check.id)}"
    return f"  {marks.by_status.get(status or '', '?')} {neutralise(check.id)}"


def progress_family_line(
    family: str, statuses: Sequence[str], elapsed: float, marks: Marks, color: bool
) -> str:
    """One line when every selected check of a family has finished."""
    worst = next((s for s in ("error", "fail", "warn", "pass", "skip") if s in statuses), "skip")
    tally = neutralise(", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses)))
    line = f"  [{marks.by_status[worst]}] {neutralise(family):<7} {tally}  ({elapsed:.1f} s)"
    return paint(line, worst, color)


def progress_running_line(running: Sequence[str], elapsed: float, spinner: str) -> str:
    return f"  {spinner} {elapsed:5.1f} s  running: {neutralise(', '.join(running))}"


def render_checks_table(checks: Sequence[Check]) -> str:
    rows = [("ID", "TITLE", "NEEDS")]
    rows += [(neutralise(c.id), neutralise(c.title), neutralise(c.needs)) for c in checks]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows) + "\n"
