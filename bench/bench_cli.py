"""Cold-start time of `sipdiag --help`, and wall time + peak RSS of a full `sipdiag check`.

Usage: python bench/bench_cli.py [--runs N] [--kamailio] [-- extra check args]
With --kamailio (root; Debian's kamailio installed) it also times a check that registers over UDP
against a real Kamailio on loopback started with the test bed's helpers (tests/peers).
Targets (issue 2): --help cold start <= 0.25 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB (of the child), exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kamailio", action="store_true")
    ap.add_argument("check_args", nargs="*")
    a = ap.parse_args()
    exe = shutil.which("sipdiag") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "diag"]
    helps = [timed([*cmd, "--help"])[0] for _ in range(a.runs)]
    print(
        f"sipdiag --help cold start: median {statistics.median(helps):.3f} s, "
        f"min {min(helps):.3f} s, max {max(helps):.3f} s over {a.runs} runs (target <= 0.25 s)"
    )
    report_check(cmd, a.check_args)
    if a.kamailio:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from peers.kamailio import Kamailio

        with tempfile.TemporaryDirectory() as tmp:
            kam = Kamailio.start(Path(tmp) / "kam")
            try:
                os.environ["SIPDIAG_PASSWORD"] = "alice-secret"
                report_check(cmd, ["--registrar", kam.registrar_uri("udp"), "--user", "alice"])
            finally:
                kam.stop()


def report_check(cmd: list[str], args: list[str]) -> None:
    checks = [timed([*cmd, "check", "--format", "json", *args]) for _ in range(3)]
    walls = [c[0] for c in checks]
    print(
        f"sipdiag check {' '.join(args)}: wall median {statistics.median(walls):.3f} s, "
        f"peak RSS {max(c[1] for c in checks)} MiB, exit codes {[c[2] for c in checks]}"
    )


if __name__ == "__main__":
    main()
