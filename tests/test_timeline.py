"""The timeline file (issue 18's `sipdiag watch` writes it): each line valid against its schema,
written whole and fsynced, so a kill -9 mid-write leaves every complete line readable; rotated by
size and read back across the rotated files in order."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import cli

from diag.timeline import MAX_LINE, TimelineWriter, read_lines, schema

T0 = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.timezone.utc)
START = {"interval_s": 60, "host": {"hostname": "pc17"}, "sipdiag": "0.1.0", "mono": 0.0}
SAMPLE = {
    "mono": 60.0,
    "state": {"registered": True, "inbound_reachable": True, "devices_present": False},
    "checks": {"sip.bindings": {"status": "pass", "summary": "one registration"},
               "audio.devices": {"status": "fail", "summary": "no microphone"}},
    "causes": ["audio.no_input_device"],
}  # fmt: skip
EVENT = {"event": "audio_device_removed", "evidence": {"name": "Jabra"}, "detected_by": "sample"}
END = {"reason": "interrupted", "samples": 1, "events": 1}


def test_every_kind_of_line_the_writer_makes_validates(tmp_path: Path) -> None:
    writer = TimelineWriter(tmp_path / "w.jsonl", "w1", now=lambda: T0)
    for kind, fields in (("start", START), ("sample", SAMPLE), ("event", EVENT), ("end", END)):
        writer.write(kind, fields)
    writer.close()
    lines = list(read_lines(tmp_path / "w.jsonl"))
    assert [(x["type"], x["seq"]) for x in lines] == [
        ("start", 0), ("sample", 1), ("event", 2), ("end", 3),
    ]  # fmt: skip
    assert lines[0]["t"] == "2026-12-02T11:00:00.000Z"
    for line in lines:
        jsonschema.validate(line, schema())


@pytest.mark.parametrize(
    "line",
    [
        {"v": 1, "type": "event", "watch_id": "w", "seq": 0, "t": "x", "event": "coffee",
         "evidence": {}},
        {"v": 1, "type": "sample", "watch_id": "w", "seq": 0, "t": "x", "checks": {}},
        {"v": 2, "type": "end", "watch_id": "w", "seq": 0, "t": "x", "reason": "duration"},
        {"v": 1, "type": "sample", "watch_id": "w", "seq": 0, "t": "x", "state": {},
         "checks": {"sip.bindings": {"status": "fine"}}},
    ],
)  # fmt: skip
def test_the_schema_refuses_what_a_reader_could_not_use(line: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(line, schema())


WRITER = """
import sys
from pathlib import Path
from diag.timeline import TimelineWriter
w = TimelineWriter(Path(sys.argv[1]), "kill", max_bytes=1 << 40)  # one file: no rotation
print("ready", flush=True)
n = 0
while True:
    w.write("sample", {"state": {}, "checks": {}, "pad": "x" * 20000, "n": n})
    n += 1
