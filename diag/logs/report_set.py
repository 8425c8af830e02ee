"""Many saved reports at once, for `match` and `fleet`: a DuckDB table `reports`.

Parsing dominates: 10,000 reports are ~100 MB of JSON, most of it the `checks` array neither
command uses. DuckDB's `read_json` over the whole files took 9-23 s here, so Python reads each
file, cuts the checks out, and checks the rest is a sipdiag report (orjson); DuckDB then reads
the fields used from all of them in one parallel bulk read.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.errors import UsageError
from diag.lifecycle import signals_deferred

if TYPE_CHECKING:
    import duckdb


@dataclass
class ReportSet:
    """Table `reports` in `con`: one row per readable sipdiag report; `skipped`: the rest."""

    con: duckdb.DuckDBPyConnection
    count: int
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{path, reason}]


def connect() -> duckdb.DuckDBPyConnection:
    try:
        with signals_deferred():  # a Ctrl-C inside DuckDB's native import aborts the process
            import duckdb
    except ImportError:
        raise UsageError(
            "this command needs the duckdb package", "pip install 'duckdb>=1.3'"
        ) from None
    # Bounded work: DuckDB's default is 80% of RAM and a spill directory in the working
    # directory; here it keeps within MEMORY_LIMIT and spills past it into a directory of its
    # own under the temporary directory (see _spill_directory).
    con = duckdb.connect(
        config={
            "memory_limit": MEMORY_LIMIT,
            "threads": max(1, min(os.cpu_count() or 1, MAX_THREADS)),
            "temp_directory": str(_spill_directory()),
        }
    )
    # GLOBAL: for every connection to this in-memory database, cursors included.
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    return con


MEMORY_LIMIT = "512MiB"  # DuckDB's buffers; the process adds Python and the parsed reports
MAX_THREADS = 4  # DuckDB's CSV reader holds buffers per thread within MEMORY_LIMIT
_SPILL_PREFIX = "sipdiag-duckdb-"


def _spill_directory() -> Path:
    """A path, under the temporary directory and named after this process, for DuckDB to
    create when it first spills and remove when it closes. `match` leaves with os._exit, so
    DuckDB never closes: the directories of processes that are gone are removed here first."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(_SPILL_PREFIX + "*"):
        pid = old.name[len(_SPILL_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return base / f"{_SPILL_PREFIX}{os.getpid()}-{next(_spills)}"


_spills = itertools.count()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        return True
    return True


def collect(paths: Sequence[Path]) -> tuple[list[str], list[dict[str, str]]]:
    """Files given, and every *.json under directories given (recursively), sorted."""
    files: list[str] = []
    skipped: list[dict[str, str]] = []
    for path in paths:
        if path.is_dir():
            _walk(str(path), files, skipped)
        elif path.exists() or path.is_symlink():
            if os.path.isfile(path) and os.access(path, os.R_OK):
                files.append(str(path))
            else:
                skipped.append({"path": str(path), "reason": "unreadable"})
        else:
            raise UsageError(f"{path} does not exist", "give report files or directories of them")
    # Overlapping arguments name a file twice: once in each list is enough.
    files = sorted(set(files))
    skipped = [{"path": p, "reason": "unreadable"} for p in sorted({s["path"] for s in skipped})]
    return files, skipped


def entries_below(top: str) -> Iterator[os.DirEntry[str]]:
    """Every entry below ``top`` that is not a directory. Like os.walk (symlinked directories
    listed, not entered), but a directory entry already says whether it is a regular file: no
    stat per report (10,000 of them cost ~0.2 s). Shared with the timelines' walk."""
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if not is_dir:
            yield entry
        elif not entry.is_symlink():
            yield from entries_below(entry.path)


def _walk(top: str, files: list[str], skipped: list[dict[str, str]]) -> None:
    for entry in entries_below(top):
        if entry.name.endswith(".json"):
            try:
                regular = entry.is_file()
            except OSError:
                regular = False
            # Permissions are not checked here: an unreadable file fails to open, and says so.
            if regular:
                files.append(entry.path)
            else:
                skipped.append({"path": entry.path, "reason": "unreadable"})


def _dumps(text: str) -> bytes:
    """`text` as a JSON string; a file name that is not valid UTF-8 (surrogate escapes) shows
    U+FFFD where its undecodable bytes are."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; stdlib is the fallback
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return json.dumps(text, ensure_ascii=False).encode()
    try:
        return orjson.dumps(text)
    except TypeError:
        return orjson.dumps(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def json_dumps(value: Any) -> bytes:
    """`value` (parsed JSON) as compact JSON again."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; stdlib is the fallback
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return orjson.dumps(value)


def json_loads() -> Callable[[bytes], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; stdlib is the fallback
        return json.loads


def _checked(index: int, path: str, loads: Callable[[bytes], Any]) -> bytes | str:
    """The report (checks dropped) on one line, wrapped with its index and path for `to_table`;
    or why the file is not a sipdiag report. The shape is checked here, DuckDB reads the fields
    (reading any field of another type as NULL)."""
    try:
        body = _without_checks(read_bytes(path))
        doc = loads(body)  # valid JSON, so the wrapped line below is valid JSON too
    except OSError:
        return "unreadable"
    except ValueError:
        return "not valid JSON"
    if not (
        type(doc) is dict
        and doc.get("schema_version") == 1
        and type(doc.get("tool")) is dict
        and doc["tool"].get("name") == "sipdiag"
        and doc.get("run_id") is not None
        and type(doc.get("started_at")) is str
        and type(doc.get("agent")) is dict
        and type(doc.get("correlation")) is dict
        and type(doc["correlation"].get("clock_offset_ms")) in (int, float, type(None))
        and type(doc.get("findings", [])) is list
        and all(type(f) is dict and type(f.get("cause")) is str for f in doc.get("findings", []))
    ):
        return "not a sipdiag report"
    bad = _insane(doc)
    if bad:
        return f"invalid sipdiag report ({bad})"
    # A raw newline can only be whitespace in valid JSON: the report becomes one NDJSON line.
    head = b'{"i":%d,"path":' % index + _dumps(path)
    return head + b',"doc":' + body.replace(b"\n", b" ") + b"}\n"


MAX_CLOCK_OFFSET_MS = 10 * 365 * 86_400_000  # ten years: anything more is no clock at all


def _insane(doc: dict[str, Any]) -> str | None:
    """What makes a report that has the right shape unusable anyway (one such file must not
    cost the whole directory its match or fleet), or None."""
    offset = doc["correlation"].get("clock_offset_ms")
    if offset is not None and not (math.isfinite(offset) and abs(offset) <= MAX_CLOCK_OFFSET_MS):
        return "correlation.clock_offset_ms out of range"
    lists = {
        f"correlation.{k}": doc["correlation"].get(k)
        for k in ("call_ids", "local_addresses", "public_addresses")
    }
    lists["agent.numbers"] = doc["agent"].get("numbers")
    for name, value in lists.items():
        if value is not None and not (type(value) is list and all(type(x) is str for x in value)):
            return f"{name} is not a list of strings"
    return None


def read_bytes(path: str) -> bytes:
    """The whole file, with plain system calls: one read of the size fstat gives (open() builds
    a buffered reader per report, and reading in fixed chunks allocates a chunk per call)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more: a file that grew meanwhile shows it
        if len(data) <= size:
            return data
        chunks = [data]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _without_checks(raw: bytes) -> bytes:
    """Drop the `checks` array (most of a report, unused here) before parsing, when the file is
    laid out as sipdiag writes it: top-level keys indented by exactly two spaces, so these
    markers cannot occur elsewhere (JSON strings never hold a raw newline). Else: unchanged."""
    # `findings` comes near the end: searching back from there skips reading the checks twice.
    end = raw.rfind(b'\n  "findings": [')
    start = raw.find(b'\n  "checks": [', 0, max(end, 0))
    return raw[:start] + raw[end:] if 0 <= start < end else raw


_FINDING_KEYS = ("cause", "family", "severity", "title", "explanation", "action")


@dataclass
class Parsed:
    """Reports that look like sipdiag's, one wrapped NDJSON line each (`_checked`), their
    paths, and the files skipped so far."""

    ndjson: bytes
    paths: list[str]
    skipped: list[dict[str, str]]


def parse(paths: Sequence[Path]) -> Parsed:
    """Read and check every report (Python: 10k files parse faster with orjson than in SQL)."""
    return parse_files(*collect(paths))


def parse_files(
    files: Sequence[str], skipped: list[dict[str, str]], stop: threading.Event | None = None
) -> Parsed:
    """`parse` of what `collect` found; `stop` set: give up (the caller no longer needs it)."""
    skipped = list(skipped)
    loads = json_loads()
    lines: list[bytes] = []
    paths: list[str] = []
    # Many short-lived containers and no cycles: the cyclic GC would only add ~40 %.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for f in files:
            if stop is not None and stop.is_set():
                break
            got = _checked(len(paths), f, loads)
            if isinstance(got, str):
                skipped.append({"path": f, "reason": got})
            else:
                lines.append(got)
                paths.append(f)
    finally:
        if was_enabled:
            gc.enable()
    return Parsed(b"".join(lines), paths, skipped)


# What match and fleet read of a report, as DuckDB reads it from the wrapped lines; a field of
# another type reads as NULL.
_FINDING = "STRUCT(" + ", ".join(f"{k} VARCHAR" for k in _FINDING_KEYS) + ")"
_WRAPPED = {
    "i": "BIGINT",
    "path": "VARCHAR",
    "doc": "STRUCT(run_id VARCHAR, started_at VARCHAR, host STRUCT(hostname VARCHAR, os VARCHAR), "
    "agent STRUCT(id VARCHAR, sip_uri VARCHAR, numbers VARCHAR[]), "
    "correlation STRUCT(call_ids VARCHAR[], local_addresses VARCHAR[], "
    "public_addresses VARCHAR[], clock_offset_ms DOUBLE), "
    f"findings {_FINDING}[], verdict VARCHAR)",
}
# clock_offset_ms is the agent's clock minus the registrar's: true time = clock - offset.
_REPORTS = """CREATE OR REPLACE TABLE reports AS
SELECT i, path, run_id, started_us, started_us - clock_offset_ms * 1000 AS true_us, clock_offset_ms,
       agent_id, sip_uri, numbers, hostname, os, call_ids, local_addresses, public_addresses,
       findings, verdict
FROM (
  SELECT i, path, doc.run_id AS run_id,
         epoch_us(try_cast(doc.started_at AS TIMESTAMPTZ)) AS started_us,
         CAST(trunc(coalesce(doc.correlation.clock_offset_ms, 0)) AS BIGINT) AS clock_offset_ms,
         doc.agent.id AS agent_id, doc.agent.sip_uri AS sip_uri,
         coalesce(doc.agent.numbers, []) AS numbers,
         coalesce(doc.host.hostname, '') AS hostname, doc.host.os AS os,
         coalesce(doc.correlation.call_ids, []) AS call_ids,
         coalesce(doc.correlation.local_addresses, []) AS local_addresses,
         coalesce(doc.correlation.public_addresses, []) AS public_addresses,
         coalesce(doc.findings, []) AS findings, doc.verdict AS verdict
  FROM read_json(?, format='newline_delimited', columns=?, ignore_errors=true))
WHERE started_us IS NOT NULL"""


def to_table(con: duckdb.DuckDBPyConnection, parsed: Parsed) -> ReportSet:
    """Table `reports`, loaded from newline-delimited JSON: one bulk read, no row inserts."""
    with tempfile.TemporaryDirectory(prefix="sipdiag-") as tmp:
        ndjson = Path(tmp) / "reports.ndjson"
        ndjson.write_bytes(parsed.ndjson)
        con.execute(_REPORTS, [str(ndjson), _WRAPPED]).fetchall()
    kept = {i for (i,) in con.execute("SELECT i FROM reports").fetchall()}
    skipped = parsed.skipped + [
        {"path": p, "reason": "not a sipdiag report"}
        for i, p in enumerate(parsed.paths)
        if i not in kept
    ]
    skipped.sort(key=lambda s: s["path"])
    return ReportSet(con, len(kept), skipped)


class ParseStopped(Exception):
    """`BackgroundParse.result` after `close`: nobody needs the reports any more."""


class BackgroundParse:
    """`parse_files` in a thread, alongside the caller's own work (DuckDB's import, the export's
    scan). A forked child, with a GIL of its own, won by less than the run-to-run noise on
    bench/bench_match.py (1M rows, 10,000 reports), so the thread it is."""

    def __init__(self, files: Sequence[str], skipped: list[dict[str, str]]) -> None:
        self._args = (list(files), list(skipped))
        self._stop = threading.Event()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._parsed: concurrent.futures.Future[Parsed] | None = None

    def start(self) -> None:
        """Begin parsing; `with BackgroundParse(...)` calls it. Ctrl-C and SIGTERM wait until
        the thread exists (or does not), and from then on close() stops it: started by
        __enter__, not __init__, so that no signal can fall between the work starting and the
        `with` statement taking charge of it."""
        try:
            with signals_deferred():
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
                self._parsed = self._pool.submit(parse_files, *self._args, self._stop)
        except BaseException:
            self.close()
            raise

    def result(self) -> Parsed:
        """The parsed reports (waiting for them); ParseStopped once `close` has begun."""
        if self._stop.is_set():
            raise ParseStopped
        assert self._parsed is not None
        parsed = self._parsed.result()
        if self._stop.is_set():  # stopped part way: not all of them
            raise ParseStopped
        return parsed

    def close(self) -> None:
        """Stop the work if still running (a usage error, Ctrl-C); a Ctrl-C meanwhile waits
        until the thread has stopped."""
        self._stop.set()
        with signals_deferred():
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundParse:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> ReportSet:
    return to_table(con, parse(paths))
