"""What sipdiag shows of text from outside (a registrar's reason, Warning and Server, a
certificate, a saved report, a log export) cannot drive a terminal, a Markdown viewer or a
spreadsheet. One rule, in Python and in DuckDB SQL (`match` renders its rows in SQL):

- C0 controls U+0000-U+001F and DEL become Unicode Control Pictures (U+2400 + code, DEL U+2421):
  ESC shows as ␛, CR as ␍, a line break inside a field as ␊;
- C1 controls U+0080-U+009F and the bidi formatting characters (U+061C, U+200E, U+200F,
  U+202A-U+202E, U+2066-U+2069) become U+FFFD.

Reports keep the original text; only what text, Markdown and CSV output show is changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_TABLE: dict[int, str] = {
    **{c: chr(0x2400 + c) for c in range(0x20)},
    0x7F: "\u2421",
    **{c: "\ufffd" for c in (*range(0x80, 0xA0), *_BIDI)},
}
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_TABLE)) + "]")


def neutralise(text: str) -> str:
    """`text` with control and bidi formatting characters replaced by visible ones."""
    return text.translate(_TABLE) if _UNSAFE.search(text) else text


def neutralise_tree(value: Any) -> Any:
    """Every string in a report-like value neutralised, mapping keys too; other values kept."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, Mapping):
        return {neutralise_tree(k): neutralise_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [neutralise_tree(v) for v in value]
    return value


# DuckDB: `translate` costs ~2 µs per value with a 77-character map, a regex test ~0.05 µs, so
# the map runs only on values that hold something to neutralise. chr(0): a NUL cannot sit in
# the SQL text; the other characters sit in the literal as they are.
_SQL_FROM = "chr(0) || '" + "".join(chr(c) for c in sorted(_TABLE) if c) + "'"
_SQL_TO = "'" + "".join(_TABLE[c] for c in sorted(_TABLE)) + "'"
_SQL_CLASS = "'[" + "".join(f"\\x{{{c:x}}}" for c in sorted(_TABLE)) + "]'"


def sql_neutralise(expr: str) -> str:
    """DuckDB SQL for `neutralise(expr)` (`expr` a VARCHAR expression, evaluated twice)."""
    return (
        f"CASE WHEN regexp_matches({expr}, {_SQL_CLASS}) "
        f"THEN translate({expr}, {_SQL_FROM}, {_SQL_TO}) ELSE {expr} END"
    )


# Markdown: after the rule above, HTML's & < > as entities (no raw HTML, no entity tricks) and
# CommonMark's punctuation backslash-escaped, so no link, image, emphasis, code span or table
# cell break; a leading `-` would start a list item (a leading `>` is already &gt;).
_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_SQL_MD_PUNCTUATION = r"'([\\`*_{}\[\]()#+!|~])'"


def md_text(value: Any) -> str:
    """A field from outside as Markdown text that shows exactly what it says."""
    text = neutralise("" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCTUATION.sub(r"\\\1", text)
    return "\\" + text if text.startswith("-") else text


def sql_md_row(cells: Sequence[str]) -> str:
    """DuckDB SQL for a Markdown table row of `md_text` cells (VARCHAR expressions, each
    evaluated more than once). The escapes run once on the whole row, not once per cell (half
    the time of `match --format md`): cells neutralised, then joined by U+001F, which the rule
    has just removed from them, with U+001E marking a cell's leading `-`."""
    marked = [
        f"CASE WHEN starts_with({c}, '-') THEN chr(30) ELSE '' END || {sql_neutralise(c)}"
        for c in cells
    ]
    x = " || chr(31) || ".join(f"({m})" for m in marked)
    x = f"replace(replace(replace({x}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
    x = f"regexp_replace({x}, {_SQL_MD_PUNCTUATION}, '\\\\\\1', 'g')"
    x = f"replace(replace({x}, chr(30), '\\'), chr(31), ' | ')"
    return f"'| ' || {x} || ' |'"


def md_code(value: Any) -> str:
    """A field from outside as a Markdown code span: its fence longer than any backtick run in
    it (CommonMark), so the value cannot close it."""
    text = neutralise("" if value is None else str(value))
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fenced(body: str, info: str = "") -> list[str]:
    """A fenced code block whose fence is longer than any backtick run in `body` (at least 3)."""
    text = neutralise_lines(body)
    fence = "`" * max(3, max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    return [fence + info, text, fence]


def neutralise_lines(text: str) -> str:
    """`text` neutralised line by line: its own line breaks kept."""
    return "\n".join(neutralise(line) for line in text.split("\n"))


# CSV: OWASP's rule against formula injection: a cell that begins with = + - @ TAB or CR gets a
# leading ' so a spreadsheet shows it as text instead of evaluating it.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def sql_csv_cell(expr: str) -> str:
    """DuckDB SQL for a CSV text cell with OWASP's formula neutralisation."""
    return (
        f"CASE WHEN left({expr}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN '''' || {expr} ELSE {expr} END"
    )
