"""Rendering, bundling and one-file start-up times for issue 7.

Usage: python bench/bench_reports.py [--runs N] [--onefile dist/sipdiag]
Times: text/md/html rendering of a large report (200 checks with nested details, 30 findings);
`sipdiag bundle` with and without --redact on that report plus a 2 MB SIP trace; cold start of
`sipdiag report --format html`; and, with --onefile, `--version` and `check --only host` of the
PyInstaller binary (it unpacks itself on every start).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from test_report_html import sample_report  # noqa: E402

from diag.bundle import build_bundle  # noqa: E402
from diag.render import render  # noqa: E402


def large_report() -> dict[str, Any]:
    report = sample_report()
    base = report["checks"][2]
    report["checks"] = [
        {
            **base,
            "id": f"net.x{i}",
            "details": {"attempts": [{"n": j, "via": f"10.0.0.{j % 250}"} for j in range(20)]},
        }
        for i in range(200)
    ]
    report["findings"] = report["findings"] * 15
    return report


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def proc_time(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--onefile")
    a = ap.parse_args()
    report = large_report()
    size = len(json.dumps(report))
    print(
        f"large report: {len(report['checks'])} checks, {len(report['findings'])} findings, "
        f"{size / 1024:.0f} KiB JSON"
    )
    for fmt in ("text", "md", "html"):
        t = best(functools.partial(render, report, fmt), a.runs)
        print(f"render {fmt:<4}: {t * 1000:7.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "sipdiag-20261127T000000Z-5b0c7f5e.json"
        src.write_text(json.dumps(report))
        msg = (
            "TX 600 bytes Request msg REGISTER to UDP 10.0.0.1:5060:\nREGISTER sip:10.0.0.1 "
            "SIP/2.0\nVia: SIP/2.0/UDP 192.168.1.7:5060\nAuthorization: [scrubbed]\n\n"
        )
        src.with_suffix(".sip.log").write_text(msg * (2_000_000 // len(msg)))
        for redact in (False, True):
            make = functools.partial(build_bundle, report, src, d / "b.zip", redact=redact)
            t = best(make, a.runs)
            print(f"bundle redact={redact!s:<5}: {t * 1000:7.1f} ms (2 MB trace)")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        t = proc_time(
            [
                sys.executable,
                "-m",
                "diag",
                "report",
                str(src),
                "--format",
                "html",
                "--out",
                str(d / "r.html"),
            ],
            a.runs,
            env,
        )
        print(f"`sipdiag report --format html` process (large report): {t * 1000:.0f} ms median")
        if a.onefile:
            exe = str(Path(a.onefile).resolve())
            benv = {"PATH": "/usr/bin:/bin", "HOME": tmp, "XDG_DATA_HOME": tmp}
            print(
                f"one-file --version: {proc_time([exe, '--version'], a.runs, benv) * 1000:.0f} ms"
                f" median; size {Path(exe).stat().st_size / 2**20:.1f} MiB"
            )
            t = proc_time([exe, "check", "--only", "host", "--format", "json"], a.runs, benv)
            print(f"one-file check --only host: {t * 1000:.0f} ms median")


if __name__ == "__main__":
    main()
