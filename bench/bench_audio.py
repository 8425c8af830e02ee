"""Time of the audio checks against the capture window (issue 5: audio time <= window + 0.3 s).

Usage: python bench/bench_audio.py [--runs N] [--window S ...]
Starts the test bed's PulseAudio (null sink + null source; tests/peers/pulse.py; needs
pulseaudio and libasound2-plugins) and runs `sipdiag check --only audio --format json` in a fresh
process each time (PortAudio initialises once per process). "audio time" is the runner's
duration_ms for the run (all five audio checks, sounddevice import and PortAudio
initialisation included); the process wall time (Python start-up, imports, report writing) is shown
beside it.
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
MARGIN_S = 0.3


def one_run(env: dict[str, str], window: float) -> tuple[float, float, dict[str, int]]:
    argv = [sys.executable, "-m", "diag", "check", "--only", "audio", "--format", "json"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*argv, "--capture-seconds", str(window)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - t0
    report = json.loads(proc.stdout)
    per_check = {c["id"]: c["duration_ms"] for c in report["checks"]}
    return report["duration_ms"] / 1000, wall, per_check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--window", type=float, nargs="*", default=[0.5, 1.0, 2.0])
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from peers.pulse import Pulse

    with tempfile.TemporaryDirectory() as tmp:
        pulse = Pulse.start(Path(tmp) / "pulse")
        try:
            env = {**os.environ, **pulse.env, "XDG_DATA_HOME": str(Path(tmp) / "data")}
            for window in a.window:
                runs = [one_run(env, window) for _ in range(a.runs)]
                audio = [r[0] for r in runs]
                walls = [r[1] for r in runs]
                checks = {cid: statistics.median(r[2][cid] for r in runs) for cid in runs[0][2]}
                worst = max(audio)
                verdict = "OK" if worst <= window + MARGIN_S else "OVER"
                print(
                    f"window {window:.1f} s: audio time median {statistics.median(audio):.3f} s, "
                    f"max {worst:.3f} s (target <= {window + MARGIN_S:.1f} s: {verdict}); "
                    f"process wall median {statistics.median(walls):.3f} s; "
                    f"per check median ms {checks} over {a.runs} runs"
                )
        finally:
            pulse.stop()


if __name__ == "__main__":
    main()
