"""A columnar cache of timeline files: per file, a narrow Parquet copy of the lines `match` and
`fleet` read (timeline_set's columns, before the watches are numbered), so that only new or
changed files are parsed from JSON.

Where: `platformdirs.user_cache_dir("sipdiag")/timelines/` (on Linux `$XDG_CACHE_HOME/sipdiag/
timelines`, else `~/.cache/sipdiag/timelines`). An entry is named after its source file's device,
inode, size and mtime_ns and the cache format (`v5-<dev>-<ino>-<size>-<mtime_ns>`): timelines are
append-only and rotated files never change, and a rename (rotation) keeps the inode, so a file
whose key is unchanged is read from its entry; a grown file (the live file of a running watch) has
a new key and is parsed again. An entry's rows are a Parquet file of their own (`<entry>.parquet`)
or, for files parsed together at least PACK_MIN at a time, in a pack shared with the others
(`v5-pack-<random>.parquet`, an `entry` column naming each row's entry): DuckDB opens a file for
~80 µs, so 10,000 files of their own cost 2.7 s to read where one pack costs 0.6 s.

`index.json` holds each entry's source path, the byte size of the file holding it, that file (a
pack) and when it was last used (to the day): an entry whose file's size is not the one written
(truncated) is ignored and rewritten; entries whose source no longer exists or that were not used
for 30 days are removed on each run, and a pack when fewer than half of its entries are left.

The cache only ever costs speed: a directory that cannot be written (read-only home, full disk)
or an entry DuckDB cannot read means the files are parsed from JSON, as without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 5  # bump when the columns or their meaning change: older entries are then removed
MAX_IDLE_S = 30 * 86_400  # an entry not used for this long is removed
# Files parsed together, at least this many, share one Parquet file (a pack): DuckDB opens a file
# for ~80 µs, 10,000 copies of their own take 2.7 s to read where one pack takes 0.6 s.
PACK_MIN = 64
_DAY_S = 86_400
_STRAY_S = _DAY_S  # a file not in the index (a run that died, a lost index update): removed
INDEX = "index.json"
_PREFIX = f"v{FORMAT}-"
_PACK = re.compile(rf"{_PREFIX}pack-[0-9a-f]+\.parquet")
_OLDER_FORMAT = re.compile(rf"v(?!{FORMAT}-)\d+-.*\.parquet$")


def directory() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("sipdiag")) / "timelines"


def entry_name(path: str) -> str | None:
    """The cache entry's name for the file as it is now (None: it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{_PREFIX}{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}.parquet"


def _inode(name: str) -> str:
    """`v1-<dev>-<ino>-…` -> `<dev>-<ino>`: entries of one file, before and after it grew."""
    return "-".join(name.split("-")[1:3])


