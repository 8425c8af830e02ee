"""Timelines of `sipdiag watch` (diag/timeline.py) among the paths given to `match` and `fleet`,
loaded into DuckDB tables in bulk reads.

A timeline file is a `*.jsonl` (or a rotated `*.jsonl.N`) whose first line is a version 1
timeline line; an explicitly named file is one whatever its name, and brings its rotated siblings.
Each file's first line is read here (the start line names the agent); DuckDB reads the rest with
an explicit schema, up to CHUNK_BYTES of files at a time, except the files whose Parquet copy is
in the cache (timeline_cache), which are read from it: a line that is not valid JSON (a kill
mid-write, garbage) is dropped, as `read_lines` drops it.

Tables:
- `watches(w, watch_id, agent_id, sip_uri, numbers, hostname, interval_s, offset_ms, path)`: one
  per watch whose start line was found; `offset_ms` its last measured clock offset;
- `samples(w, true_us, registered, inbound_reachable, quality_ok, devices_present,
  softphone_running, public_address, clock_offset_ms)` (a view of table `timeline_lines`, in
  the compressed in-memory database `timeline_db`):
  true time = t - clock offset (the sample's own, else the watch's last measured one, else 0),
  as reports are corrected;
- `events(w, true_us, event, evidence)` (evidence JSON text), `ends(w, true_us, reason)`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.logs import report_set, timeline_cache
from diag.timeline import MAX_LINE, VERSION, bounded_lines, rotated_files

LINE_TYPES = ("start", "sample", "event", "end")
_NAME = re.compile(r"\.jsonl(\.\d+)?$")
_FIRST = 4096  # a start line is ~400 bytes: 10,000 files are not 10,000 reads of 64 KB
_HEAD = 1 << 16  # a start line is read whole if it fits here; else up to MAX_LINE


@dataclass
class Watch:
    watch_id: str
    agent_id: str | None
    sip_uri: str | None
    numbers: list[str]
    hostname: str
    interval_s: float | None
    path: str  # the file holding its start line

    @property
    def bucket_us(self) -> int:
        return bucket_us(self.interval_s)


# match keeps of a watch's samples those an ASOF join from a row can reach, by time buckets of
# this many sampling intervals (at least a minute, at most an hour): a bucket holds a few samples,
# so a row keeps ~6 (an hour at the default 60 s interval held 60, and a day of rows kept
# nearly all).
BUCKET_INTERVALS = 4
BUCKET_MIN_US = 60_000_000
BUCKET_MAX_US = 3_600_000_000


def bucket_us(interval_s: float | None) -> int:
    """The width of a watch's time buckets, µs (an hour when its interval is unknown)."""
    if interval_s is None:
        return BUCKET_MAX_US
    wanted = int(interval_s * BUCKET_INTERVALS * 1_000_000)
    return min(BUCKET_MAX_US, max(BUCKET_MIN_US, wanted))


@dataclass
class TimelineFiles:
    """Timeline files found (each watch's files, in no particular order), the watches whose start
    line was among them, and the files skipped with the reason."""

    files: list[str] = field(default_factory=list)
    watches: dict[str, Watch] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    first_lines: dict[str, str] = field(default_factory=dict)  # path -> watch_id
    first_us: dict[str, int | None] = field(default_factory=dict)  # path -> its first line's t
    # path -> the other watches whose lines it holds (timelines concatenated, or appended to by
    # a version of watch that did not rotate first), rare: their start lines are found by a scan
    more: dict[str, list[str]] = field(default_factory=dict)
    _by_watch: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def by_watch(self) -> dict[str, list[str]]:
        """watch_id -> its files (built once: 10,000 watches are not 10,000 scans of all)."""
        if self._by_watch is None:
            self._by_watch = {}
            for path in self.files:
                for watch_id in [self.first_lines[path], *self.more.get(path, [])]:
                    self._by_watch.setdefault(watch_id, []).append(path)
        return self._by_watch

    def watches_in(self, path: str) -> list[str]:
        return [self.first_lines[path], *self.more.get(path, [])]

    def spans(self, watch_id: str) -> list[tuple[str, int | None, int | None]]:
        """The watch's files with the times they cover, (path, from, until) in µs of the
        agent's clock, oldest first: a rotated file ends where the next one begins, the current
        one (or a file whose first time is unreadable) is open (None)."""
        files = sorted(
            self.by_watch().get(watch_id, []),
            key=lambda p: (self.first_us[p] is None, self.first_us[p] or 0, p),
        )
        ends = [self.first_us[p] for p in files[1:]] + [None]
        # A file of several watches is not one of a watch's rotated sequence: always read.
        return [
            (p, None, None) if p in self.more else (p, self.first_us[p], end)
            for p, end in zip(files, ends, strict=True)
        ]


