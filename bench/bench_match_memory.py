"""Peak memory and wall time of `sipdiag match --format csv` on a ~1 GB export of failures,
plain and gzipped (issue 16, defect 12: RSS must not grow with the file; target <= 1 GB).

Every row is a failure, so every row is kept, paired and written out. The process's resident
set size, its children's included, is sampled with psutil every 20 ms; output goes to a file.

    python bench/bench_match_memory.py [--size-mb 1000] [--reports 1000] [--dir DIR]
        [--repo CHECKOUT] [--only csv|gz]

`--repo`: run another checkout's sipdiag (e.g. `git archive HEAD~1 | tar -x -C /tmp/old`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_match import FAILURES, REPO, make_reports  # noqa: E402

BYTES_PER_ROW = 82  # about, for the rows below


def make_failures_log(path: Path, size_mb: int, agents: int, start: float) -> None:
    import duckdb

    rows = size_mb * 1_000_000 // BYTES_PER_ROW
    failures = "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in FAILURES) + "]"
    duckdb.sql(
        f"""COPY (
          SELECT strftime(to_timestamp({start} + random() * 7 * 86400), '%d/%m/%Y %H:%M:%S')
                   AS "Date/Time",
                 'A-' || lpad(CAST(CAST(floor(random() * {agents}) AS INT) AS VARCHAR), 5, '0')
                   AS "Agent",
                 {failures}[CAST(floor(random() * {len(FAILURES)}) AS INT) + 1] AS "Status",
                 'q' || CAST(i % 37 AS VARCHAR) AS "Queue",
                 CAST(i AS VARCHAR) || '@platform' AS "Call ID"
          FROM range({rows}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ';')"""
    )


def measure(argv: list[str], out: Path, repo: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in bytes of the process and its children, exit code)."""
    peak = 0
    with out.open("wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=repo, stdout=sink, stderr=subprocess.PIPE)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        assert proc.stderr is not None
        print(f"  exit {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
    return wall, peak, proc.returncode


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size-mb", type=int, default=1000)
    p.add_argument("--reports", type=int, default=1000)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--repo", type=Path, default=REPO)
    p.add_argument("--only", choices=("csv", "gz"), default=None)
    args = p.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-match-memory-"))
    base.mkdir(parents=True, exist_ok=True)
    log = base / f"failures-{args.size_mb}mb.csv"
    gz = base / f"failures-{args.size_mb}mb.csv.gz"
    reports = base / f"reports-{args.reports}"
    start = time.time() - 7 * 86400
    if not log.exists():
        make_failures_log(log, args.size_mb, args.reports, start)
    if not gz.exists():
        with gz.open("wb") as out:
            subprocess.run(["gzip", "-1", "-c", str(log)], stdout=out, check=True)
    if not reports.exists():
        make_reports(reports, args.reports, start)
    for export in {"csv": (log,), "gz": (gz,)}.get(args.only or "", (log, gz)):
        argv = [sys.executable, "-m", "diag", "match", "--log", str(export), str(reports)]
        wall, peak, code = measure([*argv, "--format", "csv"], base / "match-output", args.repo)
        rows = _lines(base / "match-output") - 1 if code == 0 else 0
        print(
            f"{export.name} ({export.stat().st_size / 1e6:.0f} MB on disk): exit {code}, "
            f"{wall:.1f} s, peak RSS {peak / 1e6:.0f} MB, {rows} rows out"
        )


if __name__ == "__main__":
    main()
