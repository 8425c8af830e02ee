"""A platform's central-log export (CSV of any delimiter, JSON Lines, either gzipped) as a DuckDB
table `log(line, ts_us, agent, status, call_id, number)`, with malformed rows counted by line.

Line numbers count physical lines, title and blank lines above the data included; they assume
one record per line after that (no blank lines between rows, no newlines inside quoted fields).
"""

from __future__ import annotations

import bisect
import errno
import gzip
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.errors import SipdiagError, UsageError
from diag.lifecycle import is_interrupt
from diag.logs.export_columns import FIELDS as FIELDS
from diag.logs.export_columns import detect_columns, names_fields
from diag.logs.export_columns import parse_column_options as parse_column_options
from diag.logs.export_dialect import SAMPLE_ROWS, blank_lines, skip_preamble, sniff_csv
from diag.logs.export_encoding import head_encoding, utf8_copy
from diag.logs.export_guard import MARKERS, MAX_LINE_BYTES, guarded_copy, over_budget
from diag.logs.export_time import fitting_strategy, sql_str, time_expression, typed_time

if TYPE_CHECKING:
    import duckdb

_JSONL_DELIM = "\x1f"  # never raw inside valid JSON (control characters must be escaped)


@dataclass
class LogExport:
    kind: str  # "csv" | "jsonl"
    columns: dict[str, str]  # field -> column name in the export
    encoding: str  # "utf-8" | "cp1252" | "utf-16"
    rows_read: int
    malformed: list[dict[str, Any]] = field(default_factory=list)  # [{line, reason, text}]
    rejected_lines: list[int] = field(default_factory=list)  # lines the reader itself dropped
    first_line: int = 1  # the file line of the first row (after any header)
    statuses: list[str] = field(default_factory=list)  # distinct, of all rows
    # Table `log`'s columns as SQL over the table `source`: a query that keeps a few rows is
    # faster over these than over view `log` (DuckDB then computes every column of every row).
    source: str = "log"
    fields: dict[str, str] = field(default_factory=dict)

    def readable(self) -> str:
        """SQL over `source`: the row has what match needs."""
        return _readable(self.fields)


def _readable(f: Mapping[str, str]) -> str:
    """SQL: a readable row, with a time, an agent or a number, and a status."""
    return (
        f"{f['valid']} AND {f['ts_us']} IS NOT NULL "
        f"AND ({f['agent']} IS NOT NULL OR {f['number']} IS NOT NULL) "
        f"AND {f['status']} IS NOT NULL"
    )


def _sniff_kind(path: Path) -> tuple[str, bool]:
    """("jsonl" | "csv", gzipped?) from the content, whatever the file is called."""
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.open(raw) if gzipped else raw
            start = stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot read --log {path}: {exc}", "give a readable export") from None
    return ("jsonl" if start.startswith(b"{") else "csv"), gzipped


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC or a quota; DuckDB says so as an out-of-memory error when it cannot spill."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "max_temp_directory_size" in text or "No space left on device" in text


def no_room(what: str) -> SipdiagError:
    """The one-line error for a temporary directory that is full (an environment problem)."""
    return SipdiagError(
        f"no room in the temporary directory {tempfile.gettempdir()} for {what}",
        "free space there, or point TMPDIR at a directory with room (about the export's "
        "uncompressed size)",
    )


def check_tz(con: duckdb.DuckDBPyConnection, tz: str) -> None:
    import duckdb

    try:
        con.execute("SELECT timezone(?, TIMESTAMP '2000-01-01')", [tz]).fetchall()
    except duckdb.Error as exc:
        if is_interrupt(exc):
            raise
        raise UsageError(
            f"unknown time zone '{tz}'", "use an IANA name such as Europe/London or UTC"
        ) from None


