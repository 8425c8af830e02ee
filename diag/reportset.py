"""Many saved reports at once, for `match` and `fleet`: a DuckDB table `reports`.

Parsing dominates: 10,000 reports are ~100 MB of JSON. orjson parses them faster than DuckDB's
`read_json`/`from_json` did here (measured: 0.8 s vs 9-23 s), so Python extracts the few fields
used and DuckDB loads those in one bulk read.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.errors import UsageError

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
        import duckdb
    except ImportError:
        raise UsageError(
            "this command needs the duckdb package", "pip install 'duckdb>=1.1'"
        ) from None
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


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


def _walk(top: str, files: list[str], skipped: list[dict[str, str]]) -> None:
    """Like os.walk (symlinked directories listed, not entered), but a directory entry already
    says whether it is a regular file: no stat per report (10,000 of them cost ~0.2 s)."""
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.is_symlink():
                _walk(entry.path, files, skipped)
        elif entry.name.endswith(".json"):
            try:
                regular = entry.is_file()
            except OSError:
                regular = False
            # Permissions are not checked here: an unreadable file fails to open, and says so.
            if regular:
                files.append(entry.path)
            else:
                skipped.append({"path": entry.path, "reason": "unreadable"})


def _json_loads() -> Callable[[bytes], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; stdlib is the fallback
        return json.loads


def _extract(path: str, loads: Callable[[bytes], Any]) -> dict[str, Any] | str:
    """The fields match and fleet use, or why the file is not a sipdiag report."""
    try:
        doc = loads(_without_checks(_read(path)))
    except OSError:
        return "unreadable"
    except ValueError:
        return "not valid JSON"
    try:
        if doc["schema_version"] != 1 or doc["tool"]["name"] != "sipdiag":
            return "not a sipdiag report"
        started = dt.datetime.fromisoformat(doc["started_at"].replace("Z", "+00:00"))
        agent, corr, host = doc["agent"], doc["correlation"], doc.get("host") or {}
        offset = corr.get("clock_offset_ms") or 0
        started_us = round(started.timestamp() * 1_000_000)
        return {
            "path": path,
            "run_id": str(doc["run_id"]),
            "started_us": started_us,
            # clock_offset_ms is the agent's clock minus the registrar's: true time = clock - it
            "true_us": started_us - int(offset) * 1000,
            "clock_offset_ms": int(offset),
            "agent_id": agent.get("id"),
            "sip_uri": agent.get("sip_uri"),
            "numbers": list(agent.get("numbers") or []),
            "hostname": host.get("hostname") or "",
            "os": host.get("os"),
            "call_ids": list(corr.get("call_ids") or []),
            "local_addresses": list(corr.get("local_addresses") or []),
            "public_addresses": list(corr.get("public_addresses") or []),
            "findings": [{k: f.get(k) for k in _FINDING_KEYS} for f in doc.get("findings") or []],
            "verdict": doc.get("verdict"),
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return "not a sipdiag report"


def _read(path: str) -> bytes:
    """The whole file, with plain system calls (open() builds a buffered reader per report)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
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
_COLUMNS = {
    "path": "VARCHAR",
    "run_id": "VARCHAR",
    "started_us": "BIGINT",
    "true_us": "BIGINT",
    "clock_offset_ms": "BIGINT",
    "agent_id": "VARCHAR",
    "sip_uri": "VARCHAR",
    "numbers": "VARCHAR[]",
    "hostname": "VARCHAR",
    "os": "VARCHAR",
    "call_ids": "VARCHAR[]",
    "local_addresses": "VARCHAR[]",
    "public_addresses": "VARCHAR[]",
    "findings": "STRUCT(" + ", ".join(f"{k} VARCHAR" for k in _FINDING_KEYS) + ")[]",
    "verdict": "VARCHAR",
}


@dataclass
class Parsed:
    """The readable reports' fields as newline-delimited JSON (serialised while parsing, so
    that work stays in `match`'s parsing thread), how many there are, and the rest."""

    ndjson: bytes
    count: int
    skipped: list[dict[str, str]]


def parse(paths: Sequence[Path]) -> Parsed:
    """Read and check every report (Python: 10k files parse faster with orjson than in SQL)."""
    return parse_files(*collect(paths))


def parse_files(files: Sequence[str], skipped: list[dict[str, str]]) -> Parsed:
    """`parse` of what `collect` found."""
    skipped = list(skipped)
    loads, dumps = _json_loads(), _json_line()
    lines: list[bytes] = []
    # Millions of short-lived containers and no cycles: the cyclic GC would only add ~40 %.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for f in files:
            got = _extract(f, loads)
            if isinstance(got, str):
                skipped.append({"path": f, "reason": got})
            else:
                lines.append(dumps(got))
    finally:
        if was_enabled:
            gc.enable()
    skipped.sort(key=lambda s: s["path"])
    return Parsed(b"".join(lines), len(lines), skipped)


def to_table(con: duckdb.DuckDBPyConnection, parsed: Parsed) -> ReportSet:
    """Table `reports`, loaded from newline-delimited JSON: one bulk read, no row inserts."""
    with tempfile.TemporaryDirectory(prefix="sipdiag-") as tmp:
        ndjson = Path(tmp) / "reports.ndjson"
        ndjson.write_bytes(parsed.ndjson)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE reports AS SELECT * FROM read_json(?, "
            "format='newline_delimited', columns=?)",
            [str(ndjson), _COLUMNS],
        ).fetchall()
    return ReportSet(con, parsed.count, parsed.skipped)


def _json_line() -> Callable[[dict[str, Any]], bytes]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; stdlib is the fallback
        return lambda record: (json.dumps(record) + "\n").encode()
    return lambda record: orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def load(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> ReportSet:
    return to_table(con, parse(paths))
