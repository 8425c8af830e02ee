"""A platform's central-log export (CSV of any delimiter, JSON Lines, either gzipped) as a DuckDB
table `log(line, ts_us, agent, status, call_id, number)`, with malformed rows counted by line.

Line numbers count physical lines, title and blank lines above the data included; they assume
one record per line after that (no blank lines between rows, no newlines inside quoted fields).
"""

from __future__ import annotations

import bisect
import codecs
import gzip
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.errors import UsageError
from diag.lifecycle import is_interrupt, signals_deferred

if TYPE_CHECKING:
    import duckdb

FIELDS = ("time", "agent", "status", "call_id", "number")
REQUIRED = ("time", "agent", "status")

# Header names seen in platform exports, compared lower-case with only letters and digits kept.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "time": (
        "datetime", "timestamp", "time", "eventtime", "offertime", "offeredat", "starttime",
        "calltime", "createdat", "date", "ts", "when",
    ),
    "agent": (
        "agent", "agentid", "agentname", "agentlogin", "agentuser", "user", "userid", "username",
        "login", "extension", "agentextension", "sipuser", "sipuri", "agentsipuri", "endpoint",
    ),
    "status": (
        "status", "result", "outcome", "disposition", "offerstatus", "callstatus", "offerresult",
        "statusreason", "reason", "sipstatus", "state",
    ),
    "call_id": ("callid", "sipcallid", "callidheader"),
    "number": (
        "number", "agentnumber", "phonenumber", "phone", "diallednumber", "dialednumber",
        "destinationnumber", "destination", "callednumber", "to", "ddi", "dnis",
    ),
}  # fmt: skip

_CONTAINS = {
    "time": ("timestamp", "datetime"),
    "agent": ("agent",),
    "status": ("status", "result", "outcome"),
    "call_id": ("callid",),
    "number": ("number",),
}

# Naive formats tried after ISO 8601; day-first, as UK/EU platform exports write dates.
NAIVE_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S.%f",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
)

