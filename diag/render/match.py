"""Output of `match`: text, JSON, CSV or Markdown, the rows streamed from DuckDB's writer.

An export's cells and reports' fields are text from outside: text and Markdown rows get
diag/render/safe.py's rule in SQL (Markdown escaped as well), CSV cells OWASP's formula rule;
JSON keeps them as they are.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from diag.render.safe import md_text, neutralise, sql_csv_cell, sql_md_row, sql_neutralise

if TYPE_CHECKING:
    from diag.logs.match import MatchResult

MALFORMED_SHOWN = 10  # text/md list this many malformed lines; json lists them all


MATCH_COLUMNS = (
    "line", "time", "agent", "status", "category", "run_id", "matched_by", "report_offset_s",
    "findings", "likely_cause", "decided_by", "watch_id", "timeline_cause", "timeline_explanation",
    "label", "evidence",
)  # fmt: skip


def _sql_text(col: str) -> str:
    return f"coalesce(CAST({col} AS VARCHAR), '')"


# CSV and Markdown cells: findings as their causes joined by ';', evidence lines by '; '.
_CELL = {
    **{c: c for c in MATCH_COLUMNS},
    "findings": "finding_causes",
    "evidence": "array_to_string(evidence, '; ')",
}
_JSON_COLUMNS = ", ".join((
    "line", "time", "agent", "status", "explained_as", "category", "call_id", "number",
    "run_id", "matched_by", "report_offset_s", "findings", "likely_cause", "decided_by", "timeline",
    "label", "evidence",
))  # fmt: skip
# The whole row neutralised at once: one test per row; the row has no line break of its own.
# Each line of evidence follows on a line of its own, indented; so does a timeline's explanation
# when the report decided the row.
_TEXT_ROW = (
    sql_neutralise(
        "(time || '  ' || coalesce(agent, number, '') || '  ' || status || '  [' || category"
        " || ']  ' || CASE WHEN decided_by = 'timeline' THEN 'watch ' || left(watch_id, 8)"
        " ELSE coalesce(left(run_id, 8), 'no report') END || '  -> ' || likely_cause)"
    )
    + " || CASE WHEN watch_id IS NOT NULL AND decided_by IS DISTINCT FROM 'timeline' THEN"
    " chr(10) || '      timeline: ' || "
    + sql_neutralise("timeline_explanation")
    + " ELSE '' END"
    + " || array_to_string(list_transform(evidence, lambda x: chr(10) || '      evidence: ' || "
    + sql_neutralise("x")
    + "), '')"
)
_NUMBERS = ("line", "report_offset_s")  # a negative offset is a number, not a formula


@contextlib.contextmanager
def _copy_file(result: MatchResult, select: str, options: str) -> Iterator[Path]:
    """DuckDB's own writer (parallel, does the quoting) into a temporary file, in line order."""
    with tempfile.TemporaryDirectory(prefix="sipdiag-") as tmp:
        out = Path(tmp) / "rows"
        result.con.execute(
            f"COPY (SELECT {select} FROM match_rows ORDER BY line) TO '{out}' ({options})"
        ).fetchall()
        yield out


def _emit(result: MatchResult, select: str, options: str, out: TextIO) -> None:
    """The rows DuckDB writes, copied into `out`: to a UTF-8 stream's binary buffer as they are
    (10^5 rows and more: a decode and an encode of the whole output cost ~0.2 s), else as text."""
    binary = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None) or ""
    with _copy_file(result, select, options) as path:
        # Where text streams write "\r\n" (Windows), the rows go through the text stream too.
        utf8 = bool(encoding) and codecs.lookup(encoding).name == "utf-8"
        if binary is not None and utf8 and os.linesep == "\n":
            out.flush()
            with path.open("rb") as rows:
                shutil.copyfileobj(rows, binary, 1 << 20)
            binary.flush()
        else:
            with path.open(encoding="utf-8", newline="") as rows:
                shutil.copyfileobj(rows, out, 1 << 20)


