"""The timeline file `sipdiag watch` writes (issue 18): JSON Lines, one line per sample or event,
appended, flushed and fsynced line by line, so a crash or a kill loses at most the line being
written; rotated by size; read back tolerating a partial last line.

The line format is versioned (`"v": 1`) and has a JSON Schema (`sipdiag schema --timeline`,
diag/timeline-schema-v1.json). This module only writes and reads lines; what a line holds is
the watch's business.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from diag.report import rfc3339

VERSION = 1
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # rotate beyond this (a day at 60 s is ~3 MB)
DEFAULT_KEEP = 5  # rotated files kept: watch.jsonl.1 … .5
MAX_LINE = 1024 * 1024  # a reader skips a longer line (a corrupt file must not exhaust memory)


def schema() -> dict[str, Any]:
    text = resources.files("diag").joinpath("timeline-schema-v1.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def timelines_dir() -> Path:
    """Where timelines go by default: the user data directory's `timelines/`."""
    import platformdirs

    return Path(platformdirs.user_data_dir("sipdiag", appauthor=False)) / "timelines"


class TimelineWriter:
    """Appends lines to ``path``: each one written whole with one write(), flushed and fsynced
    before the next, so the file is valid up to its last complete line whatever happens."""

    def __init__(
        self,
        path: Path,
        watch_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.path = path
        self.watch_id = watch_id
        self.max_bytes = max_bytes
        self.keep = keep
        self.now = now
        self.seq = 0
        self._start: dict[str, Any] | None = None  # the start line's fields, for each new file
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._end_partial_line()

    def _end_partial_line(self) -> None:
        """Appending to a file whose last line a kill or a full disk cut short: end it first,
        or our first line would be glued to it and lost with it."""
        size = os.fstat(self._fd).st_size
        if not size:
            return
        with self.path.open("rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def write(self, kind: str, fields: dict[str, Any], when: dt.datetime | None = None) -> None:
        stamp = rfc3339(when or self.now())
        data = self._line(kind, fields, stamp)
        if kind == "start" and self._start is None and self.keep and os.fstat(self._fd).st_size:
            # A new watch on a file an earlier one wrote (the same --out again): the earlier
            # watch's lines move to .1, so that each file is one watch's, whose first line
            # names it (match and fleet learn a file's watch from its first line).
            self._rotate()
        if os.fstat(self._fd).st_size and os.fstat(self._fd).st_size + len(data) > self.max_bytes:
            self._rotate()
            if self._start is not None and kind != "start":
                # Each file opens with the watch's start line (marked continued), so a file
                # whose predecessors were rotated away still says whose watch it is.
                self._append(self._line("start", {**self._start, "continued": True}, stamp))
                data = self._line(kind, fields, stamp)  # its seq moved on by one
        if kind == "start":
            self._start = {k: v for k, v in fields.items() if k != "mono"}
        self._append(data)

    def _line(self, kind: str, fields: dict[str, Any], stamp: str) -> bytes:
        line: dict[str, Any] = {
            "v": VERSION,
            "type": kind,
            "watch_id": self.watch_id,
            "seq": self.seq,
            "t": stamp,
            **fields,
        }
        return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    def _append(self, data: bytes) -> None:
        written = 0
        while written < len(data):  # a short write (a full disk, a signal) is finished here
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        self.seq += 1

    def _rotate(self) -> None:
        """watch.jsonl -> watch.jsonl.1 -> .2 …, the oldest beyond ``keep`` dropped."""
        os.close(self._fd)
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if n == self.keep:
                older.unlink(missing_ok=True)
                continue
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.keep:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The timeline's lines, its rotated files first (oldest first): every complete line that
    is a JSON object of version 1; a partial last line (a kill mid-write) and garbage skipped."""
    rotated = sorted(rotated_files(path), key=lambda p: -int(p.suffix[1:]))
    for part in [*rotated, path]:
        with part.open("rb") as f:
            for raw in bounded_lines(f):
                if raw is None or not raw.endswith(b"\n") or len(raw) > MAX_LINE:
                    continue  # the line being written when the process died, or absurd
                try:
                    line = json.loads(raw)
                except (ValueError, RecursionError):  # garbage, or nested beyond reason
                    continue
                if isinstance(line, dict) and line.get("v") == VERSION:
                    yield line


def rotated_files(path: Path) -> list[Path]:
    """`x.jsonl.1`, `x.jsonl.2`, … next to `x.jsonl`, in no particular order: regular files only
    (a FIFO named like one would block its read)."""
    pattern = re.sub(r"([*?\[])", r"[\1]", path.name) + ".*"  # the name's own [, *, ? literal
    try:
        return [p for p in path.parent.glob(pattern) if p.suffix[1:].isdigit() and is_regular(p)]
    except OSError:
        return []


def is_regular(path: Path | str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # gone, unreadable, a symlink loop, a NUL in the name
        return False


def bounded_lines(f: BinaryIO, limit: int = MAX_LINE) -> Iterator[bytes | None]:
    """The lines of `f` as read (with their newline), None for a line longer than `limit`,
    which is skipped without being held in memory (a corrupt file may hold a line of 400 MB)."""
    while raw := f.readline(limit + 1):
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield raw