def collect(paths: Sequence[Path]) -> TimelineFiles:
    """The timeline files among `paths` (files, and directories searched recursively)."""
    found = TimelineFiles()
    candidates: list[tuple[str, bool]] = []  # (path, named explicitly)
    for path in paths:
        if path.is_dir():
            _walk(str(path), candidates)
        elif os.path.isfile(path):
            candidates.append((str(path), True))
            for sibling in sorted(rotated_files(path)):
                candidates.append((str(sibling), True))
        elif not path.exists() and not path.is_symlink():
            raise UsageError(
                f"{path} does not exist", "give reports, timelines or directories of them"
            )
    seen: set[str] = set()
    loads = report_set.json_loads()
    for name, explicit in candidates:
        if name in seen:
            continue
        seen.add(name)
        line, why, mixed = _first_line(name, loads)
        if line is None:
            # A named report (*.json) is not a timeline: say nothing, the reports reader has it.
            if not explicit or _NAME.search(name):
                found.skipped.append({"path": name, "reason": why})
            continue
        found.files.append(name)
        found.first_lines[name] = line["watch_id"]
        found.first_us[name] = _epoch_us(line.get("t"))
        if line["type"] == "start" and line["watch_id"] not in found.watches:
            found.watches[line["watch_id"]] = _watch(line, name)
        if mixed:
            others = _other_starts(name, line["watch_id"], loads)
            found.more[name] = sorted(others)
            for watch_id, start in others.items():
                found.watches.setdefault(watch_id, _watch(start, name))
    orphans = sorted({w for p, w in found.first_lines.items() if w not in found.watches})
    for watch_id in orphans:  # its start line rotated away: no agent to pair rows with
        for p in sorted(p for p, w in found.first_lines.items() if w == watch_id):
            found.skipped.append({"path": p, "reason": "timeline without its start line"})
        found.files = [p for p in found.files if found.first_lines[p] != watch_id]
    found.files.sort()
    found.skipped.sort(key=lambda s: s["path"])
    return found


def _walk(top: str, out: list[tuple[str, bool]]) -> None:
    out.extend((e.path, False) for e in report_set.entries_below(top) if _NAME.search(e.name))


NOT_TIMELINE = "not a sipdiag timeline"


def _first_line(path: str, loads: Any) -> tuple[dict[str, Any] | None, str, bool]:
    """The file's first line when it is a complete version 1 timeline line, else None and
    why; and whether its last complete line is another watch's (the file holds several)."""
    # os.open and os.read, not open(): no buffered file object for a read or two (10,000 files
    # are read in 0.04 s instead of 0.07 s).
    try:
        # Non-blocking: a FIFO named on the command line must not hang the run.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, "not a regular file", False
            head = _read(fd, _FIRST)
            end = head.find(b"\n")
            if end < 0 and len(head) == _FIRST:
                head += _read(fd, _HEAD - _FIRST)
                end = head.find(b"\n")
            if end < 0 and len(head) == _HEAD:
                head += _read(fd, MAX_LINE - _HEAD)
                end = head.find(b"\n")
            last = _last_line(fd, st.st_size) if end >= 0 else None
        finally:
            os.close(fd)
    except OSError:
        return None, "unreadable", False
    if end < 0:
        return None, NOT_TIMELINE, False
    try:
        line = loads(head[:end])
    except ValueError:
        return None, NOT_TIMELINE, False
    if not (
        type(line) is dict
        and line.get("v") == VERSION
        and line.get("type") in LINE_TYPES
        and type(line.get("watch_id")) is str
        and line["watch_id"]
    ):
        return None, NOT_TIMELINE, False
    return line, "", _another_watch(last, line["watch_id"], loads)


