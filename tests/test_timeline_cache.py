"""The timelines' columnar cache (diag/logs/timeline_cache.py): a file whose device, inode, size
and mtime are unchanged is read from its Parquet copy under $XDG_CACHE_HOME/sipdiag/timelines;
a grown file is parsed again; a cache that cannot be written or read only costs speed. Real
timelines (TimelineWriter), real DuckDB, `sipdiag match` and `fleet` in-process."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli
from timelinedata import Watch, at, headset_watch

from diag.logs import timeline_cache, timeline_set

HEADER = "Date/Time;Agent;Status;Call ID"
FORBIDDEN = "Failure (Rejected – SIP 403 Forbidden)"


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "sipdiag" / "timelines"


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The files each run parsed from JSON (and offered to the cache)."""
    calls: list[list[str]] = []
    real = timeline_cache.Cache.store

    def recording(self: timeline_cache.Cache, con: Any, table: str, sources: Any) -> None:
        calls.append(list(sources))
        real(self, con, table, sources)

    monkeypatch.setattr(timeline_cache.Cache, "store", recording)
    return calls


def headset_export(tmp_path: Path) -> tuple[Path, Path]:
    """The headset timeline and an export with a 403 while the Jabra was out and one after the
    last sample (11:08:30)."""
    headset_watch(tmp_path / "tl").close()
    log = tmp_path / "log.csv"
    rows = [("02/12/2026 11:02:10", "c1"), ("02/12/2026 11:08:50", "c2")]
    log.write_text(
        "\n".join([HEADER, *(f"{t};A-17;{FORBIDDEN};{c}" for t, c in rows)]) + "\n",
        encoding="utf-8",
    )
    return log, tmp_path / "tl" / "A-17.jsonl"


def match(log: Path, timelines: Path) -> dict[str, Any]:
    r = cli("match", "--log", str(log), str(timelines), "--format", "json")
    assert r.code == 0, r.err
    loaded: dict[str, Any] = r.json
    return loaded


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("v*.parquet"))


def test_a_second_match_reads_the_parquet_copy_and_gives_the_same_output(
    tmp_path: Path, cache_home: Path, stores: list[list[str]]
) -> None:
    log, timeline = headset_export(tmp_path)
    first = match(log, tmp_path / "tl")
    assert [p.name for p in entries(cache_home)] == [timeline_cache.entry_name(str(timeline))]
    index = json.loads((cache_home / "index.json").read_text())
    assert index["entries"][entries(cache_home)[0].name]["source"] == str(timeline)
    second = match(log, tmp_path / "tl")
    assert second == first
    assert stores == [[str(timeline)]]  # the second run parsed nothing
    c1 = next(r for r in second["rows"] if r["call_id"] == "c1")
    assert c1["timeline"]["likely_cause"] == "audio.no_input_device"


def test_a_line_appended_to_the_timeline_is_seen_by_the_next_match(
    tmp_path: Path, cache_home: Path, stores: list[list[str]]
) -> None:
    log, timeline = headset_export(tmp_path)
    c2 = next(r for r in match(log, tmp_path / "tl")["rows"] if r["call_id"] == "c2")
    assert c2["timeline"]["after"] is None
    old = entries(cache_home)
    last = json.loads(timeline.read_text().splitlines()[-1])
    last.update(seq=last["seq"] + 1, t="2026-12-02T11:09:30.000Z")
    last["state"]["registered"] = False
    with timeline.open("a") as f:
        f.write(json.dumps(last) + "\n")
    c2 = next(r for r in match(log, tmp_path / "tl")["rows"] if r["call_id"] == "c2")
    assert c2["timeline"]["after"]["t"] == "2026-12-02T11:09:30.000Z"
    assert c2["timeline"]["likely_cause"] == "sip.not_registered"
    assert len(stores) == 2
    # The grown file's new entry replaces the old one.
    assert [p.name for p in entries(cache_home)] == [timeline_cache.entry_name(str(timeline))]
    assert entries(cache_home) != old


def test_a_cache_directory_that_cannot_be_written_gives_the_same_results_without_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, _ = headset_export(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "first"))
    expected = match(log, tmp_path / "tl")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert match(log, tmp_path / "tl") == expected
    assert match(log, tmp_path / "tl") == expected
    assert blocked.read_text() == "a file where the cache directory would be"


def test_a_truncated_cache_file_is_ignored_and_rewritten(
    tmp_path: Path, cache_home: Path, stores: list[list[str]]
) -> None:
    log, timeline = headset_export(tmp_path)
    expected = match(log, tmp_path / "tl")
    (entry,) = entries(cache_home)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 2  # parsed again
    assert entry.read_bytes()[-4:] == b"PAR1" and entry.stat().st_size > len(whole) // 2
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 2  # and read from the rewritten entry


