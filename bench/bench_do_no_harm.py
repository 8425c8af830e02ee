"""Issue "do no harm": wall time of a full default check (no audio) when everything is dropped,
at the default --timeout 10 (target <= 4 s), and on a healthy registrar over UDP and TCP.

Usage (root; kamailio, nftables, iproute2): python bench/bench_do_no_harm.py [--runs N]
Each figure is the whole `sipdiag check` process: minimum, median and maximum of N runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers.netns import NetnsPair  # noqa: E402


def run(args: list[str], prefix: list[str]) -> tuple[float, dict]:
    env = dict(os.environ, SIPDIAG_PASSWORD="alice-secret")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "diag", "check", "--skip", "audio", "--format", "json",
         "--user", "alice", *args],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    return time.perf_counter() - t0, json.loads(proc.stdout)


def series(label: str, args: list[str], prefix: list[str], runs: int, target: float) -> None:
    walls: list[float] = []
    report: dict = {}
    for _ in range(runs):
        wall, report = run(args, prefix)
        walls.append(wall)
    slow = sorted(report["checks"], key=lambda c: -c["duration_ms"])[:3]
    print(
        f"{label}: min {min(walls):.2f} s, median {statistics.median(walls):.2f} s, "
        f"max {max(walls):.2f} s over {runs} runs (target <= {target:g} s); verdict "
        f"{report['verdict']}, causes {sorted(f['cause'] for f in report['findings'])}; slowest: "
        + ", ".join(f"{c['id']} {c['duration_ms']} ms" for c in slow)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        pair = NetnsPair.create(Path(tmp) / "ns")
        try:
            kam = pair.start_kamailio()
            prefix = pair.exec_argv(pair.agent, [])
            args = ["--registrar", f"sip:{kam.host}:{kam.port}", "--transport", "udp",
                    "--transport", "tcp"]  # fmt: skip
            series("healthy registrar (udp+tcp)", args, prefix, runs, 2.0)
            pair.firewall(pair.pbx, "drop-all")
            series("everything dropped, default --timeout 10", args, prefix, runs, 4.0)
        finally:
            pair.destroy()


if __name__ == "__main__":
    main()