def _last_line(fd: int, size: int) -> bytes | None:
    """The file's last complete line (None: none within its last 64 KB)."""
    for span in (_FIRST, _HEAD):
        at = max(0, size - span)
        tail = os.pread(fd, size - at, at)
        end = tail.rfind(b"\n")
        begin = tail.rfind(b"\n", 0, end) if end >= 0 else -1
        if begin >= 0 or (at == 0 and end >= 0):
            return tail[begin + 1 : end]
    return None


def _another_watch(last: bytes | None, watch_id: str, loads: Any) -> bool:
    """Whether the line is another watch's: the writer's own spelling is looked for first (one
    search instead of a parse per file)."""
    if last is None or b'"watch_id":"' + watch_id.encode() + b'"' in last:
        return False
    try:
        line = loads(last)
    except ValueError:
        return False
    return type(line) is dict and type(line.get("watch_id")) is str and line["watch_id"] != watch_id


def _other_starts(path: str, first: str, loads: Any) -> dict[str, dict[str, Any]]:
    """The start lines of the watches other than `first` in the file (their first each)."""
    starts: dict[str, dict[str, Any]] = {}
    try:
        with open(path, "rb") as f:
            for raw in bounded_lines(f):
                if raw is None or b'"start"' not in raw:
                    continue
                try:
                    line = loads(raw)
                except ValueError:
                    continue
                watch_id = line.get("watch_id") if type(line) is dict else None
                if (
                    line.get("v") == VERSION
                    and line.get("type") == "start"
                    and type(watch_id) is str
                    and watch_id
                    and watch_id != first
                ):
                    starts.setdefault(watch_id, line)
    except OSError:
        pass
    return starts