def _unreadable(path: Path, exc: Exception, copy: Path | None = None) -> Exception:
    """The usage error for an export DuckDB cannot read (its message naming `path`, not the
    UTF-8 `copy` read in its place); an interrupt stays what it is."""
    if is_interrupt(exc):
        return exc
    message = str(exc).splitlines()[0]
    if copy is not None:
        message = message.replace(str(copy), str(path))
    return UsageError(
        f"cannot read --log {path}: {message}",
        "give a CSV or JSON Lines export (optionally .gz)",
    )


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _CsvRead:
    """Table `log_raw` read from a CSV export, and how to reach its fields."""

    columns: dict[str, str]
    first_line: int
    ts: str
    time_text: str
    invalid_encoding: bool
    replaced: list[tuple[str, str]]  # (reason, text) of each line MARKER stands for

    def col(self, fld: str) -> str:
        return _quoted(self.columns[fld]) if fld in self.columns else "NULL"


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    compression: str,
    overrides: Mapping[str, str],
    tz: str,
    shown: Path | None = None,
    replaced: list[tuple[str, str]] | None = None,
) -> _CsvRead:
    """`shown`: the path errors name (the export, when `path` is a copy); `replaced`: when
    `path` is a guarded copy, the (reason, text) of each line replaced by MARKER, in order."""
    import duckdb

    try:
        sniffed = sniff_csv(con, path, compression)
        if not names_fields(sniffed[1], overrides):
            sniffed = skip_preamble(con, path, compression, overrides) or sniffed
    except duckdb.Error as exc:
        raise _unreadable(shown or path, exc, path if shown else None) from None
    dialect, available, skip = sniffed
    columns = detect_columns(available, overrides)
    if replaced is None and over_budget(con, path, compression, dialect, len(available)):
        try:
            with guarded_copy(path, compression == "gzip", dialect, len(available)) as guarded:
                return _read_csv(con, guarded[0], "none", overrides, tz, shown or path, guarded[1])
        except (OSError, EOFError) as exc:
            if is_disk_full(exc):
                raise no_room(f"a copy of --log {shown or path} with its long lines cut") from None
            raise _unreadable(shown or path, exc) from None
    # The read is told the dialect: DuckDB does not sniff the file a second time.
    reader = (
        "read_csv(?, auto_detect=false, header=true, delim=?, quote=?, escape=?, new_line=?, "
        f"comment=?, skip=?, ignore_errors=true, max_line_size={MAX_LINE_BYTES}, "
        "compression=?, columns=?"
    )
    params = [str(path), *dialect, skip, compression]
    as_text = dict.fromkeys(available, "VARCHAR")
    time_col = _quoted(columns["time"])
    # Sniff the time format on a sample, then let the CSV reader parse that column itself
    # (much cheaper than string functions per row); a row it cannot parse is rejected with
    # its line number, like any other malformed row.
    con.execute(
        f"CREATE OR REPLACE TABLE log_sample AS SELECT {time_col} FROM {reader}) "
        f"LIMIT {SAMPLE_ROWS}",
        [*params, as_text],
    ).fetchall()
    first = fitting_strategy(con, "log_sample", time_col, tz)
    time_type, time_format, ts = typed_time(first, time_col, tz)
    used = ", ".join([*(_quoted(c) for c in columns.values()), _marks_sql(available, columns)])
    # A second read (of the UTF-8 copy) must not add its rejects to the first one's.
    con.execute("DROP TABLE IF EXISTS reject_errors").fetchall()
    con.execute("DROP TABLE IF EXISTS reject_scans").fetchall()
    con.execute(
        f"CREATE OR REPLACE TABLE log_raw AS SELECT {used} "
        f"FROM {reader}, store_rejects=true{time_format})",
        [*params, {**as_text, columns["time"]: time_type}],
    ).fetchall()
    (invalid,) = con.execute(
        "SELECT count(*) > 0 FROM reject_errors WHERE error_type = 'INVALID ENCODING'"
    ).fetchone() or (False,)
    return _CsvRead(
        columns,
        2 + skip + blank_lines(path, compression, skip + 1),  # after the header
        ts,
        "NULL" if time_type != "VARCHAR" else time_col,
        bool(invalid),
        replaced or [],
    )


