"""All `net.*` checks together: healthy loopback, and everything blocked in a namespace.

Usage (root; kamailio, coturn, nftables, iproute2): python bench/bench_network.py
Targets (network issue): all net.* checks finish within 3 s on a healthy loopback network, and
within the run's --timeout when everything is blocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers.kamailio import Kamailio  # noqa: E402
from peers.netns import NetnsPair  # noqa: E402
from peers.stun import Stun  # noqa: E402
from peers.turn import Turn  # noqa: E402


def run(args: list[str], prefix: list[str] | None = None) -> tuple[float, dict]:
    env = dict(os.environ, SIPDIAG_TURN_PASSWORD="turnpass")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            *(prefix or []),
            sys.executable,
            "-m",
            "diag",
            "check",
            "--only",
            "net",
            "--format",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)


def show(label: str, wall: float, report: dict, target: float) -> None:
    checks = ", ".join(f"{c['id']} {c['status']} {c['duration_ms']} ms" for c in report["checks"])
    print(f"{label}: whole process {wall:.2f} s (target <= {target:g} s); {checks}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kam = Kamailio.start(Path(tmp) / "kam")
        stun = Stun.start(Path(tmp) / "stun")
        turn = Turn.start(Path(tmp) / "turn")
        try:
            wall, report = run(
                [
                    "--registrar",
                    f"sip:127.0.0.1:{kam.port}",
                    "--stun",
                    stun.server,
                    "--turn",
                    turn.server,
                    "--turn-user",
                    "turnuser",
                ]
            )
            show("healthy loopback", wall, report, 3.0)
        finally:
            for peer in (kam, stun, turn):
                peer.stop()
        pair = NetnsPair.create(Path(tmp) / "ns")
        try:
            kam = pair.start_kamailio()
            pair.firewall(pair.pbx, "drop-all")
            for budget in (5.0, 10.0):
                wall, report = run(
                    [
                        "--registrar",
                        f"sip:{kam.host}:{kam.port}",
                        "--stun",
                        f"{pair.pbx_ip}:3478",
                        "--turn",
                        f"{pair.pbx_ip}:3478",
                        "--turn-user",
                        "turnuser",
                        "--timeout",
                        str(budget),
                    ],
                    prefix=pair.exec_argv(pair.agent, []),
                )
                show(f"everything dropped, --timeout {budget:g}", wall, report, budget + 0.5)
        finally:
            pair.destroy()


if __name__ == "__main__":
    main()
