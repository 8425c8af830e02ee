"""diag/logs/report_set.py: which files count as reports, and the background parser that `match`
runs beside its scan (a forked child on Linux, a thread elsewhere or when the child fails)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from diag.logs import report_set

REPORT: dict[str, Any] = {
    "schema_version": 1,
    "tool": {"name": "sipdiag", "version": "0.1.0"},
    "run_id": "0b1e5a1e-0000-4000-8000-000000000001",
    "started_at": "2026-11-27T08:00:00.000Z",
    "host": {"hostname": "pc1", "os": "Linux"},
    "agent": {"id": "A-1", "sip_uri": "sip:1001@pbx.test", "numbers": ["+442071234567"]},
    "target": {"registrar": "sip:pbx.test"},
    "checks": [{"id": "net.dns", "status": "pass", "details": {"text": "x" * 5000}}],
    "findings": [
        {"cause": "network.udp_blocked", "family": "network_firewall", "severity": "critical",
         "title": "UDP blocked", "explanation": "e", "action": "a"},
    ],
    "correlation": {"call_ids": ["c1@pbx"], "clock_offset_ms": 1500.9},
    "verdict": "failing",
}  # fmt: skip


def write(directory: Path, name: str, doc: Any, indent: int | None = 2) -> Path:
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=indent))
    return path


def variant(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(REPORT))
    doc.update(changes)
    return doc


def test_reports_are_read_and_foreign_shapes_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "pretty.json", REPORT)  # sipdiag's layout: the checks are cut out unread
    write(tmp_path, "compact.json", variant(run_id="r-compact"), indent=None)
    write(tmp_path, "agent-string.json", variant(agent="A-1"))
    write(tmp_path, "bad-time.json", variant(started_at="yesterday"))
    write(tmp_path, "no-run-id.json", {k: v for k, v in REPORT.items() if k != "run_id"})
    write(tmp_path, "findings-object.json", variant(findings={"a": 1}))
    write(tmp_path, "finding-string.json", variant(findings=["oops"]))
    write(tmp_path, "offset-text.json", variant(correlation={"clock_offset_ms": "abc"}))
    write(tmp_path, "other-tool.json", variant(tool={"name": "else"}))
    write(tmp_path, "list.json", [REPORT])
    write(tmp_path, "broken.json", '{"schema_version": 1, ')
    con = report_set.connect()
    loaded = report_set.load(con, [tmp_path])
    assert loaded.count == 2
    assert {(Path(s["path"]).name, s["reason"]) for s in loaded.skipped} == {
        ("agent-string.json", "not a sipdiag report"),
        ("bad-time.json", "not a sipdiag report"),
        ("no-run-id.json", "not a sipdiag report"),
        ("findings-object.json", "not a sipdiag report"),
        ("finding-string.json", "not a sipdiag report"),
        ("offset-text.json", "not a sipdiag report"),
        ("other-tool.json", "not a sipdiag report"),
        ("list.json", "not a sipdiag report"),
        ("broken.json", "not valid JSON"),
    }
    row = con.execute(
        "SELECT run_id, started_us, true_us, clock_offset_ms, agent_id, numbers, hostname, "
        "call_ids, findings[1].cause, verdict FROM reports WHERE path LIKE '%pretty.json'"
    ).fetchone()
    started_us = 1795766400000000  # 2026-11-27T08:00:00Z
    assert row == (
        REPORT["run_id"], started_us, started_us - 1_500_000, 1500, "A-1", ["+442071234567"],
        "pc1", ["c1@pbx"], "network.udp_blocked", "failing",
    )  # fmt: skip


def test_the_background_parse_in_a_child_equals_the_one_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        write(tmp_path, f"r{i}.json", variant(run_id=f"r{i}"))
    write(tmp_path, "broken.json", "{")
    found = report_set.collect([tmp_path])

    def run() -> tuple[bool, list[bytes], list[dict[str, str]]]:
        with report_set.BackgroundParse(*found) as parsing:
            used_child = parsing._pid is not None
            got = parsing.result()
            ndjson = got.ndjson.read_bytes() if isinstance(got.ndjson, Path) else got.ndjson
            return used_child, sorted(ndjson.splitlines()), got.skipped

    monkeypatch.setattr(report_set, "_single_threaded", lambda: True)
    child = run()
    monkeypatch.setattr(report_set, "_single_threaded", lambda: False)
    thread = run()
    assert child[0] is True and thread[0] is False
    assert child[1:] == thread[1:] and len(child[1]) == 30
    assert child[2] == [{"path": str(tmp_path / "broken.json"), "reason": "not valid JSON"}]


def test_a_failed_child_falls_back_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "r.json", REPORT)
    monkeypatch.setattr(report_set, "_single_threaded", lambda: True)
    monkeypatch.setattr(report_set.BackgroundParse, "_child", lambda self, parent: os._exit(3))
    with report_set.BackgroundParse(*report_set.collect([tmp_path])) as parsing:
        got = parsing.result()
    assert got.paths == [str(tmp_path / "r.json")] and isinstance(got.ndjson, bytes)


def test_closing_stops_the_child_and_removes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "r.json", REPORT)
    monkeypatch.setattr(report_set, "_single_threaded", lambda: True)
    monkeypatch.setattr(report_set.BackgroundParse, "_child", lambda self, parent: time.sleep(60))
    parsing = report_set.BackgroundParse(*report_set.collect([tmp_path]))
    parsing.start()
    pid, tmp = parsing._pid, parsing._tmp
    assert pid and tmp and tmp.is_dir()
    t0 = time.monotonic()
    parsing.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
    assert not tmp.exists()
    with pytest.raises(report_set.ParseStopped):
        parsing.result()


def test_a_file_name_that_is_not_utf8_is_read_and_shown_with_a_replacement(tmp_path: Path) -> None:
    name = os.fsdecode(b"r\xff.json")  # surrogate-escaped, as os.scandir gives it
    write(tmp_path, name, REPORT)
    con = report_set.connect()
    loaded = report_set.load(con, [tmp_path])
    assert (loaded.count, loaded.skipped) == (1, [])
    ((path,),) = con.execute("SELECT path FROM reports").fetchall()
    assert path.endswith("r\ufffd.json")


def test_a_fork_that_fails_leaves_the_work_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "r.json", REPORT)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(report_set, "_single_threaded", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    with report_set.BackgroundParse(*report_set.collect([tmp_path])) as parsing:
        assert parsing._pid is None
        tmp = parsing._tmp
        assert tmp is not None
        got = parsing.result()
    assert got.paths == [str(tmp_path / "r.json")] and not tmp.exists()


def test_a_ctrl_c_while_closing_waits_until_the_files_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "r.json", REPORT)
    parsing = report_set.BackgroundParse(*report_set.collect([tmp_path]))
    parsing.start()
    tmp = parsing._tmp
    assert tmp is not None and tmp.is_dir()
    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path: Path, ignore_errors: bool = False) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C just as the files are being removed
        time.sleep(0.05)
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(report_set.shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(KeyboardInterrupt):
        parsing.close()
    assert not tmp.exists()