def load(
    con: duckdb.DuckDBPyConnection, path: Path, overrides: Mapping[str, str], tz: str
) -> LogExport:
    """Create table `log`; rows whose time, agent or status cannot be read go to `malformed`."""
    import duckdb

    if not path.is_file():
        raise UsageError(f"--log {path} is not a file", "give the central-log export file")
    kind, gzipped = _sniff_kind(path)
    compression = "gzip" if gzipped else "none"
    encoding = "utf-8"
    replaced: list[tuple[str, str]] = []
    if kind == "csv":
        encoding = head_encoding(path, gzipped)
        read = None
        if encoding == "utf-8":
            read = _read_csv(con, path, compression, overrides, tz)
        if read is None or read.invalid_encoding:  # not UTF-8, in the head or past it
            encoding = "utf-16" if encoding == "utf-16" else "cp1252"
            try:
                with utf8_copy(path, gzipped, encoding) as copy:
                    read = _read_csv(con, copy, "none", overrides, tz, shown=path)
            except (OSError, EOFError) as exc:
                if is_disk_full(exc):
                    raise no_room(f"a UTF-8 copy of --log {path}") from None
                raise UsageError(
                    f"cannot make a UTF-8 copy of --log {path}: {exc or type(exc).__name__}",
                    "check the file is complete and the temporary directory "
                    f"({tempfile.gettempdir()}) has room for a copy, or convert it to UTF-8",
                ) from None
        columns, first_line, ts, time_text = read.columns, read.first_line, read.ts, read.time_text
        replaced = read.replaced
        col = read.col
    else:
        try:
            con.execute(
                "CREATE OR REPLACE TABLE log_raw AS SELECT * FROM read_csv(?, header=false, "
                "columns={'j': 'VARCHAR'}, delim=?, quote='', escape='', auto_detect=false, "
                # Not strict: a line holding the separator is cut short there (then not valid
                # JSON), not rejected once per separator, each reject a copy of the line.
                f"strict_mode=false, max_line_size={MAX_LINE_BYTES}, "
                f"store_rejects=true, ignore_errors=true, compression='{compression}')",
                [str(path), _JSONL_DELIM],
            ).fetchall()
            keys = con.execute(
                "SELECT DISTINCT unnest(json_keys(j)) FROM "
                "(SELECT j FROM log_raw WHERE json_valid(j) LIMIT 1000)"
            ).fetchall()
        except duckdb.Error as exc:
            raise _unreadable(path, exc) from None
        columns = detect_columns(sorted(k for (k,) in keys), overrides)
        first_line = 1

        def col(fld: str) -> str:
            if fld not in columns:
                return "NULL"
            path = sql_str("$." + _json_key(columns[fld]))
            return f"CASE WHEN json_valid(j) THEN json_extract_string(j, {path}) END"

        ts = time_expression(col("time"), tz, fitting_strategy(con, "log_raw", col("time"), tz))
        time_text = col("time")
    # Agents and numbers are normalised when keyed and statuses when explained, so only the
    # Call-ID (joined as is) is trimmed here.
    fields = {
        "n": "rowid",
        "valid": "json_valid(j)" if kind == "jsonl" else "true",
        "ts_us": ts,
        "time_text": time_text,
        "agent": f"nullif({col('agent')}, '')",
        "status": f"nullif({col('status')}, '')",
        "call_id": f"nullif(trim({col('call_id')}), '')",
        "number": f"nullif({col('number')}, '')",
        # A JSON line whole; a key may be spelt after sipdiag's header (X-Sipdiag-Run).
        "marks": (
            MARKS
            if kind == "csv"
            else f"CASE WHEN json_valid(j) AND ({marked('j')} OR contains(j, 'Sipdiag')) THEN j END"
        ),
    }
    # CSV: a view, as its columns are already typed; JSON Lines: parsed once, into a table.
    create = "VIEW" if kind == "csv" else "TABLE"
    select = ", ".join(f"{sql} AS {name}" for name, sql in fields.items())
    con.execute(f"CREATE OR REPLACE {create} log AS SELECT {select} FROM log_raw").fetchall()
    as_columns = {name: name for name in fields}
    rejected = con.execute(
        "SELECT line, list(DISTINCT error_type ORDER BY error_type), any_value(csv_line) "
        "FROM reject_errors GROUP BY line ORDER BY line"
    ).fetchall()
    rejected_lines = [int(r[0]) for r in rejected]
    malformed = [
        {"line": int(line), "reason": _reject_reason(kinds), "text": text}
        for line, kinds, text in rejected
    ]
    if replaced:  # lines the reader saw as a marker: what they were
        stand_ins = iter(replaced)
        for m in malformed:
            if m["text"] is not None and m["text"].strip("\r\n") in MARKERS:
                m["reason"], m["text"] = next(stand_ins, (m["reason"], m["text"]))
    # The row count and the distinct statuses (match explains each once) from one aggregate.
    by_status = con.execute("SELECT status, count(*) FROM log GROUP BY status").fetchall()
    bad = con.execute(
        f"""SELECT n, CASE WHEN NOT valid THEN 'not valid JSON'
                          WHEN ts_us IS NULL THEN 'unreadable time'
                          WHEN agent IS NULL AND number IS NULL THEN 'no agent'
                          ELSE 'no status' END, time_text
           FROM log WHERE NOT ({_readable(as_columns)}) ORDER BY n"""
    ).fetchall()
    line_of = line_numbers(first_line, rejected_lines)
    for n, why, text in bad:
        malformed.append({"line": line_of(int(n)), "reason": why, "text": text})
    malformed.sort(key=lambda m: m["line"])
    total = sum(int(c) for _, c in by_status) + len(rejected_lines)
    export = LogExport(kind, columns, encoding, total, malformed, rejected_lines, first_line)
    export.statuses = sorted(status for status, _ in by_status if status is not None)
    if kind == "csv":
        export.source, export.fields = "log_raw", fields
    else:
        export.fields = as_columns
    return export


