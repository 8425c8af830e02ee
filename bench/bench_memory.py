"""Peak RSS of a full `sipdiag check` process tree: the CLI process and its PJSIP worker.

Usage (root; Debian's kamailio): python bench/bench_memory.py [--runs N]
Target (issue 16): parent + worker peak RSS <= 80 MB for `sipdiag check --skip audio` against a
Kamailio on loopback (UDP and TCP) with a fresh account (no bindings), so the worker really
registers, a STUN server (coturn: net.stun, net.nat, net.quality run) and an agent number.

The worker lives well under a second, so /proc/<pid>/status is polled every few ms for VmHWM
(the kernel's own high-water mark of resident memory, not a sample of VmRSS): the last value read
before a process exits is its peak unless it grew in its final milliseconds. The parent's figure
comes from its own VmHWM the same way.

Measured (loopback, Python 3.11, pjsua2 2.15): before the registry was built lazily the worker
imported every probe through the `checks` package: parent 36.2 MB + worker 41.4 MB = 77.6 MB;
after: parent 35.1 MB + worker 34.6 MB = 69.8 MB (the worker's floor is pjsua2's Endpoint,
~23 MB with Python itself).
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
from peers.stun import Stun  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.002
TARGET_MB = 80.0


def vm_hwm_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None  # a zombie: its memory is gone


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def comm_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def measure(kam: Kamailio, stun: Stun, home: Path) -> dict[str, float]:
    """One full check; peaks in MB of the parent and of the worker (the -m checks.sip.worker child
    with the largest peak, when several run)."""
    argv = [
        sys.executable, "-m", "diag", "check", "--skip", "audio",
        "--registrar", f"sip:{kam.host}:{kam.port}", "--transport", "udp", "--transport", "tcp",
        "--user", "alice", "--stun", stun.server, "--number", "+442079460123", "--region", "GB",
        "--timeout", "10", "--format", "json",
    ]  # fmt: skip
    env = dict(os.environ, SIPDIAG_PASSWORD="alice-secret", HOME=str(home))
    env["XDG_DATA_HOME"] = str(home / "data")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    parent_kb, workers_kb = 0, dict[int, int]()
    while proc.poll() is None:
        parent_kb = max(parent_kb, vm_hwm_kb(proc.pid) or 0)
        for child in children(proc.pid):
            if "checks.sip.worker" in comm_line(child) or child in workers_kb:
                kb = vm_hwm_kb(child)
                if kb is not None:
                    workers_kb[child] = max(workers_kb.get(child, 0), kb)
        time.sleep(POLL_S)
    out = proc.stdout.read() if proc.stdout else b""
    report = json.loads(out)
    register = next(c for c in report["checks"] if c["id"] == "sip.register")
    attempts = register["details"].get("attempts") or []
    assert workers_kb, "the PJSIP worker never ran"
    assert any(a.get("outcome") == "ok" for a in attempts), register
    ran = {c["id"] for c in report["checks"] if c["status"] != "skip"}
    assert {"net.stun", "number.format", "net.sip-options"} <= ran, ran
    return {"parent": parent_kb / 1024, "worker": max(workers_kb.values()) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kam = Kamailio.start(Path(tmp) / "kam")
        stun = Stun.start(Path(tmp) / "stun")
        try:
            rows = [measure(kam, stun, Path(tmp) / f"home{i}") for i in range(a.runs)]
        finally:
            stun.stop()
            kam.stop()
    parent = statistics.median(r["parent"] for r in rows)
    worker = statistics.median(r["worker"] for r in rows)
    total = statistics.median(r["parent"] + r["worker"] for r in rows)
    print(
        f"peak RSS (VmHWM), median of {a.runs}: parent {parent:.1f} MB + worker {worker:.1f} MB"
        f" = {total:.1f} MB (target <= {TARGET_MB:g} MB; max total "
        f"{max(r['parent'] + r['worker'] for r in rows):.1f} MB)"
    )


if __name__ == "__main__":
    main()