"""


def test_a_kill_9_mid_write_leaves_every_complete_line_readable(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(0.3)  # some hundreds of 20 kB lines, one being written
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    lines = list(read_lines(path))
    assert len(lines) > 5
    assert [x["seq"] for x in lines] == list(range(len(lines)))  # none lost, none torn
    assert [x["n"] for x in lines] == list(range(len(lines)))
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    assert len(complete.splitlines()) == len(lines)  # a partial last line, if any, is skipped


def test_rotation_by_size_keeps_the_newest_files_and_reads_them_in_order(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    writer = TimelineWriter(path, "r", max_bytes=2000, keep=2)
    for n in range(60):
        writer.write("sample", {"state": {}, "checks": {}, "n": n})
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    seqs = [x["seq"] for x in read_lines(path)]
    assert seqs == list(range(seqs[0], 60)) and seqs[0] > 0  # the oldest were dropped


def test_sipdiag_schema_timeline_prints_the_line_schema() -> None:
    r = cli("schema", "--timeline")
    printed = json.loads(r.out)
    assert printed == schema() and printed["title"] == "sipdiag timeline line (v1)"
    assert json.loads(cli("schema").out)["title"] != printed["title"]


def test_each_rotated_file_opens_with_the_watchs_start_line(tmp_path: Path) -> None:
    """A month of rotation drops the oldest files: each file still says whose watch it is."""
    path = tmp_path / "w.jsonl"
    w = TimelineWriter(path, "w-rot", max_bytes=2_000, keep=2)
    agent: dict[str, Any] = {"id": "A-1", "sip_uri": None, "numbers": []}
    w.write(
        "start",
        {
            "mono": 0.0,
            "interval_s": 60,
            "host": {"hostname": "pc7"},
            "sipdiag": "0",
            "agent": agent,
        },
    )
    for i in range(60):
        w.write("sample", {"mono": float(i), "state": {"registered": True}, "checks": {}})
    w.close()
    files = [path, path.with_name("w.jsonl.1"), path.with_name("w.jsonl.2")]
    assert not path.with_name("w.jsonl.3").exists()  # beyond keep: gone with the first start
    for f in files:
        first = json.loads(f.read_text().splitlines()[0])
        assert first["type"] == "start" and first["agent"]["id"] == "A-1", f
        assert first["continued"] is True
        jsonschema.validate(first, schema())
    lines = list(read_lines(path))
    assert [x["seq"] for x in lines] == sorted(x["seq"] for x in lines)
    assert len({x["seq"] for x in lines}) == len(lines)
    r = cli("report", str(path), "--format", "json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["watch_id"] == "w-rot" and len(summary["watches"]) == 1


def test_appending_after_a_cut_short_line_keeps_the_new_watchs_lines(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_bytes(
        b'{"v":1,"type":"sample","watch_id":"x","seq":5,"t":"2026-12-02T16:00:00Z","mo'
    )
    w = TimelineWriter(path, "w-new")
    w.write("start", {"mono": 0.0, "interval_s": 60, "host": {}, "sipdiag": "0"})
    w.write("end", {"mono": 1.0, "reason": "duration"})
    w.close()
    lines = list(read_lines(path))
    assert [(x["watch_id"], x["type"]) for x in lines] == [("w-new", "start"), ("w-new", "end")]


def test_a_new_watch_on_an_earlier_watchs_file_moves_its_lines_to_dot_1(tmp_path: Path) -> None:
    """The same --out again: each file stays one watch's, whose first line names it, so match
    and fleet (which learn a file's watch from its first line) read both watches."""
    path = tmp_path / "A.jsonl"
    for watch_id in ("w1", "w2"):
        w = TimelineWriter(path, watch_id)
        w.write("start", {"mono": 0.0, "interval_s": 60, "host": {}, "sipdiag": "0"})
        w.write("end", {"mono": 1.0, "reason": "duration"})
        w.close()
    first = [json.loads(x)["watch_id"] for x in (tmp_path / "A.jsonl.1").read_text().splitlines()]
    second = [json.loads(x)["watch_id"] for x in path.read_text().splitlines()]
    assert (first, second) == (["w1", "w1"], ["w2", "w2"])
    assert [x["watch_id"] for x in read_lines(path)] == ["w1", "w1", "w2", "w2"]


def test_a_huge_line_is_skipped_without_being_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    w = TimelineWriter(path, "w")
    w.write("start", {"mono": 0.0, "interval_s": 60, "host": {}, "sipdiag": "0"})
    w.close()
    with path.open("ab") as f:
        f.write(b'{"v":1,"type":"sample","x":"' + b"A" * 50_000_000 + b'"}\n')
        f.write(b'{"v":1,"type":"end","watch_id":"w","seq":2,"t":"2026-12-02T16:00:00Z"}\n')
    tracemalloc.start()
    try:
        kinds = [x["type"] for x in read_lines(path)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kinds == ["start", "end"]
    assert peak < 8 * MAX_LINE  # not the 50 MB line


def test_rotated_files_of_a_name_with_glob_characters_are_read(tmp_path: Path) -> None:
    """`shift[1].jsonl`: its `.1` is found (the name's `[` is not a glob class), and a FIFO
    named like a rotated file is passed over, not opened."""
    path = tmp_path / "shift[1].jsonl"
    w = TimelineWriter(path, "w", max_bytes=400)
    w.write("start", {"mono": 0.0, "interval_s": 60, "host": {}, "sipdiag": "0"})
    for i in range(4):
        w.write("sample", {"state": {"registered": True}, "n": i})
    w.close()
    assert (tmp_path / "shift[1].jsonl.1").exists()
    os.mkfifo(tmp_path / "shift[1].jsonl.7")
    lines = list(read_lines(path))
    assert [x.get("n") for x in lines if x["type"] == "sample"] == [0, 1, 2, 3]