_JSONL_DELIM = "\x1f"  # never raw inside valid JSON (control characters must be escaped)
SAMPLE_ROWS = 1000  # rows that name the columns' dialect and show the time format


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


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def detect_columns(available: list[str], overrides: Mapping[str, str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for fld, name in overrides.items():
        if name not in available:
            raise UsageError(
                f"--column {fld}={name}: the export has no column '{name}'",
                "use one of " + ", ".join(f"'{c}'" for c in available),
            )
        chosen[fld] = name
    by_norm: dict[str, str] = {}
    for col in available:
        by_norm.setdefault(_norm(col), col)
    for fld in FIELDS:
        if fld in chosen:
            continue
        for candidate in CANDIDATES[fld]:
            found = by_norm.get(candidate)
            if found is not None and found not in chosen.values():
                chosen[fld] = found
                break
    for fld, words in _CONTAINS.items():  # then a header containing the word: "Offer status"
        for col in available:
            if fld not in chosen and col not in chosen.values():
                if any(w in _norm(col) for w in words):
                    chosen[fld] = col
    missing = [f for f in REQUIRED if f not in chosen]
    if missing:
        raise UsageError(
            f"cannot tell which column holds the {' and '.join(missing)} "
            f"(columns: {', '.join(available)})",
            " ".join(f'--column {m}="COLUMN NAME"' for m in missing),
        )
    return chosen


def parse_column_options(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        fld, sep, name = value.partition("=")
        fld = fld.strip().lower().replace("-", "_")
        fld = "call_id" if fld == "callid" else fld
        if not sep or not name or fld not in FIELDS:
            raise UsageError(
                f"invalid --column '{value}'",
                f'use FIELD=NAME with FIELD one of {", ".join(FIELDS)}, e.g. time="Date/Time"',
            )
        out[fld] = name
    return out


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


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _naive(ts_sql: str, tz: str) -> str:
    if tz.upper() in ("UTC", "ETC/UTC", "Z"):
        return f"epoch_us({ts_sql})"
    return f"epoch_us(timezone({_sql_str(tz)}, {ts_sql}))"


def _strategies(t: str, tz: str) -> list[str]:
    """SQL parsing the VARCHAR `t` into UTC epoch µs, one way each (NULL when it does not fit)."""
    return [
        f"""CASE WHEN regexp_full_match({t}, '-?[0-9]+(\\.[0-9]+)?') THEN
              CASE WHEN abs(try_cast({t} AS DOUBLE)) >= 1e11   -- epoch milliseconds
                   THEN try_cast(try_cast({t} AS DOUBLE) * 1000 AS BIGINT)
                   ELSE try_cast(try_cast({t} AS DOUBLE) * 1000000 AS BIGINT) END END""",
        f"""CASE WHEN regexp_matches({t}, '(Z|[+-][0-9][0-9]:?[0-9][0-9])$')
              THEN epoch_us(try_cast({t} AS TIMESTAMPTZ)) END""",
        _naive(f"try_cast({t} AS TIMESTAMP)", tz),
        *(_naive(f"try_strptime({t}, {_sql_str(f)})", tz) for f in NAIVE_FORMATS),
    ]


def time_expression(column: str, tz: str, first: int | None = None) -> str:
    """SQL turning a VARCHAR time into UTC epoch µs (NULL when unreadable); `first`: the
    strategy the sample fits, tried before the others (COALESCE only evaluates what it needs)."""
    ways = _strategies(f"trim({column})", tz)
    if first is not None:  # the sample's format, on the untrimmed value: the common case, fast
        ways.insert(0, _strategies(column, tz)[first])
    return "coalesce(" + ", ".join(ways) + ")"


def _fitting_strategy(
    con: duckdb.DuckDBPyConnection, table: str, column: str, tz: str
) -> int | None:
    """Exports use one time format throughout: find it on a sample, so each row tries it first."""
    ways = _strategies(f"trim({column})", tz)
    counts = con.execute(
        "SELECT count(*), "
        + ", ".join(f"count({w})" for w in ways)
        + f" FROM (SELECT * FROM {table} WHERE {column} IS NOT NULL LIMIT {SAMPLE_ROWS})"
    ).fetchall()[0]
    total, fits = counts[0], counts[1:]
    best = max(range(len(fits)), key=lambda i: fits[i])
    return best if total and fits[best] else None


def _sniff_csv(
    con: duckdb.DuckDBPyConnection, path: Path, compression: str, skip: int | None = None
) -> tuple[list[str], list[str], int]:
    """([delim, quote, escape, new_line, comment], column names, lines before the header),
    from DuckDB's sniffer on a sample, as the reader would detect them; `skip` lines first,
    if given. Malformed rows in the sample are let pass, which also keeps the sniffer from
    finding a preamble ("Exported by ...") above the header by itself: see _skip_preamble."""
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


def _skip_preamble(
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
            dialect, available, _ = _sniff_csv(con, path, compression, skip)
        except duckdb.Error as exc:
            if is_interrupt(exc):
                raise
            continue
        if _names_fields(available, overrides):
            # The reader passes over blank lines; the line numbers must count them.
            return dialect, available, skip + _blank_lines(path, compression, skip)
    return None


def _blank_lines(path: Path, compression: str, after: int) -> int:
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
    return (_head(path, compression == "gzip", 1 << 16) or b"").splitlines()


def _head(path: Path, gzipped: bool, size: int) -> bytes | None:
    """The first `size` bytes of the file (decompressed), or None if they cannot be read."""
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            return f.read(size)
    except (OSError, EOFError):
        return None


def _names_fields(available: list[str], overrides: Mapping[str, str]) -> bool:
    """Whether these columns yield the required fields (detect_columns would not fail)."""
    try:
        detect_columns(available, overrides)
    except UsageError:
        return False
    return True


# A CSV export that is not UTF-8 is read as UTF-8 where it is, and as Windows-1252 (what Excel
# and most Windows tools write) where it is not; one with a UTF-16 byte order mark (Excel's
# "Unicode Text") as UTF-16. DuckDB's reader has neither built in (its Latin-1 refuses
# 0x80-0x9F, where Windows-1252 keeps its dashes, quotes and euro sign), so such a file is read
# from a UTF-8 copy, made in chunks and deleted as soon as DuckDB has read it.
HEAD_BYTES = 1 << 20  # the part of the file whose bytes decide the encoding up front
_CHUNK = 1 << 23


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Decoding error handler: the bytes that are not UTF-8, read as Windows-1252."""
    assert isinstance(err, UnicodeDecodeError)
    return bytes(err.object[err.start : err.end]).decode("cp1252", "replace"), err.end


codecs.register_error("sipdiag-cp1252", _cp1252_fallback)


@contextmanager
def _utf8_copy(path: Path, gzipped: bool, encoding: str) -> Iterator[Path]:
    """A temporary UTF-8 copy of the file, line for line the same (line numbers hold); bytes
    that mean nothing in either encoding become U+FFFD."""
    fd, name = tempfile.mkstemp(prefix="sipdiag-export-", suffix=".csv")
    try:
        decoder = (
            codecs.getincrementaldecoder("utf-16")("replace")
            if encoding == "utf-16"
            else codecs.getincrementaldecoder("utf-8")("sipdiag-cp1252")
        )
        with os.fdopen(fd, "wb") as out, gzip.open(path) if gzipped else path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                out.write(decoder.decode(chunk).encode("utf-8"))
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
        yield Path(name)
    finally:
        with signals_deferred():  # a Ctrl-C now must not keep the copy from going
            os.unlink(name)


def _head_encoding(path: Path, gzipped: bool) -> str:
    """ "utf-16" after a UTF-16 byte order mark; else "utf-8" when the file's first MiB
    decodes as UTF-8, "cp1252" when it does not."""
    head = _head(path, gzipped, HEAD_BYTES)
    if head is None:
        return "utf-8"  # DuckDB's reader then says what is wrong with the file
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.isascii():
        return "utf-8"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


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

    def col(self, fld: str) -> str:
        return _quoted(self.columns[fld]) if fld in self.columns else "NULL"


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    compression: str,
    overrides: Mapping[str, str],
    tz: str,
    shown: Path | None = None,
) -> _CsvRead:
    """`shown`: the path errors name (the export, when `path` is its UTF-8 copy)."""
    import duckdb

    try:
        sniffed = _sniff_csv(con, path, compression)
        if not _names_fields(sniffed[1], overrides):
            sniffed = _skip_preamble(con, path, compression, overrides) or sniffed
    except duckdb.Error as exc:
        raise _unreadable(shown or path, exc, path if shown else None) from None
    dialect, available, skip = sniffed
    columns = detect_columns(available, overrides)
    # The read is told the dialect: DuckDB does not sniff the file a second time.
    reader = (
        "read_csv(?, auto_detect=false, header=true, delim=?, quote=?, escape=?, new_line=?, "
        "comment=?, skip=?, ignore_errors=true, compression=?, columns=?"
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
    first = _fitting_strategy(con, "log_sample", time_col, tz)
    time_type, time_format, ts = _typed_time(first, time_col, tz)
    used = ", ".join(_quoted(c) for c in columns.values())
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
        2 + skip + _blank_lines(path, compression, skip + 1),  # after the header
        ts,
        "NULL" if time_type != "VARCHAR" else time_col,
        bool(invalid),
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
    if kind == "csv":
        encoding = _head_encoding(path, gzipped)
        read = None
        if encoding == "utf-8":
            read = _read_csv(con, path, compression, overrides, tz)
        if read is None or read.invalid_encoding:  # not UTF-8, in the head or past it
            encoding = "utf-16" if encoding == "utf-16" else "cp1252"
            try:
                with _utf8_copy(path, gzipped, encoding) as copy:
                    read = _read_csv(con, copy, "none", overrides, tz, shown=path)
            except (OSError, EOFError) as exc:
                raise UsageError(
                    f"cannot make a UTF-8 copy of --log {path}: {exc or type(exc).__name__}",
                    "check the file is complete and the temporary directory "
                    f"({tempfile.gettempdir()}) has room for a copy, or convert it to UTF-8",
                ) from None
        columns, first_line, ts, time_text = read.columns, read.first_line, read.ts, read.time_text
        col = read.col
    else:
        try:
            con.execute(
                "CREATE OR REPLACE TABLE log_raw AS SELECT * FROM read_csv(?, header=false, "
                "columns={'j': 'VARCHAR'}, delim=?, quote='', escape='', auto_detect=false, "
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
            path = _sql_str("$." + _json_key(columns[fld]))
            return f"CASE WHEN json_valid(j) THEN json_extract_string(j, {path}) END"

        ts = time_expression(col("time"), tz, _fitting_strategy(con, "log_raw", col("time"), tz))
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


def _reject_reason(kinds: list[str]) -> str:
    """The CSV reader's error types for a line; a failed cast can only be the time column."""
    structural = [k for k in kinds if k != "CAST"]
    return structural[0].lower() if structural else "unreadable time"


def _typed_time(strategy: int | None, column: str, tz: str) -> tuple[str, str, str]:
    """(the CSV reader's type for the time column, its extra options, SQL of its epoch µs) for
    a sniffed strategy; VARCHAR and the general expression when no single format fits."""
    if strategy is None:
        return "VARCHAR", "", time_expression(column, tz)
    if strategy == 0:
        return (
            "DOUBLE",
            "",
            # TRY_CAST: an epoch beyond BIGINT microseconds is an unreadable time, not an error.
            f"TRY_CAST(CASE WHEN abs({column}) >= 1e11 THEN {column} * 1000 "
            f"ELSE {column} * 1000000 END AS BIGINT)",
        )
    if strategy == 1:
        return "TIMESTAMPTZ", "", f"epoch_us({column})"
    fmt = "" if strategy == 2 else f", timestampformat={_sql_str(NAIVE_FORMATS[strategy - 3])}"
    return "TIMESTAMP", fmt, _naive(column, tz)


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
