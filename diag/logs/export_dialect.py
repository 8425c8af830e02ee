"""A CSV export's dialect and header, as DuckDB's sniffer finds them, past any title lines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from diag.lifecycle import is_interrupt
from diag.logs.export_columns import names_fields
from diag.logs.export_encoding import read_head

if TYPE_CHECKING:
    import duckdb

SAMPLE_ROWS = 1000  # rows that name the columns' dialect and show the time format


def sniff_csv(
    con: duckdb.DuckDBPyConnection, path: Path, compression: str, skip: int | None = None
) -> tuple[list[str], list[str], int]:
    """([delim, quote, escape, new_line, comment], column names, lines before the header),
    from DuckDB's sniffer on a sample, as the reader would detect them; `skip` lines first,
    if given. Malformed rows in the sample are let pass, which also keeps the sniffer from
    finding a preamble ("Exported by ...") above the header by itself: see skip_preamble."""
    row = con.execute(
        "SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, "
        "[c.name FOR c IN Columns] FROM sniff_csv(?, sample_size=?, header=true, "
        "all_varchar=true, ignore_errors=true, compression=?"
        + ("" if skip is None else f", skip={int(skip)}")
        + ")",
        [str(path), SAMPLE_ROWS, compression],
    ).fetchone()
    assert row is not None
    delim, quote, escape, new_line, comment = ("" if v == "(empty)" else v for v in row[:5])
    # No quote in the sample does not mean none later: RFC 4180 quoting costs nothing when absent.
    quote = quote or '"'
    return [delim, quote, escape or quote, new_line, comment], list(row[6]), int(row[5])


PREAMBLE_MAX_LINES = 10  # title lines above an export's header that are looked past


def skip_preamble(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    compression: str,
    overrides: Mapping[str, str],
) -> tuple[list[str], list[str], int] | None:
    """The sniff after the first few lines that leaves columns naming the required fields
    (an export titled "Audit export, 27/11/2026" above its header), or None."""
    import duckdb

    for skip in range(1, PREAMBLE_MAX_LINES + 1):
        try:
            dialect, available, _ = sniff_csv(con, path, compression, skip)
        except duckdb.Error as exc:
            if is_interrupt(exc):
                raise
            continue
        if names_fields(available, overrides):
            # The reader passes over blank lines; the line numbers must count them.
            return dialect, available, skip + blank_lines(path, compression, skip)
    return None


def blank_lines(path: Path, compression: str, after: int) -> int:
    """How many blank lines follow the first `after` lines of the file."""
    lines = _head_lines(path, compression)[after : after + PREAMBLE_MAX_LINES + 1]
    blank = 0
    for line in lines:
        if line.strip(b" \t"):
            break
        blank += 1
    return blank


def _head_lines(path: Path, compression: str) -> list[bytes]:
    """The lines (any line ending, CR alone too) of the file's first 64 KiB; none if it
    cannot be read (DuckDB has read it: its line numbers then go uncorrected)."""
    return (read_head(path, compression == "gzip", 1 << 16) or b"").splitlines()
