"""REGISTER check timings against a real Kamailio on loopback, and the all-dropped case.

Usage (root; Debian's kamailio, nftables, iproute2): python bench/bench_register.py [--runs N]
Targets (SIP issue): the REGISTER attempt itself <= 100 ms per transport on loopback; with every
packet dropped, the whole `sipdiag check` returns within --timeout + 0.5 s.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from peers.kamailio import Kamailio  # noqa: E402
from peers.netns import NetnsPair  # noqa: E402

CMD = [
    sys.executable,
    "-m",
    "diag",
    "check",
    "--user",
    "alice",
    "--only",
    "sip.register",
    "--format",
    "json",
]


def run(args: list[str], prefix: list[str] | None = None) -> tuple[float, dict]:
    env = dict(os.environ, SIPDIAG_PASSWORD="alice-secret")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*(prefix or []), *CMD, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kam = Kamailio.start(Path(tmp) / "kam")
        try:
            for transport in ("udp", "tcp", "tls"):
                extra = ["--ca", str(kam.ca_cert)] if transport == "tls" else []
                attempts, walls = [], []
                for _ in range(a.runs):
                    wall, report = run(["--registrar", kam.registrar_uri(transport), *extra])
                    attempt = report["checks"][0]["details"]["attempts"][0]
                    assert attempt["outcome"] == "ok", attempt
                    attempts.append(attempt["duration_ms"])
                    walls.append(wall)
                print(
                    f"REGISTER over {transport}: attempt median {statistics.median(attempts)} ms"
                    f" (max {max(attempts)} ms; target <= 100 ms), whole process median "
                    f"{statistics.median(walls):.3f} s"
                )
        finally:
            kam.stop()
        pair = NetnsPair.create(Path(tmp) / "ns")
        try:
            kam = pair.start_kamailio()
            pair.firewall(pair.pbx, "drop-all")
            for budget in (3.0, 10.0):
                wall, report = run(
                    [
                        "--registrar",
                        f"sip:{kam.host}:{kam.port}",
                        "--transport",
                        "udp",
                        "--transport",
                        "tcp",
                        "--timeout",
                        str(budget),
                    ],
                    prefix=pair.exec_argv(pair.agent, []),
                )
                outcomes = [x["outcome"] for x in report["checks"][0]["details"]["attempts"]]
                print(
                    f"all dropped, --timeout {budget:g}: whole process {wall:.3f} s "
                    f"(target <= {budget + 0.5:g} s), outcomes {outcomes}"
                )
        finally:
            pair.destroy()


if __name__ == "__main__":
    main()