def test_a_cache_file_duckdb_cannot_read_is_dropped_and_the_timeline_parsed_again(
    tmp_path: Path, cache_home: Path, stores: list[list[str]]
) -> None:
    log, _ = headset_export(tmp_path)
    expected = match(log, tmp_path / "tl")
    (entry,) = entries(cache_home)
    spoilt = bytearray(entry.read_bytes())
    spoilt[-4:] = b"XXXX"  # the size is right, the Parquet footer's magic is not
    entry.write_bytes(bytes(spoilt))
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 2
    assert entry.read_bytes()[-4:] == b"PAR1"


def test_fleet_shares_the_cache_and_gives_the_same_summary(
    tmp_path: Path, cache_home: Path, stores: list[list[str]]
) -> None:
    headset_export(tmp_path)
    first = cli("fleet", str(tmp_path / "tl"), "--format", "json")
    assert first.code == 0, first.err
    assert entries(cache_home)
    second = cli("fleet", str(tmp_path / "tl"), "--format", "json")
    assert second.json == first.json
    assert len(stores) == 1


def test_entries_of_deleted_or_long_unused_timelines_are_removed(
    tmp_path: Path, cache_home: Path
) -> None:
    log, timeline = headset_export(tmp_path)
    match(log, tmp_path / "tl")
    (entry,) = entries(cache_home)
    index = json.loads((cache_home / "index.json").read_text())
    old = f"v{timeline_cache.FORMAT}-1-2-3-4.parquet"
    index["entries"][old] = {"source": str(timeline), "size": 1, "used": 0}
    (cache_home / old).write_bytes(b"x")  # used in 1970: more than 30 days ago
    (cache_home / "index.json").write_text(json.dumps(index))
    match(log, tmp_path / "tl")
    assert entries(cache_home) == [entry]
    # Rotated as a watch rotates it: a new file where it was, the entry stays.
    timeline.rename(timeline.with_name("A-17.jsonl.1"))
    timeline.write_text("")
    other = tmp_path / "other"
    headset_watch(other, agent="A-18").close()
    assert cli("fleet", str(other)).code == 0
    assert entry.exists()
    timeline.unlink()  # gone: its entry goes on the next run
    assert cli("fleet", str(other)).code == 0
    assert not entry.exists()
    assert [p.name for p in entries(cache_home)] == [
        timeline_cache.entry_name(str(other / "A-18.jsonl"))
    ]


def test_a_stray_file_left_by_a_run_that_died_is_removed_after_a_day_an_older_format_at_once(
    tmp_path: Path, cache_home: Path
) -> None:
    log, _ = headset_export(tmp_path)
    match(log, tmp_path / "tl")
    stray = cache_home / ".tmp-dead"
    stray.mkdir()
    fresh = cache_home / ".tmp-running"
    fresh.mkdir()
    day_ago = time.time() - 2 * 86_400
    os.utime(stray, (day_ago, day_ago))
    older = cache_home / f"v{timeline_cache.FORMAT + 1}-1-2-3-4.parquet"
    older.write_bytes(b"PAR1")
    match(log, tmp_path / "tl")
    assert not stray.exists() and fresh.exists() and not older.exists()


