"""The line guard: a scan bounding what one line of a CSV export can cost the reader, and a
copy in which the lines past those bounds are replaced by a marker."""

from __future__ import annotations

import csv
import gzip
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from diag.lifecycle import is_interrupt, signals_deferred
from diag.logs.export_encoding import CHUNK

if TYPE_CHECKING:
    import duckdb

# Bounds on the work one line can cost. DuckDB's CSV reader stores a rejected row with its whole
# text once per column past the header's: a line of 200,000 short fields would cost 200,000
# copies of itself (quadratic time and memory). A cheap scan first bounds what the reader's
# rejects could cost; past REJECT_BUDGET_BYTES, or with a line longer than MAX_LINE_BYTES, the
# export is read from a copy in which each such line (more fields than the header, or too long)
# is replaced by MARKER, which the reader rejects once, and which is listed as the line it was.
MAX_LINE_BYTES = 1 << 20
REJECT_BUDGET_BYTES = 64 << 20
PREVIEW_CHARS = 200  # of a replaced line, listed as its text
MARKERS = ("sipdiagrejectedline", "0000000000")
_NO_NULL = "\x1e\x1d\x1c"  # an empty field is '' (not NULL) in the guard's scan


def _marker(dialect: list[str]) -> str:
    """A line the reader rejects as one short row: none of the dialect's characters in it."""
    return next(m for m in MARKERS if not any(c and c in m for c in dialect))


def over_budget(
    con: duckdb.DuckDBPyConnection, path: Path, compression: str, dialect: list[str], width: int
) -> bool:
    """Whether a line is longer than MAX_LINE_BYTES, or the lines with more delimiters than the
    header could cost the reader's rejects more than REJECT_BUDGET_BYTES (delimiters in quotes
    counted too: an upper bound). Lines are read whole (as column `j`; `k` is set when a line
    holds the unit separator, which would cut `j` short: such lines count as over budget)."""
    import duckdb

    delim, new_line = dialect[0], dialect[3]
    try:
        con.execute("DROP TABLE IF EXISTS guard_rejects").fetchall()
        con.execute("DROP TABLE IF EXISTS guard_scans").fetchall()
        row = con.execute(
            "SELECT count(*) FILTER (k IS NOT NULL), coalesce(max(strlen(j)), 0), "
            "coalesce(sum(greatest(strlen(j) - strlen(replace(j, ?, '')) + 1 - ?, 0)"
            "::HUGEINT * strlen(j)), 0) "
            "FROM read_csv(?, header=false, columns={'j': 'VARCHAR', 'k': 'VARCHAR'}, "
            "delim='\x1f', quote='', escape='', new_line=?, auto_detect=false, "
            "strict_mode=false, null_padding=true, nullstr=?, ignore_errors=true, "
            "store_rejects=true, rejects_table='guard_rejects', rejects_scan='guard_scans', "
            f"rejects_limit=1, max_line_size={MAX_LINE_BYTES}, compression=?)",
            [delim or "\x1f", width, str(path), new_line, _NO_NULL, compression],
        ).fetchall()[0]  # all: the rejects table is made when the result is
        try:  # the table exists once a line was rejected (too long for the reader)
            (rejected,) = con.execute("SELECT count(*) FROM guard_rejects").fetchone() or (0,)
        except duckdb.CatalogException:
            rejected = 0
    except duckdb.Error as exc:
        if is_interrupt(exc):
            raise
        return True  # the copy's line by line reading decides
    cut, longest, cost = row
    return bool(rejected or cut or longest > MAX_LINE_BYTES or cost > REJECT_BUDGET_BYTES)


def _fields(line: bytes, dialect: list[str]) -> int:
    """The number of fields in a CSV line, quotes understood."""
    delim, quote, escape = dialect[:3]
    text = line.decode("utf-8", "sipdiag-cp1252").rstrip("\r\n")
    reader = csv.reader(
        [text],
        delimiter=delim or "\x1f",
        quotechar=quote or None,
        escapechar=None if escape in ("", quote) else escape,
        doublequote=escape in ("", quote),
        strict=False,
    )
    limit = csv.field_size_limit(MAX_LINE_BYTES + 1)  # a field may be as long as a line
    try:
        return len(next(reader, []))
    finally:
        csv.field_size_limit(limit)


def _preview(line: bytes) -> str:
    text = line[: PREVIEW_CHARS * 4].decode("utf-8", "sipdiag-cp1252").rstrip("\r\n")
    return text[:PREVIEW_CHARS] + ("…" if len(line) > PREVIEW_CHARS else "")


@contextmanager
def guarded_copy(
    path: Path, gzipped: bool, dialect: list[str], width: int
) -> Iterator[tuple[Path, list[tuple[str, str]]]]:
    """A temporary copy of the file, line for line, with each line longer than MAX_LINE_BYTES
    or of more fields than `width` replaced by a marker; and each replaced line's (reason,
    text). Memory stays within a chunk and one line of at most MAX_LINE_BYTES."""
    sep = b"\r" if dialect[3] in ("\\r", "\r") else b"\n"
    delim = dialect[0].encode() or b"\x1f"
    marker = _marker(dialect).encode()
    replaced: list[tuple[str, str]] = []
    fd, name = tempfile.mkstemp(prefix="sipdiag-export-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(path) if gzipped else path.open("rb") as f:
            pending = b""  # the start of the current line
            long_line: bytes | None = None  # the start of a line known to be too long

            def finish(line: bytes) -> None:
                nonlocal long_line
                if long_line is not None or len(line) > MAX_LINE_BYTES:
                    replaced.append(("line too long", _preview(long_line or line)))
                    out.write(marker + (b"\r" if line.endswith(b"\r") else b""))
                    long_line = None
                elif line.count(delim) >= width and _fields(line, dialect) > width:
                    replaced.append(("too many columns", _preview(line)))
                    out.write(marker + (b"\r" if line.endswith(b"\r") else b""))
                else:
                    out.write(line)

            while chunk := f.read(CHUNK):
                lines = (pending + chunk).split(sep)
                pending = lines.pop()
                for line in lines:
                    finish(line)
                    out.write(sep)
                if len(pending) > MAX_LINE_BYTES:
                    long_line = long_line or pending[: PREVIEW_CHARS * 4]
                    pending = b""
            if pending or long_line is not None:
                finish(pending)
        yield Path(name), replaced
    finally:
        with signals_deferred():
            os.unlink(name)