def _read(fd: int, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the file (as a buffered read)."""
    parts = []
    while size > 0:
        part = os.read(fd, size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _epoch_us(text: Any) -> int | None:
    if type(text) is not str:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1_000_000)


def _text(value: Any) -> str | None:
    return value if type(value) is str else None


def _watch(line: dict[str, Any], path: str) -> Watch:
    agent: dict[str, Any] = line["agent"] if type(line.get("agent")) is dict else {}
    host: dict[str, Any] = line["host"] if type(line.get("host")) is dict else {}
    numbers = agent.get("numbers")
    interval: Any = line.get("interval_s")
    return Watch(
        watch_id=line["watch_id"],
        agent_id=_text(agent.get("id")),
        sip_uri=_text(agent.get("sip_uri")),
        numbers=[n for n in numbers if type(n) is str] if type(numbers) is list else [],
        hostname=_text(host.get("hostname")) or "",
        interval_s=float(interval) if type(interval) in (int, float) and 0 < interval else None,
        path=path,
    )


# What DuckDB reads of a line; a field of another type reads as NULL or drops the line.
_STATE = (
    "STRUCT(registered BOOLEAN, inbound_reachable BOOLEAN, quality_ok BOOLEAN, "
    "devices_present BOOLEAN, softphone_running BOOLEAN, public_address VARCHAR, "
    "clock_offset_ms DOUBLE)"
)
COLUMNS = {
    "v": "BIGINT",
    "type": "VARCHAR",
    "watch_id": "VARCHAR",
    "t": "VARCHAR",
    "state": _STATE,
    "event": "VARCHAR",
    "evidence": "JSON",
    "reason": "VARCHAR",
}
LINES_DB = "timeline_db"  # an in-memory database of its own, compressed
LINES = f"{LINES_DB}.timeline_lines"


def load(
    con: Any,
    found: TimelineFiles,
    keep: set[str] | None = None,
    files: Sequence[str] | None = None,
    near: str | None = None,
) -> int:
    """Create the tables above from `found` (only the watches in `keep` and the `files`, when
    given); how many watches were loaded. `near`, for match: a table `(watch_id, bucket, here,
    before_row, after_row)` of time buckets (`true_us // Watch.bucket_us`): those with rows to
    pair (`here`) and the buckets just before and after them. Of the samples that carry their own
    clock offset only those an ASOF join from the rows can reach are kept: all of a row's bucket,
    the last of the bucket before and the first of the bucket after, and any with more than a
    bucket (or a file's start or end) on one side. (The sample before a row is in the row's
    bucket, or the last of the bucket before, or else more than a bucket lies between it and the
    next; likewise after.)"""
    watches = [w for w in found.watches.values() if keep is None or w.watch_id in keep]
    kept = {w.watch_id for w in watches}
    files = [
        p
        for p in dict.fromkeys(found.files if files is None else files)  # each file once
        if any(w in kept for w in found.watches_in(p))
    ]
    con.execute(
        """CREATE OR REPLACE TABLE watch_list AS SELECT
             CAST(unnest(range(len(?::VARCHAR[]))) AS INTEGER) AS w,
             unnest(?::VARCHAR[]) AS watch_id,
             unnest(?::VARCHAR[]) AS agent_id, unnest(?::VARCHAR[]) AS sip_uri,
             unnest(?::VARCHAR[][]) AS numbers, unnest(?::VARCHAR[]) AS hostname,
             unnest(?::DOUBLE[]) AS interval_s, unnest(?::VARCHAR[]) AS path,
             unnest(?::BIGINT[]) AS bucket_us""",
        [
            [w.watch_id for w in watches],
            [w.watch_id for w in watches],
            [w.agent_id for w in watches],
            [w.sip_uri for w in watches],
            [w.numbers for w in watches],
            [w.hostname for w in watches],
            [w.interval_s for w in watches],
            [w.path for w in watches],
            [w.bucket_us for w in watches],
        ],
    ).fetchall()
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {LINES_DB} (COMPRESS)").fetchall()
    # Every watch's, not only those kept: a file's copy is the same whatever the run keeps.
    buckets = {w.watch_id: w.bucket_us for w in found.watches.values()}
    cache = timeline_cache.Cache.open()
    try:
        hits, misses = cache.lookup(files)
        try:
            _lines(con, cache, misses, cache.read_sql(con, hits.values()), near, buckets)
        except Exception as e:  # a copy DuckDB cannot read: parse the files again
            if not hits or not _is_duckdb_error(e) or str(cache.root) not in str(e):
                raise  # another error (memory, disk) is no reason to drop the cache
            cache.forget(hits.values())
            _lines(con, cache, files, [], near, buckets)
    finally:
        cache.close()
    con.execute(
        f"""CREATE OR REPLACE TABLE watches AS
        SELECT l.* EXCLUDE (bucket_us), o.offset_ms FROM watch_list l LEFT JOIN (
          SELECT w, arg_max(clock_offset_ms, true_us) AS offset_ms FROM {LINES}
          WHERE kind = 1 AND clock_offset_ms IS NOT NULL GROUP BY w) o USING (w)"""
    ).fetchall()
    # Lines without an offset of their own (events, samples that did not measure it) take their
    # watch's, as they are read (rewriting them in the compressed table costs more).
    true_us = (
        "l.true_us - CASE WHEN l.clock_offset_ms IS NULL THEN coalesce(o.offset_ms, 0) * 1000 "
        "ELSE 0 END"
    )
    con.execute(
        f"""CREATE OR REPLACE VIEW samples AS
        SELECT l.w, {true_us} AS true_us, registered, inbound_reachable, quality_ok,
               devices_present, softphone_running, public_address, clock_offset_ms
        FROM {LINES} l JOIN watches o USING (w) WHERE kind = 1"""
    ).fetchall()
    con.execute(
        f"""CREATE OR REPLACE TABLE events AS
        SELECT w, true_us, event, coalesce(evidence, '{{}}') AS evidence FROM (
          SELECT l.w, {true_us} AS true_us, json_extract_string(extra, '$.event') AS event,
                 CAST(json_extract(extra, '$.evidence') AS VARCHAR) AS evidence
          FROM {LINES} l JOIN watches o USING (w) WHERE kind = 2)
        WHERE event IS NOT NULL"""
    ).fetchall()
    con.execute(
        f"""CREATE OR REPLACE TABLE ends AS
        SELECT l.w, {true_us} AS true_us, json_extract_string(extra, '$.reason') AS reason
        FROM {LINES} l JOIN watches o USING (w) WHERE kind = 3"""
    ).fetchall()
    con.execute("DROP TABLE watch_list").fetchall()
    return len(watches)


PARSED = f"{LINES_DB}.timeline_parsed"


def _is_duckdb_error(e: Exception) -> bool:
    import duckdb

    return isinstance(e, duckdb.Error)


def _parse(con: Any, files: Sequence[str], buckets: dict[str, int]) -> None:
    """Table PARSED: the lines of `files` parsed from JSON, `fid` the file's index, what the
    cache keeps of each (the watch as its ID: the numbering is the run's own); `buckets`: each
    watch's bucket width (µs; an hour for a watch not among them)."""
    # Narrow rows: the time once (true time, the line's own offset taken off), an event's or
    # end's fields in one JSON text column (NULL for samples). Then where each sample stands
    # among its file's samples (in true-time order), so that match can keep only those an ASOF
    # join from its rows can reach: the first and last of its time bucket (`bucket_us`, the
    # watch's), and whether more than a bucket (or the file's start or end) lies before or after
    # it, each watch of the file apart; `last_offset` marks the file's newest sample of the watch
    # with a clock offset, whence the watch's offset when samples are pruned. One statement: the
    # parsed rows are not stored twice.
    con.execute(
        f"""CREATE OR REPLACE TABLE {PARSED} AS
        WITH parsed AS (
          SELECT * EXCLUDE (t_us), t_us - coalesce(clock_offset_ms, 0) * 1000 AS true_us FROM (
            SELECT f.fid, coalesce(b.bucket_us, {BUCKET_MAX_US}) AS bucket_us, l.watch_id,
                   CASE l.type WHEN 'sample' THEN 1 WHEN 'event' THEN 2 ELSE 3 END::UTINYINT
                     AS kind,
                   epoch_us(try_cast(l.t AS TIMESTAMPTZ)) AS t_us,
                   l.state.registered AS registered,
                   l.state.inbound_reachable AS inbound_reachable,
                   l.state.quality_ok AS quality_ok, l.state.devices_present AS devices_present,
                   l.state.softphone_running AS softphone_running,
                   l.state.public_address AS public_address,
                   CASE WHEN l.type = 'sample' AND isfinite(l.state.clock_offset_ms)
                             AND abs(l.state.clock_offset_ms) <= {report_set.MAX_CLOCK_OFFSET_MS}
                        THEN CAST(trunc(l.state.clock_offset_ms) AS BIGINT) END
                     AS clock_offset_ms,
                   CASE WHEN l.type <> 'sample' THEN CAST(to_json({{'event': l.event,
                     'evidence': l.evidence, 'reason': l.reason}}) AS VARCHAR) END AS extra
            FROM read_json(?, format='newline_delimited', columns=?, ignore_errors=true,
                           maximum_object_size={MAX_LINE}, filename=true) l
            JOIN (SELECT unnest(?::VARCHAR[]) AS filename,
                         CAST(unnest(range(len(?::VARCHAR[]))) AS INTEGER) AS fid) f
              USING (filename)
            LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS watch_id, unnest(?::BIGINT[]) AS bucket_us) b
              ON b.watch_id = l.watch_id
            WHERE l.v = {VERSION} AND l.type IN ('sample', 'event', 'end'))
          WHERE t_us IS NOT NULL)
        SELECT * EXCLUDE (prev_us, next_us),
               coalesce(kind = 1 AND (prev_us IS NULL OR prev_us // bucket_us
                                      <> true_us // bucket_us), false) AS bucket_first,
               coalesce(kind = 1 AND (next_us IS NULL OR next_us // bucket_us
                                      <> true_us // bucket_us), false) AS bucket_last,
               coalesce(kind = 1 AND (prev_us IS NULL OR true_us - prev_us > bucket_us), false)
                 AS gap_before,
               coalesce(kind = 1 AND (next_us IS NULL OR next_us - true_us > bucket_us), false)
                 AS gap_after
        FROM (
          SELECT p.*, coalesce(p.kind = 1 AND p.true_us = o.t, false) AS last_offset,
                 lag(p.true_us) OVER s AS prev_us, lead(p.true_us) OVER s AS next_us
          FROM parsed p
          LEFT JOIN (
            SELECT fid, watch_id, max(true_us) AS t FROM parsed
            WHERE kind = 1 AND clock_offset_ms IS NOT NULL GROUP BY fid, watch_id) o
            USING (fid, watch_id)
          WINDOW s AS (PARTITION BY p.fid, p.watch_id, p.kind ORDER BY p.true_us))""",
        [list(files), COLUMNS, list(files), list(files), list(buckets), list(buckets.values())],
    ).fetchall()


# Files parsed together, at most this many bytes of JSON at a time: a chunk's table fits in
# DuckDB's memory limit (report_set.MEMORY_LIMIT), where all 7 GB of the bench's 10^7 lines at
# once spilled to disk (cold run 36 s; in chunks 16 s).
CHUNK_BYTES = 256 << 20
_EMPTY = (
    "SELECT NULL::VARCHAR AS watch_id, NULL::UTINYINT AS kind, NULL::BIGINT AS true_us, "
    "NULL::BOOLEAN AS registered, NULL::BOOLEAN AS inbound_reachable, "
    "NULL::BOOLEAN AS quality_ok, NULL::BOOLEAN AS devices_present, "
    "NULL::BOOLEAN AS softphone_running, NULL::VARCHAR AS public_address, "
    "NULL::BIGINT AS clock_offset_ms, NULL::VARCHAR AS extra, "
    "NULL::BOOLEAN AS last_offset, NULL::BOOLEAN AS bucket_first, "
    "NULL::BOOLEAN AS bucket_last, NULL::BIGINT AS bucket_us, NULL::BOOLEAN AS gap_before, "
    "NULL::BOOLEAN AS gap_after WHERE false"
)


# DuckDB's JSON reader fails the whole read on a line longer than its buffer (twice its
# maximum_object_size, at least 16 MiB), even with ignore_errors: files big enough to hold one
# are copied without their lines longer than MAX_LINE (dropped, as read_lines drops them).
LONG_LINE_SCAN = 16 << 20


def _without_long_lines(path: str, tmp: str) -> str:
    """`path`, or a copy in `tmp` without its lines longer than MAX_LINE if it has any."""
    try:
        if os.stat(path).st_size <= LONG_LINE_SCAN:
            return path
        copy = os.path.join(tmp, f"{len(os.listdir(tmp))}.jsonl")
        dropped = False
        with open(path, "rb") as f, open(copy, "wb") as out:
            for raw in bounded_lines(f):
                if raw is None or len(raw) > MAX_LINE:
                    dropped = True
                else:
                    out.write(raw)
    except OSError:
        return path  # unreadable: DuckDB says so, as for any file
    if not dropped:
        with contextlib.suppress(OSError):
            os.unlink(copy)
        return path
    return copy


def chunks(files: Sequence[str], limit: int | None = None) -> list[list[str]]:
    """`files` in order, cut into runs of at most `limit` (CHUNK_BYTES) bytes; a bigger file
    alone."""
    limit = CHUNK_BYTES if limit is None else limit
    out: list[list[str]] = []
    size = 0
    for path in files:
        try:
            nbytes = os.stat(path).st_size
        except OSError:
            nbytes = 0
        if not out or size + nbytes > limit:
            out.append([])
            size = 0
        out[-1].append(path)
        size += nbytes
    return out


def _lines(
    con: Any,
    cache: timeline_cache.Cache,
    files: Sequence[str],
    cached: list[tuple[str, list[Any]]],
    near: str | None,
    buckets: dict[str, int],
) -> None:
    """Table LINES: the `files` parsed (and their cache entries written) and the `cached` rows
    (SELECTs with their parameters), joined to the watches (a watch's number replaces its id),
    in that order; `buckets`: each watch's bucket width."""
    pruned = ""
    if near is not None:
        pruned = f"""LEFT JOIN (SELECT w.w, n.* EXCLUDE (watch_id) FROM {near} n
                   JOIN watch_list w USING (watch_id)) n
          ON n.w = w.w AND n.bucket = l.true_us // l.bucket_us
        WHERE l.kind <> 1 OR l.clock_offset_ms IS NULL OR l.last_offset
              OR l.gap_before OR l.gap_after OR n.here
              OR (n.before_row AND l.bucket_last) OR (n.after_row AND l.bucket_first)
              -- a copy placed by other buckets than the watch's now: every sample kept
              OR l.bucket_us IS DISTINCT FROM w.bucket_us"""

    def add(source: str, params: list[Any], create: bool) -> None:
        # In a compressed in-memory database of its own, so that 10^7 lines stay within DuckDB's
        # memory limit instead of spilling (a watch's number repeats, booleans and times pack
        # well).
        head = f"CREATE OR REPLACE TABLE {LINES} AS" if create else f"INSERT INTO {LINES}"
        con.execute(
            f"""{head}
            SELECT w.w, l.kind, l.true_us, l.registered, l.inbound_reachable, l.quality_ok,
                   l.devices_present, l.softphone_running, l.public_address, l.clock_offset_ms,
                   l.extra
            FROM ({source}) l JOIN watch_list w USING (watch_id)
            {pruned}""",
            params,
        ).fetchall()

    add(_EMPTY, [], create=True)
    for chunk in chunks(files):
        with tempfile.TemporaryDirectory(prefix="sipdiag-") as tmp:
            # The files as DuckDB reads them (a copy without absurd lines, rarely): same order.
            read = [_without_long_lines(p, tmp) for p in chunk]
            _parse(con, read, buckets)
        cache.store(con, PARSED, chunk)
        add(f"SELECT * EXCLUDE (fid) FROM {PARSED}", [], create=False)
        con.execute(f"DROP TABLE IF EXISTS {PARSED}").fetchall()
    if cached:
        add(
            " UNION ALL BY NAME ".join(sql for sql, _ in cached),
            [v for _, values in cached for v in values],
            create=False,
        )


def split(paths: Sequence[Path]) -> tuple[tuple[list[str], list[dict[str, str]]], TimelineFiles]:
    """What `match` and `fleet` were given: (report files, reports skipped) as
    report_set.collect finds them, less every timeline candidate; and the timelines."""
    files, skipped = report_set.collect(paths)  # a missing path: a usage error first
    timelines = collect(paths)
    taken = set(timelines.files) | {s["path"] for s in timelines.skipped}
    files = [f for f in files if f not in taken and not _NAME.search(f)]
    return (files, skipped), timelines


def needed_files(
    found: TimelineFiles, ranges: dict[str, tuple[int, int]], slack_us: int
) -> list[str]:
    """The files of the watches in `ranges` (watch_id -> the first and last true time, µs, it
    is needed for) whose span comes within `slack_us` of that range: a month of rotated files
    is not read for a day's export."""
    out = []
    for watch_id, (first, last) in ranges.items():
        for path, begins, ends in found.spans(watch_id):
            if (ends is None or ends >= first - slack_us) and (
                begins is None or begins <= last + slack_us
            ):
                out.append(path)
    return sorted(set(out))  # a file of several watches is each one's
