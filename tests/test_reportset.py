"""diag/logs/report_set.py: which files count as reports, and the background parser (a thread)
that `match` runs beside its scan."""

from __future__ import annotations

import json
import os
import signal
import threading
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


def test_the_background_parse_equals_one_in_the_foreground(tmp_path: Path) -> None:
    for i in range(30):
        write(tmp_path, f"r{i}.json", variant(run_id=f"r{i}"))
    write(tmp_path, "broken.json", "{")
    found = report_set.collect([tmp_path])
    with report_set.BackgroundParse(*found) as parsing:
        got = parsing.result()
    assert got == report_set.parse_files(*found) and len(got.paths) == 30
    assert got.skipped == [{"path": str(tmp_path / "broken.json"), "reason": "not valid JSON"}]


def test_closing_stops_the_parse_part_way_and_refuses_its_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(100):
        write(tmp_path, f"r{i}.json", REPORT)
    started = threading.Event()
    parsed: list[str] = []
    real_checked = report_set._checked

    def slow_checked(index: int, path: str, loads: Any) -> bytes | str:
        started.set()
        parsed.append(path)
        time.sleep(0.05)
        return real_checked(index, path, loads)

    monkeypatch.setattr(report_set, "_checked", slow_checked)
    parsing = report_set.BackgroundParse(*report_set.collect([tmp_path]))
    parsing.start()
    assert started.wait(5)
    t0 = time.monotonic()
    parsing.close()
    assert time.monotonic() - t0 < 1 and len(parsed) < 100
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


def test_a_ctrl_c_while_closing_waits_until_the_parse_has_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        write(tmp_path, f"r{i}.json", REPORT)
    started, finished = threading.Event(), threading.Event()
    real_checked = report_set._checked

    def slow_checked(index: int, path: str, loads: Any) -> bytes | str:
        started.set()
        time.sleep(0.3)
        finished.set()
        return real_checked(index, path, loads)

    monkeypatch.setattr(report_set, "_checked", slow_checked)
    parsing = report_set.BackgroundParse(*report_set.collect([tmp_path]))
    parsing.start()
    assert started.wait(5)
    # Ctrl-C while close() waits for the thread to finish the file it is on.
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        parsing.close()
    assert finished.is_set()