@dataclass
class Cache:
    """The cache directory as one run sees it; `close()` saves the index and removes old
    entries."""

    root: Path
    index: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> source, size, used
    sizes: dict[str, int] = field(default_factory=dict)  # name -> bytes, as listed now
    used: set[str] = field(default_factory=set)
    keys: dict[str, str | None] = field(default_factory=dict)  # source -> entry name when looked up
    held_at_open: set[str] = field(default_factory=set)  # the files the index named at first
    changed: bool = False

    @classmethod
    def open(cls, root: Path | None = None) -> Cache:
        cache = cls(root or directory())
        try:
            loaded = json.loads((cache.root / INDEX).read_bytes())
            if type(loaded) is dict and loaded.get("format") == FORMAT:
                entries = loaded.get("entries")
                cache.index = entries if type(entries) is dict else {}
        except (OSError, ValueError):
            pass
        cache.held_at_open = {cache.holder(n) for n in cache.index}
        with contextlib.suppress(OSError), os.scandir(cache.root) as listing:
            for entry in listing:
                with contextlib.suppress(OSError):
                    cache.sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
        return cache

    def holder(self, name: str) -> str:
        """The file holding the entry's rows: its own, or a pack of many."""
        known = self.index.get(name)
        held = known.get("file") if type(known) is dict else None
        is_pack = type(held) is str and _PACK.fullmatch(held) is not None
        return held if is_pack and type(held) is str else name

    def lookup(self, files: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """(source -> entry name) for the files whose entry is there whole, and the others."""
        hits: dict[str, str] = {}
        misses: list[str] = []
        for path in files:
            name = entry_name(path)
            self.keys[path] = name
            known = self.index.get(name or "")
            if (
                name
                and type(known) is dict
                and self.sizes.get(self.holder(name)) == known.get("size")
            ):
                hits[path] = name
                self.used.add(name)
                if known.get("source") != path:  # renamed by a rotation
                    known["source"] = path
                    self.changed = True
            else:
                misses.append(path)
        return hits, misses

    def read_sql(self, con: Any, names: Iterable[str]) -> list[tuple[str, list[Any]]]:
        """SELECTs (with their parameters) of the rows of the entries `names`: entries of their
        own read whole, those in packs picked out by their name (table `timeline_cache_live`)."""
        singles: list[str] = []
        packs: dict[str, list[str]] = {}
        for name in names:
            held = self.holder(name)
            if held == name:
                singles.append(str(self.root / name))
            else:
                packs.setdefault(str(self.root / held), []).append(name)
        parts: list[tuple[str, list[Any]]] = []
        if singles:
            parts.append(("SELECT * FROM read_parquet(?)", [singles]))
        # A pack all of whose entries are wanted is read whole: picking them out by name reads
        # and joins the entry of each of its rows (0.1 s for 10^7 rows).
        whole = [held for held, wanted in packs.items() if self._whole(wanted)]
        some = {held: wanted for held, wanted in packs.items() if held not in whole}
        if whole:
            parts.append(("SELECT * EXCLUDE (entry) FROM read_parquet(?)", [whole]))
        if some:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE timeline_cache_live AS "
                "SELECT unnest(?::VARCHAR[]) AS entry",
                [[n for held in some.values() for n in held]],
            ).fetchall()
            parts.append(
                (
                    "SELECT p.* EXCLUDE (entry) FROM read_parquet(?) p "
                    "SEMI JOIN timeline_cache_live l ON l.entry = p.entry",
                    [list(some)],
                )
            )
        return parts

    def _whole(self, wanted: list[str]) -> bool:
        """Whether `wanted` (distinct entries of one pack) are all the entries it was written
        with: a pack holds rows of those only, and its index entries name how many they were."""
        total = self.index[wanted[0]].get("entries")
        return type(total) is int and len(set(wanted)) == total

    def forget(self, names: Iterable[str]) -> None:
        """Entries DuckDB could not read: removed with the files holding them (a pack with
        them), their timelines parsed again."""
        for name in list(names):
            held = self.holder(name)
            for other in [n for n in self.index if self.holder(n) == held]:
                self.index.pop(other, None)
                self.used.discard(other)
            self._remove(held)
            self.changed = True

    def store(self, con: Any, table: str, sources: Sequence[str]) -> None:
        """Write one entry per source file from `table`, whose `fid` column is the file's
        index in `sources` (a file without lines gets none); nothing on failure. A file whose key
        is not the one `lookup` saw (it grew while it was read) gets none either."""
        names = [self.keys.get(p) for p in sources]
        staging = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
            if len(sources) >= PACK_MIN:
                self._store_pack(con, table, sources, names, staging)
                return
            # One partitioned write: a directory per file, the fid left out of the columns.
            target = str(staging).replace("'", "''")
            con.execute(
                f"COPY {table} TO '{target}' (FORMAT parquet, PARTITION_BY (fid), COMPRESSION zstd)"
            ).fetchall()
            for part in os.listdir(staging):
                written = os.listdir(staging / part)
                fid = int(part.partition("=")[2])
                name = names[fid] if 0 <= fid < len(names) else None
                # Several files in one partition: not worth merging, the file is parsed again.
                if name is None or len(written) != 1 or name != entry_name(sources[fid]):
                    continue
                os.replace(staging / part / written[0], self.root / name)
                self.index[name] = {
                    "source": sources[fid],
                    "size": os.stat(self.root / name).st_size,
                    "used": int(time.time()),
                }
                self.used.add(name)
                self.changed = True
        except Exception:  # noqa: BLE001 - a cache that cannot be written only costs speed
            return
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _store_pack(
        self, con: Any, table: str, sources: Sequence[str], names: list[str | None], staging: Path
    ) -> None:
        """One Parquet file for the rows of many sources, each row with its entry's name."""
        kept = [
            (fid, name)
            for fid, name in enumerate(names)
            if name is not None and name == entry_name(sources[fid])
        ]
        pack = f"{_PREFIX}pack-{os.urandom(8).hex()}.parquet"
        target = str(staging / pack).replace("'", "''")
        con.execute(
            f"""COPY (SELECT n.entry, t.* EXCLUDE (fid) FROM {table} t
                      JOIN (SELECT unnest(?::INTEGER[]) AS fid, unnest(?::VARCHAR[]) AS entry) n
                      USING (fid))
            TO '{target}' (FORMAT parquet, COMPRESSION zstd)""",
            [[fid for fid, _ in kept], [name for _, name in kept]],
        ).fetchall()
        os.replace(staging / pack, self.root / pack)
        size = os.stat(self.root / pack).st_size
        (present,) = con.execute(
            f"SELECT list(DISTINCT fid) FROM {table} WHERE fid IN (SELECT unnest(?::INTEGER[]))",
            [[fid for fid, _ in kept]],
        ).fetchone() or ([],)
        present = set(present or [])
        now = int(time.time())
        written = [(fid, name) for fid, name in kept if fid in present]  # a file without lines
        for fid, name in written:  # gets no entry: it is parsed again next time
            self.index[name] = {
                "source": sources[fid], "size": size, "used": now, "file": pack,
                "entries": len(written),
            }  # fmt: skip
            self.used.add(name)
        self.sizes[pack] = size
        self.changed = True

    def close(self) -> None:
        """Mark the entries used, remove the old ones, save the index; errors cost nothing."""
        now = int(time.time())
        holders = self.held_at_open | {self.holder(n) for n in self.index}
        for name in self.used:  # a day's precision: the index is not rewritten on every run
            entry = self.index.get(name)
            if type(entry) is dict and not (
                type(entry.get("used")) is int and now - entry["used"] < _DAY_S
            ):
                entry["used"] = now
                self.changed = True
        current = {_inode(n) for n in self.used}
        for name, entry in list(self.index.items()):
            source = entry.get("source") if type(entry) is dict else None
            used = entry.get("used") if type(entry) is dict else None
            stale = (
                type(source) is not str
                or type(used) is not int
                or now - used > MAX_IDLE_S
                or (name not in self.used and _inode(name) in current)  # the file grew
                or (name not in self.used and not os.path.exists(source))
            )
            if stale:
                held = self.holder(name)
                del self.index[name]
                if held == name:
                    self._remove(name)
                self.changed = True
        # A pack goes when fewer than half the entries it was written with are left (their
        # timelines are parsed again, into a new one).
        packs: dict[str, list[str]] = {}
        for name in self.index:
            if self.holder(name) != name:
                packs.setdefault(self.holder(name), []).append(name)
        for pack, names in packs.items():
            total = self.index[names[0]].get("entries")
            if type(total) is int and 2 * len(names) < total:
                for name in names:
                    del self.index[name]
                self._remove(pack)
                self.changed = True
        held_files = {self.holder(n) for n in self.index}
        for pack in holders - held_files:  # a pack none of whose entries is left
            self._remove(pack)
        for name in self.sizes.keys() - held_files - holders - {INDEX}:
            if _OLDER_FORMAT.match(name):  # written by another version of sipdiag
                self._remove(name)
                continue
            with contextlib.suppress(OSError):
                if now - os.lstat(self.root / name).st_mtime > _STRAY_S:
                    self._remove(name)
        if not self.changed:
            return
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(prefix=".index-", dir=self.root)
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump({"format": FORMAT, "entries": self.index}, out)
                os.replace(tmp, self.root / INDEX)
            except OSError:
                os.unlink(tmp)

    def _remove(self, name: str) -> None:
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
