"""Issue 18: `sipdiag watch`'s resources over a long run: steady RSS (target <= 60 MB, no growth)
and CPU per sample (target: average <= 1 % of one core at the default 60 s interval).

The watch runs in the inbound test bed (tests/peers/inbound.py: agent -> NAT router ->
platform namespaces, a real Kamailio, a real baresip registered for alice) with PulseAudio (a
null sink and source) and the default light set, at a short interval, for >= 1,000 samples.
Every second the process's RSS (psutil, the whole `python -m diag` process) and its CPU time
(user + system) are read. Reported:

- RSS: after the warm-up (the first 10 % of samples), its median, maximum, and the slope of a
  least-squares line over the samples (KB per 1,000 samples): growth would show there;
- CPU: seconds of CPU per sample (total CPU / samples), and what that is as a share of one
  core at the default 60 s interval (cpu_per_sample / 60).

Usage (root; kamailio, baresip, pulseaudio, nftables, iproute2):
    .venv/bin/python bench/bench_watch.py [--samples 1000] [--interval 0.2]
The last line is the summary as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from clihelp import subprocess_env  # noqa: E402
from peers.inbound import PASSWORD, InboundBed  # noqa: E402
from peers.pulse import Pulse  # noqa: E402

from diag.timeline import read_lines  # noqa: E402


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def count_samples(path: Path) -> int:
    if not path.exists():
        return 0
    # The file grows by whole lines; counting the type cheaply avoids parsing every line.
    return path.read_bytes().count(b'"type":"sample"')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        work = Path(tmp)
        pulse = Pulse.start(work / "pulse")
        try:
            with InboundBed.start(work / "bed") as bed:
                summary = run(bed, pulse, work, args.samples, args.interval)
        finally:
            pulse.stop()
    print(json.dumps(summary))


def run(bed: InboundBed, pulse: Pulse, work: Path, samples: int, interval: float) -> Any:
    timeline = work / "bench.jsonl"
    env = {**pulse.env, "SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(work / "data")}
    argv = [
        *bed.agent_prefix, sys.executable, "-m", "diag", "watch", "--registrar",
        bed.registrar(), "--user", "alice", "--interval", str(interval), "--out",
        str(timeline), "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=subprocess_env(env), cwd=ROOT)
    # `ip netns exec` execs python in place: the pid is the watch's own.
    watch = psutil.Process(proc.pid)
    points: list[tuple[float, int, float]] = []  # (samples so far, rss bytes, cpu seconds)
    t0 = time.monotonic()
    try:
        while True:
            time.sleep(1.0)
            if proc.poll() is not None:
                raise SystemExit(f"the watch exited {proc.returncode}")
            n = count_samples(timeline)
            cpu = watch.cpu_times()
            points.append((n, watch.memory_info().rss, cpu.user + cpu.system))
            print(f"{n} samples, rss {points[-1][1] / 2**20:.1f} MB, cpu {points[-1][2]:.1f} s")
            if n >= samples:
                break
    finally:
        proc.terminate()
        proc.wait(15)
    wall = time.monotonic() - t0
    lines = list(read_lines(timeline))
    done = [x for x in lines if x["type"] == "sample"]
    durations = [x["duration_ms"] for x in done]
    warm = [p for p in points if p[0] >= samples * 0.1]
    rss_mb = [p[1] / 2**20 for p in warm]
    per_sample_cpu = (points[-1][2] - warm[0][2]) / max(1, points[-1][0] - warm[0][0])
    return {
        "samples": len(done),
        "interval_s": interval,
        "wall_s": round(wall, 1),
        "events": sum(1 for x in lines if x["type"] == "event"),
        "sample_ms_median": statistics.median(durations),
        "sample_ms_max": max(durations),
        "rss_mb_median": round(statistics.median(rss_mb), 1),
        "rss_mb_max": round(max(rss_mb), 1),
        "rss_kb_per_1000_samples": round(
            slope([p[0] for p in warm], [p[1] / 1024 for p in warm]) * 1000, 1
        ),
        "cpu_s_per_sample": round(per_sample_cpu, 4),
        "cpu_pct_at_60s": round(per_sample_cpu / 60 * 100, 3),
        "registered_share": round(
            sum(1 for x in done if x["state"]["registered"]) / max(1, len(done)), 3
        ),
        "end_reason": lines[-1].get("reason") if lines and lines[-1]["type"] == "end" else None,
    }


if __name__ == "__main__":
    main()
