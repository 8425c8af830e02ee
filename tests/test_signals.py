"""Ctrl-C and SIGTERM during a run: the partial report is written, exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import REPO, cli, subprocess_env

from diag.errors import Interrupted, UsageError
from diag.lifecycle import interruptible, is_interrupt, signals_deferred
from diag.logs import log_export

DRIVER = """
import pathlib, sys, threading
import checks
from diag.context import Check
from diag.model import passed

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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_deferred_block_takes_effect_as_the_block_ends(
    signum: signal.Signals,
) -> None:
    def interrupt(received: int, frame: object) -> None:
        raise KeyboardInterrupt

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # long enough for the handler to have run, had it been there
            steps.append("the block ran to its end")
        assert steps == ["the block ran to its end"]
        assert signal.getsignal(signum) is interrupt  # the real handler is back
        with signals_deferred():
            steps.append("no signal, no interrupt")
        assert len(steps) == 2
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_after_a_signal_any_error_counts_as_the_interrupt_until_the_next_command() -> None:
    """DuckDB can wrap a Ctrl-C in an error of its own (a failed import of zoneinfo, read as
    an unknown time zone): after a signal, such an error must not read as bad input."""
    import duckdb

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    con = duckdb.connect()
    try:
        cli("explain", "Failure (No Answer)")  # a fresh command forgets earlier signals
        with pytest.raises(UsageError):
            log_export.check_tz(con, "Nowhere/Else")
        assert not is_interrupt(ValueError("unknown time zone"))
        with pytest.raises(Interrupted), interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert is_interrupt(ValueError("unknown time zone"))
        with pytest.raises(duckdb.Error):  # raised as it is, for the boundary to call it 130
            log_export.check_tz(con, "Nowhere/Else")
        assert cli("explain", "Failure (No Answer)").code == 0
        assert not is_interrupt(ValueError("unknown time zone"))
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_report_that_cannot_be_written_after_a_signal_says_so(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """The interrupt is consumed by the partial report: that its writing then fails must be
    said as itself (exit 70), not hidden behind "interrupted"."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(marker), "check", "--timeout", "30",
         "--out", "/dev/full"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=subprocess_env({"XDG_DATA_HOME": str(tmp_path / "data")}),
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stuck check never started"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 70, stderr
    assert stderr.splitlines()[-1].startswith("sipdiag: error: cannot write --out /dev/full")


def test_a_signal_the_shell_ignores_stays_ignored() -> None:
    """A background job started by a non-interactive shell inherits SIGINT ignored: sipdiag
    must not make it interruptible again."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # ours
            with signals_deferred():
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