# Cells that begin with sipdiag's own words (a label, a line of evidence: "at 14:02 UTC, …", who
# decided, a cause ID) need no formula rule, nor do numbers.
_OWN_START = ("label", "evidence", "decided_by", "timeline_cause")
_CSV_SELECT = ", ".join(
    f"{_CELL[c] if c in _NUMBERS + _OWN_START else sql_csv_cell(_CELL[c])} AS {c}"
    for c in MATCH_COLUMNS
)
_CSV_OPTIONS = "FORMAT csv, HEADER false"
# One pre-rendered text column per row, written as it is: no quoting, no escaping.
_RAW_OPTIONS = "FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIM '\x1f'"
_MD_ROW = sql_md_row([_sql_text(_CELL[c]) for c in MATCH_COLUMNS])


def write_match(result: MatchResult, fmt: str, out: TextIO) -> None:
    """The match result in `fmt` into `out`; the rows stream from DuckDB's writer."""
    if fmt == "json":
        head = {
            "summary": result.summary,
            "malformed": result.malformed,
            "skipped_reports": result.skipped_reports,
            "skipped_timelines": result.skipped_timelines,
        }
        text = json.dumps(head, indent=2, ensure_ascii=False)[:-2]  # reopen the object
        out.write(text + ',\n  "rows": ')
        if result.summary["failures"]:
            _emit(result, _JSON_COLUMNS, "FORMAT json, ARRAY true", out)  # "[ ... ]\n"
        else:
            out.write("[]\n")
        out.write("}\n")
    elif fmt == "csv":
        out.write(",".join(MATCH_COLUMNS) + "\n")
        _emit(result, _CSV_SELECT, _CSV_OPTIONS, out)
    elif fmt == "md":
        lines = [
            "# sipdiag match",
            "",
            *(f"- {md_text(line.strip())}" for line in _summary_lines(result)),
            "",
            "| " + " | ".join(MATCH_COLUMNS) + " |",
            "|" + "---|" * len(MATCH_COLUMNS),
        ]
        out.write("\n".join(lines) + "\n")
        _emit(result, _MD_ROW, _RAW_OPTIONS, out)
    else:
        _emit(result, _TEXT_ROW, _RAW_OPTIONS, out)
        out.write("\n".join(["", *map(neutralise, _summary_lines(result))]) + "\n")


def render_match(result: MatchResult, fmt: str) -> str:
    buffer = io.StringIO()
    write_match(result, fmt, buffer)
    return buffer.getvalue()


def _summary_lines(result: MatchResult) -> list[str]:
    s = result.summary
    cats = ", ".join(f"{k} {v}" for k, v in s["by_category"].items()) or "none"
    lines = [
        f"rows read {s['rows_read']}, skipped as malformed {s['rows_skipped']}; "
        f"failures {s['failures']} ({cats})",
        f"matched {s['matched']} ({s['matched_by_call_id']} by Call-ID), "
        f"unmatched {s['unmatched']}; reports read {s['reports_read']}, "
        f"skipped {s['reports_skipped']}",
    ]
    if s.get("timelines_read") or s.get("timelines_skipped"):
        lines.append(
            f"timelines read {s['timelines_read']}, skipped {s['timelines_skipped']}; "
            f"rows paired with a timeline {s['matched_by_timeline']}, "
            f"decided by it {s['decided_by_timeline']} (the nearer evidence in time)"
        )
    if s.get("inbound_tests"):
        lines.append(
            f"labelled {s['inbound_tests']} as sipdiag inbound test (sipdiag's own test calls, "
            "not failed offers)"
        )
    for m in result.malformed[:MALFORMED_SHOWN]:
        lines.append(f"  malformed line {m['line']}: {m['reason']}")
    if len(result.malformed) > MALFORMED_SHOWN:
        lines.append(f"  … {len(result.malformed) - MALFORMED_SHOWN} more (see --format json)")
    return lines
