"""Ctrl-C and SIGTERM during a run: the partial report is written, exit 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import REPO, subprocess_env

DRIVER = """
import pathlib, sys, threading
import checks
from diag.model import Check, passed

marker = pathlib.Path(sys.argv[1])

def stuck(ctx):
    marker.write_text("started")
    threading.Event().wait(60)
    return passed("never")

checks.REGISTRY = checks.REGISTRY[:1] + (Check("host.stuck", "Stuck works", stuck, timeout=None),)
sys.argv = ["sipdiag", *sys.argv[2:]]
from diag.cli import main
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_an_incomplete_report_and_exits_130(
    tmp_path: Path, signum: signal.Signals
) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / "started"
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(driver),
            str(marker),
            "check",
            "--format",
            "json",
            "--timeout",
            "30",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=subprocess_env({"XDG_DATA_HOME": str(tmp_path / "data")}),
    )
    deadline = time.monotonic() + 15
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stuck check never started"
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 3
    assert proc.returncode == 130, stderr
    report = json.loads(stdout)
    assert report["complete"] is False
    stuck = next(c for c in report["checks"] if c["id"] == "host.stuck")
    assert stuck["status"] == "error" and "interrupted" in stuck["summary"]
    assert report["checks"][0]["status"] == "pass"  # what finished before the signal is kept
    assert json.loads(out.read_text())["run_id"] == report["run_id"]
    saved = list((tmp_path / "data" / "sipdiag" / "reports").glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["complete"] is False
    assert not list(tmp_path.glob(".*.tmp")), "a temporary report file was left behind"
    assert "Traceback" not in stderr
