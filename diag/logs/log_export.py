"""A platform's central-log export (CSV of any delimiter, JSON Lines, either gzipped) as a DuckDB
table `log(line, ts_us, agent, status, call_id, number)`, with malformed rows counted by line.

Line numbers count physical lines, title and blank lines above the data included; they assume
one record per line after that (no blank lines between rows, no newlines inside quoted fields).
"""

from __future__ import annotations

import bisect
import codecs
import csv
import errno
import gzip
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.errors import SipdiagError, UsageError
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


# Bounds on the work one line can cost. DuckDB's CSV reader stores a rejected row with its whole
# text once per column past the header's: a line of 200,000 short fields would cost 200,000
# copies of itself (quadratic time and memory). A cheap scan first bounds what the reader's
# rejects could cost; past REJECT_BUDGET_BYTES, or with a line longer than MAX_LINE_BYTES, the
# export is read from a copy in which each such line (more fields than the header, or too long)
# is replaced by MARKER, which the reader rejects once, and which is listed as the line it was.
MAX_LINE_BYTES = 1 << 20
REJECT_BUDGET_BYTES = 64 << 20
PREVIEW_CHARS = 200  # of a replaced line, listed as its text
_MARKERS = ("sipdiagrejectedline", "0000000000")
_NO_NULL = "\x1e\x1d\x1c"  # an empty field is '' (not NULL) in the guard's scan


def _marker(dialect: list[str]) -> str:
    """A line the reader rejects as one short row: none of the dialect's characters in it."""
    return next(m for m in _MARKERS if not any(c and c in m for c in dialect))


def _over_budget(
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
def _guarded_copy(
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

            while chunk := f.read(_CHUNK):
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
        sniffed = _sniff_csv(con, path, compression)
        if not _names_fields(sniffed[1], overrides):
            sniffed = _skip_preamble(con, path, compression, overrides) or sniffed
    except duckdb.Error as exc:
        raise _unreadable(shown or path, exc, path if shown else None) from None
    dialect, available, skip = sniffed
    columns = detect_columns(available, overrides)
    if replaced is None and _over_budget(con, path, compression, dialect, len(available)):
        try:
            with _guarded_copy(path, compression == "gzip", dialect, len(available)) as guarded:
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
    if replaced:  # lines the reader saw as a marker: what they were
        stand_ins = iter(replaced)
        for m in malformed:
            if m["text"] is not None and m["text"].strip("\r\n") in _MARKERS:
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


def _reject_reason(kinds: list[str]) -> str:
    """The CSV reader's error types for a line; a failed cast can only be the time column."""
    structural = [k for k in kinds if k != "CAST"]
    if "LINE SIZE OVER MAXIMUM" in structural:
        return "line too long"
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