def test_a_timeline_that_grows_while_it_is_read_gets_no_copy_of_its_older_lines(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, timeline = headset_export(tmp_path)
    lines = timeline.read_text().splitlines()
    real = timeline_cache.Cache.store

    def growing(self: timeline_cache.Cache, con: Any, table: str, sources: Any) -> None:
        with timeline.open("a") as f:  # the watch writes a sample after DuckDB read the file
            f.write(lines[-1] + "\n")
        real(self, con, table, sources)

    monkeypatch.setattr(timeline_cache.Cache, "store", growing)
    match(log, tmp_path / "tl")
    assert entries(cache_home) == []  # its key is not the one the lines were read under
    monkeypatch.setattr(timeline_cache.Cache, "store", real)
    match(log, tmp_path / "tl")
    assert [p.name for p in entries(cache_home)] == [timeline_cache.entry_name(str(timeline))]


def two_agents(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Headset timelines of A-17 and A-18 in one directory, an export with a 403 of each while
    the Jabra was out."""
    headset_watch(tmp_path / "tl").close()
    headset_watch(tmp_path / "tl", agent="A-18").close()
    log = tmp_path / "log.csv"
    rows = [f"02/12/2026 11:02:10;{a};{FORBIDDEN};c-{a}" for a in ("A-17", "A-18")]
    log.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return log, tmp_path / "tl" / "A-17.jsonl", tmp_path / "tl" / "A-18.jsonl"


def packs(cache: Path) -> list[Path]:
    return sorted(cache.glob("v*-pack-*.parquet"))


def test_files_parsed_together_share_one_pack_read_back_by_each_files_key(
    tmp_path: Path, cache_home: Path, stores: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline_cache, "PACK_MIN", 2)
    log, a17, a18 = two_agents(tmp_path)
    first = match(log, tmp_path / "tl")
    (pack,) = packs(cache_home)
    assert [p for p in entries(cache_home) if p not in packs(cache_home)] == []
    index = json.loads((cache_home / "index.json").read_text())["entries"]
    assert {e["source"]: e["file"] for e in index.values()} == {
        str(a17): pack.name,
        str(a18): pack.name,
    }
    assert match(log, tmp_path / "tl") == first
    assert len(stores) == 1
    # A-18's file grows: its new copy is its own, A-17's rows still come from the pack.
    last = json.loads(a18.read_text().splitlines()[-1])
    last.update(seq=last["seq"] + 1, t="2026-12-02T11:09:30.000Z")
    with a18.open("a") as f:
        f.write(json.dumps(last) + "\n")
    second = match(log, tmp_path / "tl")
    assert second["rows"] == first["rows"]
    assert stores[-1] == [str(a18)] and pack.exists()
    assert timeline_cache.entry_name(str(a18)) in [p.name for p in entries(cache_home)]
    # A-17's file gone: the pack holds nothing left and goes.
    a17.unlink()
    assert cli("fleet", str(tmp_path / "tl")).code == 0
    assert packs(cache_home) == []


def test_a_truncated_or_spoilt_pack_is_ignored_and_its_timelines_parsed_again(
    tmp_path: Path, cache_home: Path, stores: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline_cache, "PACK_MIN", 2)
    log, _, _ = two_agents(tmp_path)
    expected = match(log, tmp_path / "tl")
    (pack,) = packs(cache_home)
    pack.write_bytes(pack.read_bytes()[:100])
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 2 and not pack.exists()
    (pack,) = packs(cache_home)
    spoilt = bytearray(pack.read_bytes())
    spoilt[-4:] = b"XXXX"
    pack.write_bytes(bytes(spoilt))
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 3
    (pack,) = packs(cache_home)
    assert pack.read_bytes()[-4:] == b"PAR1"
    assert match(log, tmp_path / "tl") == expected
    assert len(stores) == 3


def test_match_finds_the_samples_around_a_row_across_hours_and_a_long_gap(
    tmp_path: Path, cache_home: Path
) -> None:
    """match keeps only the samples an ASOF join can reach (the row's hour, the last of the hour
    before, the first of the hour after, those beside a gap of more than an hour): the samples
    it pairs are those all of them give, first parsed and then from the cache."""
    w = Watch(tmp_path / "tl" / "a50.jsonl", "w50", "A-50", start=at(9, 0))
    for h, m in ((9, 0), (9, 20), (9, 40), (10, 20)):
        w.sample(at(h, m))
    w.sample(at(10, 40), registered=False)  # then asleep until 13:50
    w.sample(at(13, 50))
    w.sample(at(14, 10))
    w.close()
    expected = {
        "r1": ("10:40", "13:50"), "r2": ("10:40", "13:50"), "r3": ("09:40", "10:20"),
        "r4": ("10:40", "13:50"), "r5": ("09:40", "10:20"),
    }  # fmt: skip
    # One export a row: the hours of one would keep the samples another needs.
    times = {"r1": "11:05:00", "r2": "12:30:00", "r3": "10:10:00", "r4": "10:59:59", "r5": "09:50"}
    exports = [{c: t if len(t) == 8 else t + ":00"} for c, t in times.items()]
    for i, rows in enumerate(exports):
        log = tmp_path / f"log{i}.csv"
        lines = [f"02/12/2026 {t};A-50;{FORBIDDEN};{c}" for c, t in rows.items()]
        log.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
        first = match(log, tmp_path / "tl")
        for result in (first, match(log, tmp_path / "tl")):
            assert len(result["rows"]) == len(rows)
            for r in result["rows"]:
                tl = r["timeline"]
                got = (tl["before"]["t"][11:16], tl["after"]["t"][11:16])
                assert got == expected[r["call_id"]], r["call_id"]
                if r["call_id"] == "r1":
                    assert tl["likely_cause"] == "sip.not_registered"


def test_timelines_are_parsed_in_chunks_that_fit_in_memory_with_the_same_result(
    tmp_path: Path, cache_home: Path, stores: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are parsed at most CHUNK_BYTES of JSON at a time (each chunk its own cache entries);
    the rows paired are those of one parse of all files, and a later run reads the copies."""
    log, a17, a18 = two_agents(tmp_path)
    whole = match(log, tmp_path / "tl")
    assert stores == [[str(a17), str(a18)]]
    for cached in cache_home.iterdir():
        cached.unlink()
    monkeypatch.setattr(timeline_set, "CHUNK_BYTES", 1)  # one file a chunk
    chunked = match(log, tmp_path / "tl")
    assert stores[1:] == [[str(a17)], [str(a18)]]
    assert chunked["rows"] == whole["rows"]
    assert {r["timeline"]["likely_cause"] for r in chunked["rows"]} == {"audio.no_input_device"}
    assert match(log, tmp_path / "tl") == chunked
    assert len(stores) == 3  # the third run parsed nothing


def test_chunks_keep_the_files_order_and_put_a_file_bigger_than_the_limit_alone(
    tmp_path: Path,
) -> None:
    sizes = {"a": 40, "b": 50, "c": 200, "d": 10, "e": 10}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    files = [str(tmp_path / n) for n in sizes] + [str(tmp_path / "gone")]
    got = timeline_set.chunks(files, limit=100)
    assert [[Path(p).name for p in c] for c in got] == [["a", "b"], ["c"], ["d", "e", "gone"]]
    assert timeline_set.chunks([], limit=100) == []


def test_samples_kept_by_the_watchs_time_buckets_pair_as_all_samples_would(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """match keeps of each watch only the samples an ASOF join from a row can reach, by buckets
    of four sampling intervals (4 min at 60 s, 40 min at 600 s): with irregular spacing, samples
    further apart than a bucket, a sleep, a clock offset and rows on and between samples, every
    row gets the samples it gets when every sample is kept (one bucket for all time)."""
    rnd = random.Random(18)
    start = at(8, 0)
    log = tmp_path / "log.csv"
    rows = []
    for agent, interval, skew in (("A-60", 60, 2_500), ("A-600", 600, -1_200)):
        w = Watch(
            tmp_path / "tl" / f"{agent}.jsonl", f"w-{agent}", agent,
            start=start, interval_s=interval, skew_ms=skew,
        )  # fmt: skip
        t = start
        stamps = []
        for i in range(120):
            gap = interval * rnd.choice([1, 1, 1, 1.5, 2.5, 5, 6, 7])
            if i == 60:
                gap = 40 * 60  # asleep
            t += dt.timedelta(seconds=gap)
            stamps.append(t)
            w.sample(t, registered=rnd.random() > 0.3, devices_present=rnd.random() > 0.2)
        w.close()
        for _ in range(80):
            near = rnd.choice(stamps)
            when = near + dt.timedelta(seconds=rnd.choice([0, 1, -1, rnd.uniform(-900, 900)]))
            rows.append((when, agent))
        rows.append((stamps[0] - dt.timedelta(seconds=interval), agent))  # before the first
        rows.append((stamps[-1] + dt.timedelta(seconds=interval), agent))  # after the last
    # Buckets of 4 min from 10:00: a sample beyond an empty bucket, less than two buckets on.
    w = Watch(tmp_path / "tl" / "A-61.jsonl", "w-A-61", "A-61", start=start, interval_s=60)
    times = ((0, 30), (3, 30), (8, 10), (11, 50), (16, 20), (20, 0), (23, 0), (24, 30))
    for i, (m, sec) in enumerate(times):
        w.sample(at(10, m, sec), registered=i % 2 == 0)
    w.close()
    rows += [(at(10, 3, 50), "A-61"), (at(10, 16, 10), "A-61"), (at(10, 24, 10), "A-61")]
    lines = [
        f"{w.strftime('%d/%m/%Y %H:%M:%S')};{a};{FORBIDDEN};c{i}" for i, (w, a) in enumerate(rows)
    ]
    log.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")

    def pairs() -> dict[str, Any]:
        result = match(log, tmp_path / "tl")
        return {
            r["call_id"]: (
                r["timeline"] and (r["timeline"]["before"], r["timeline"]["after"]),
                r["timeline"] and r["timeline"]["likely_cause"],
            )
            for r in result["rows"]
        }

    pruned = pairs()
    assert pairs() == pruned  # and again from the cache
    spans = [(p[0]["t"][11:19], p[1]["t"][11:19]) for p, _ in list(pruned.values())[-3:]]
    assert spans == [
        ("10:03:30", "10:08:10"), ("10:11:50", "10:16:20"), ("10:23:00", "10:24:30"),
    ]  # fmt: skip
    assert sum(1 for p, _ in pruned.values() if p) >= 140  # most rows have a sample near
    for cached in cache_home.iterdir():
        cached.unlink()
    monkeypatch.setattr(timeline_set, "BUCKET_MIN_US", 10**15)  # one bucket: every sample kept
    monkeypatch.setattr(timeline_set, "BUCKET_MAX_US", 10**15)
    assert pairs() == pruned