# A row sipdiag's own test call left: the text of the export's other columns (those no field
# reads) when one holds "sipdiag" (the Subject and User-Agent sipdiag sends), or when a column
# named after sipdiag (its `X-Sipdiag-Run` header, logged) has a value; else NULL. One cheap test
# per cell while the export is read, the text kept only for those rows; match tests the columns
# it reads anyway (status, Call-ID, ...) on the failure rows alone.
MARKS = '"sipdiag:marks"'
MARKS_MAX_COLUMNS = 64  # the other columns searched, in the export's order: a bound on the cost


def marked(expr: str) -> str:
    """SQL: the VARCHAR `expr` may name sipdiag's own test call."""
    return f"contains({expr}, 'sipdiag')"


def _marks_sql(available: list[str], columns: Mapping[str, str]) -> str:
    """SQL for column MARKS of a CSV read (`available`: the export's columns, all VARCHAR but
    the time column)."""
    used = set(columns.values())
    other = [c for c in available if c not in used][:MARKS_MAX_COLUMNS]
    if not other:
        return f"NULL::VARCHAR AS {MARKS}"
    found = " OR ".join(
        f"nullif({_quoted(c)}, '') IS NOT NULL" if "sipdiag" in c.lower() else marked(_quoted(c))
        for c in other
    )
    text = ", ".join(_quoted(c) for c in other)
    return f"CASE WHEN {found} THEN concat_ws(' | ', {text}) END AS {MARKS}"


def _reject_reason(kinds: list[str]) -> str:
    """The CSV reader's error types for a line; a failed cast can only be the time column."""
    structural = [k for k in kinds if k != "CAST"]
    if "LINE SIZE OVER MAXIMUM" in structural:
        return "line too long"
    return structural[0].lower() if structural else "unreadable time"


def _json_key(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def rows_before_rejected(first_line: int, rejected_lines: list[int]) -> list[int]:
    """For the i-th rejected line (sorted), how many accepted rows come before it:
    `line - first_line - i`. Non-decreasing, so an accepted row n has as many rejected lines
    before it as there are entries <= n."""
    return [line - first_line - i for i, line in enumerate(rejected_lines)]


def line_numbers(first_line: int, rejected_lines: list[int]) -> Callable[[int], int]:
    """n -> the file line of the n-th accepted row (0-based)."""
    before = rows_before_rejected(first_line, rejected_lines)
    return lambda n: first_line + n + bisect.bisect_right(before, n)
