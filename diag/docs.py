"""The generated parts of docs/: the diagnosis rule and override tables, from diag/diagnosis.py.

The tables sit in docs/diagnosis.md between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->`` markers; the prose around them is written by hand.
``python -m diag.docs`` rewrites the tables in place, ``python -m diag.docs --check`` exits 1 when
the file is out of date (tests/test_docs.py does the same check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from diag.diagnosis import OVERRIDES, RULES, Rule
from diag.model import Status

DIAGNOSIS_MD = Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md"


def _when(rule: Rule) -> str:
    """A rule's `when` column: its condition in words, else the check statuses it fires on."""
    if rule.condition:
        return rule.condition
    order = (Status.FAIL, Status.WARN, Status.PASS, Status.ERROR)
    return "the check is " + " or ".join(s.value for s in order if s in rule.statuses)


def rules_table() -> str:
    """The rules, in evaluation order: cause, the check it reads, when, severity."""
    rows = ["| cause | from check | when | severity |", "|---|---|---|---|"]
    rows += [f"| `{r.cause}` | `{r.check}` | {_when(r)} | {r.severity.value} |" for r in RULES]
    return "\n".join(rows) + "\n"


def overrides_table() -> str:
    """The one-truth-per-run overrides: the cause dropped, and the evidence that drops it."""
    rows = ["| cause | dropped when |", "|---|---|"]
    rows += [f"| `{o.cause}` | {o.contradiction} |" for o in OVERRIDES]
    return "\n".join(rows) + "\n"


GENERATED: dict[str, Callable[[], str]] = {"rules": rules_table, "overrides": overrides_table}


def regenerate(text: str) -> str:
    """`text` with every generated block replaced by what the code says today."""
    for name, render in GENERATED.items():
        begin = f"<!-- BEGIN generated: {name} (python -m diag.docs; do not edit) -->\n"
        end = f"<!-- END generated: {name} -->\n"
        start = text.find(begin)
        stop = text.find(end, start + len(begin))
        if start < 0 or stop < 0 or text.find(begin, start + 1) >= 0:
            raise ValueError(f"expected exactly one generated block {name!r}: {begin.strip()}")
        text = text[: start + len(begin)] + render() + text[stop:]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    current = DIAGNOSIS_MD.read_text(encoding="utf-8")
    fresh = regenerate(current)
    if fresh == current:
        return 0
    if check:
        sys.stderr.write(f"{DIAGNOSIS_MD} is out of date: run python -m diag.docs\n")
        return 1
    DIAGNOSIS_MD.write_text(fresh, encoding="utf-8")
    sys.stderr.write(f"rewrote {DIAGNOSIS_MD}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
