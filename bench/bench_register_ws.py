"""sip.register-ws timings against a real Kamailio (websocket + xhttp) on loopback, the
browser-profile read, and the WSS port dropped in a namespace.

Usage (root; Debian's kamailio + kamailio-websocket-modules, nftables, iproute2):
    python bench/bench_register_ws.py [--runs N]
Figures: the check's own duration (report checks[].duration_ms) and the whole process's wall time
for WS and WSS; with the WSS port dropped, the run's duration against --timeout.
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
from peers.netns import NetnsPair, exec_argv, run_checked  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], prefix: list[str] | None = None) -> tuple[float, dict]:
    env = dict(os.environ, SIPDIAG_PASSWORD="alice-secret")
    cmd = [sys.executable, "-m", "diag", "check", "--user", "alice", "--format", "json", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*(prefix or []), *cmd], capture_output=True, text=True, env=env, cwd=REPO
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[max(0, round(0.95 * len(values)) - 1)]
    return f"{name}: median {statistics.median(values):.0f} ms, p95 {p95:.0f} ms, n={len(values)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kam = Kamailio.start(Path(tmp) / "kam", websocket=True)
        try:
            for transport in ("ws", "wss"):
                check_ms, wall_ms = [], []
                for _ in range(a.runs):
                    wall, report = run(
                        ["--only", "sip.register-ws", "--ws-url", kam.ws_url(transport),
                         "--ca", str(kam.ca_cert)]
                    )  # fmt: skip
                    (check,) = report["checks"]
                    assert check["status"] == "pass", check
                    check_ms.append(check["duration_ms"])
                    wall_ms.append(wall * 1000)
                print(summary(f"sip.register-ws {transport} check", check_ms))
                print(summary(f"sipdiag process {transport} (wall)", wall_ms))
        finally:
            kam.stop()
        home = Path(tmp) / "home" / ".mozilla" / "firefox"
        for i in range(5):
            (home / f"p{i}.default").mkdir(parents=True)
            (home / f"p{i}.default" / "prefs.js").write_text("")
        times = []
        for _ in range(a.runs):
            wall, report = run(
                ["--only", "audio.browser-mic", "--softphone-url", "https://platform.example"],
            )
            times.append(report["checks"][0]["duration_ms"])
        print(summary("audio.browser-mic, 5 Firefox profiles (check)", times))
        pair = NetnsPair.create(Path(tmp) / "ns")
        try:
            k2 = Kamailio.start(Path(tmp) / "k2", host=pair.pbx_ip, netns=pair.pbx, websocket=True)
            pair.kamailio = k2
            rule = (
                "table inet tb {\n chain input {\n type filter hook input priority 0; "
                f"policy accept;\n tcp dport {k2.wss_port} drop\n }}\n}}\n"
            )
            run_checked(exec_argv(pair.pbx, ["nft", "-f", "-"]), stdin=rule)
            for timeout in ("3", "10"):
                wall, report = run(
                    ["--only", "sip.register-ws", "--ws-url", k2.ws_url("wss"), "--timeout",
                     timeout],
                    prefix=exec_argv(pair.agent, []),
                )  # fmt: skip
                causes = [f["cause"] for f in report["findings"]]
                print(
                    f"WSS dropped, --timeout {timeout}: run {report['duration_ms']} ms, "
                    f"process {wall * 1000:.0f} ms, findings {causes}"
                )
        finally:
            pair.destroy()


if __name__ == "__main__":
    main()
