"""Time `sipdiag match` on 1,000,000 log rows against 10,000 reports, and a bare DuckDB scan.

Targets: end to end <= 2 s, and <= 3x a bare DuckDB scan of the same file. Two baselines: the
issue's own reference, a read of the CSV plus one ASOF join against the 10,000 report keys, and
a plain scan of the CSV alone. Each is measured two ways: inside an already running Python
with DuckDB imported, and end to end like sipdiag (a fresh `python -c "import duckdb; ..."`
process).

sipdiag's output goes to a file, as `sipdiag match ... --format csv > rows.csv` would; its
modules are byte-compiled first, as an installed wheel's are (this machine sets
PYTHONDONTWRITEBYTECODE, which would otherwise compile them on every run).

    python bench/bench_match.py [--rows 1000000] [--reports 10000] [--format csv] [--dir DIR]
                                [--inbound] [--timelines [--samples 1000]]

With --inbound every report also carries sip.inbound and net.idle results (as reports of
sipdiag 17+ do when a registrar is configured), so each 403 and No Answer row gets its lines of
evidence.

With --timelines the log is matched against `sipdiag watch` timelines instead of reports (issue
18): one per agent (--reports of them), each of --samples samples over the export's week (about
one every 10 minutes at the defaults: 10,000 x 1,000 = 10M samples), with the light set's
checks, metrics and an audio device removed and added back every 100 samples. Target: <= 3 s.
Peak RSS is the sipdiag process's own (wait4). The timelines' columnar cache lives in DIR/cache
(XDG_CACHE_HOME), emptied first: the first run is cold (every file parsed from JSON, the cache
written), the --repeat runs after it warm (every file read from the cache); they are reported
apart, the target applies to the warm ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAILURES = [
    "Failure (Rejected by Agent Console)",
    "Failure (Rejected – SIP 603 Decline)",
    "Failure (No Answer)",
    "Failure (Rejected – SIP 403 Forbidden)",
]
CAUSES = ["audio.no_input_device", "network.udp_blocked", "number.not_permitted", "host.vpn_active"]


def inbound_checks(i: int, started: float) -> list[dict[str, object]]:
    """sip.inbound (every other report blocked) and net.idle (lost after 90 s on every third)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(started + 2))
    blocked = i % 2 == 0
    inbound = {
        "mode": "softphone", "method": "OPTIONS", "transport": "udp", "call_id": f"in-{i}@x",
        "call_ids": [f"in-{i}@x"], "sent_at": at, "provisional": [100],
        "final": {"code": 408 if blocked else 200, "reason": "Request Timeout" if blocked else "OK",
                  "by": "registrar" if blocked else "binding", "user_agent": "Softphone/1.0",
                  "rtt_ms": 40},
        "platform_took": True, "problem": "network.inbound_blocked" if blocked else None,
    }  # fmt: skip
    periods = [
        {"seconds": s, "transport": "udp", "arrived": not (s == 90 and i % 3 == 0),
         "checked_at": at, "closed_by_network": False}
        for s in (30, 90)
    ]  # fmt: skip
    idle = {"periods": periods, "registration_interval": 3600, "stun": None,
            "problem": "network.nat_binding_short" if i % 3 == 0 else None}  # fmt: skip
    return [
        {"id": cid, "title": "t", "status": "fail" if d["problem"] else "pass", "summary": "s",
         "hint": None, "duration_ms": 50, "details": d}
        for cid, d in (("sip.inbound", inbound), ("net.idle", idle))
    ]  # fmt: skip


def make_reports(directory: Path, count: int, start: float, inbound: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    checks = [
        {
            "id": f"net.c{i}",
            "title": "A check passes",
            "status": "pass",
            "summary": "all fine " * 5,
            "hint": None,
            "duration_ms": 12,
            "details": {"attempts": [{"code": 200, "reason": "OK", "rtt_ms": 3.1}] * 3},
        }
        for i in range(14)
    ]
    for i in range(count):
        started = start + (i * 7 * 86400 / count)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(started))
        findings = []
        if i % 3 == 0:
            cause = CAUSES[i % len(CAUSES)]
            findings.append(
                {
                    "cause": cause,
                    "family": "network_firewall",
                    "severity": "critical",
                    "title": cause,
                    "explanation": "x" * 200,
                    "action": "y" * 100,
                    "evidence": {"checks": ["net.c1"]},
                }
            )
        report = {
            "schema_version": 1,
            "tool": {"name": "sipdiag", "version": "0.1.0"},
            "run_id": str(uuid.UUID(int=i, version=4)),
            "started_at": stamp,
            "finished_at": stamp,
            "duration_ms": 1000,
            "complete": True,
            "host": {"hostname": f"pc{i}", "os": "Linux", "os_version": "6", "python": "3.11"},
            "agent": {"id": f"A-{i:05d}", "sip_uri": f"sip:{1000 + i}@pbx.test", "numbers": []},
            "target": {"registrar": "sip:pbx.test", "domain": "pbx.test", "transports": ["udp"]},
            "checks": [*checks, *(inbound_checks(i, started) if inbound else [])],
            "findings": findings,
            "correlation": {
                "user_agent": "sipdiag/0.1.0 run=x",
                "call_ids": [f"call-{i}@pbx.test"],
                "local_addresses": [f"10.{i // 256 % 256}.{i % 256}.7"],
                "public_addresses": ["198.51.100.7"],
                "clock_offset_ms": (i % 7) * 100,
            },
            "verdict": "failing" if findings else "healthy",
        }
        (directory / f"sipdiag-{i:05d}.json").write_text(json.dumps(report, indent=2))


_SAMPLE = (
    '{"v":1,"type":"sample","watch_id":"%s","seq":%d,"t":"%s","mono":%d.0,'
    '"state":{"registered":true,"inbound_reachable":true,"quality_ok":true,'
    '"devices_present":%s,"softphone_running":true,"public_address":"198.51.100.7",'
    '"clock_offset_ms":%d},'
    '"checks":{"sip.register":{"status":"pass","summary":"registered over UDP in 41 ms"},'
    '"sip.inbound":{"status":"pass","summary":"OPTIONS reached the softphone"},'
    '"audio.devices":{"status":"%s","summary":"1 input, 2 outputs"},'
    '"net.quality":{"status":"pass","summary":"MOS 4.3"}},"causes":[%s],"call_ids":[],'
    '"metrics":{"rtt_ms":21.5,"jitter_ms":2.1,"loss_pct":0.0,"mos":4.3},"duration_ms":812}\n'
)
_EVENT = (
    '{"v":1,"type":"event","watch_id":"%s","seq":%d,"t":"%s","mono":%d.0,"event":"%s",'
    '"evidence":{"name":"Jabra Evolve 65"},"detected_by":"notification"}\n'
)


WEEK = 7 * 86400


def make_timelines(
    directory: Path, count: int, samples: int, start: float, step: float | None = None
) -> None:
    """`count` timelines of `samples` samples each, `step` s apart (default: over a week), as
    `sipdiag watch` writes them (one file each; the lines built from templates: json.dumps per
    line would take minutes)."""
    directory.mkdir(parents=True, exist_ok=True)
    step = step or 7 * 86400 / samples
    stamps = [
        time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start + i * step))
        for i in range(samples + 1)
    ]
    for w in range(count):
        watch_id = str(uuid.UUID(int=w, version=4))
        offset = (w % 7) * 100
        head = {
            "v": 1, "type": "start", "watch_id": watch_id, "seq": 0, "t": stamps[0], "mono": 0.0,
            "interval_s": step, "host": {"hostname": f"pc{w}", "os": "Linux"},
            "sipdiag": "0.1.0", "settings": {"registrar": "sip:pbx.test"},
            "agent": {"id": f"A-{w:05d}", "sip_uri": f"sip:{1000 + w}@pbx.test", "numbers": []},
        }  # fmt: skip
        lines = [json.dumps(head, separators=(",", ":")) + "\n"]
        seq = 1
        for i in range(samples):
            missing = i % 100 == 50  # removed after sample 49, back after sample 50
            if i % 100 in (50, 51):
                event = "audio_device_removed" if missing else "audio_device_added"
                lines.append(_EVENT % (watch_id, seq, stamps[i], int(i * step), event))
                seq += 1
            lines.append(
                _SAMPLE
                % (
                    watch_id, seq, stamps[i], int(i * step), "false" if missing else "true",
                    offset, "fail" if missing else "pass",
                    '"audio.no_input_device"' if missing else "",
                )
            )  # fmt: skip
            seq += 1
        (directory / f"watch-{w:05d}.jsonl").write_text("".join(lines))


def make_log(
    path: Path, rows: int, agents: int, start: float, failure_share: float, span: float = WEEK
) -> None:
    import duckdb

    failures = "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in FAILURES) + "]"
    duckdb.sql(
        f"""COPY (
          SELECT strftime(to_timestamp({start} + random() * {span}), '%d/%m/%Y %H:%M:%S')
                   AS "Date/Time",
                 'A-' || lpad(CAST(CAST(floor(random() * {agents}) AS INT) AS VARCHAR), 5, '0')
                   AS "Agent",
                 CASE WHEN random() < {failure_share}
                      THEN {failures}[CAST(floor(random() * {len(FAILURES)}) AS INT) + 1]
                      ELSE 'Success' END AS "Status",
                 'q' || CAST(i % 37 AS VARCHAR) AS "Queue",
                 CAST(i AS VARCHAR) || '@platform' AS "Call ID"
          FROM range({rows}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ';')"""
    )


BARE_SCAN = "CREATE TABLE t AS SELECT * FROM read_csv($path, header=true, all_varchar=true)"
# The reference: "a bare DuckDB read of such a 1M-row CSV plus one ASOF join" (about
# 0.8 s there). The 10,000 report keys are made in SQL (no JSON read), the CSV is read with its
# types, and the join's matches are counted, not stored: the cheapest such read and join.
BARE_ASOF = """
CREATE TABLE r AS
  SELECT 'A-' || lpad(CAST(i AS VARCHAR), 5, '0') AS agent,
         to_timestamp($start + i * 7 * 86400 / $reports) AS ts
  FROM range($reports) t(i);
SELECT count(r.ts)
  FROM read_csv($path, header=true, timestampformat='%d/%m/%Y %H:%M:%S') l
  ASOF LEFT JOIN r ON l."Agent" = r.agent AND l."Date/Time"::TIMESTAMPTZ >= r.ts;
"""


def _baseline_code(sql: str) -> str:
    return (
        "import duckdb, json, sys\n"
        "con = duckdb.connect()\n"
        "con.execute(\"SET TimeZone='UTC'\")\n"
        "params = json.loads(sys.argv[1])\n"
        f"for stmt in filter(str.strip, {sql!r}.split(';')):\n"
        "    con.execute(stmt, {k: v for k, v in params.items() if '$' + k in stmt}).fetchall()\n"
    )


def baseline(sql: str, params: dict[str, object]) -> float:
    """Seconds for `sql` in this process (DuckDB already imported)."""
    import duckdb  # noqa: F401  (imported before the clock starts)

    code = compile(_baseline_code(sql), "<baseline>", "exec")
    argv, sys.argv = sys.argv, [sys.argv[0], json.dumps(params)]
    try:
        t0 = time.perf_counter()
        exec(code, {})
        return time.perf_counter() - t0
    finally:
        sys.argv = argv


def baseline_process(sql: str, params: dict[str, object]) -> float:
    """Seconds for `sql` in a fresh `python -c` process, end to end like sipdiag."""
    t0 = time.perf_counter()
    code = _baseline_code(sql)
    subprocess.run([sys.executable, "-c", code, json.dumps(params)], check=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reports", type=int, default=10_000)
    p.add_argument("--format", default="csv")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--failure-share", type=float, default=0.2)
    p.add_argument("--inbound", action="store_true", help="reports with sip.inbound, net.idle")
    p.add_argument("--timelines", action="store_true", help="timelines instead of reports")
    p.add_argument("--samples", type=int, default=1000, help="samples per timeline")
    p.add_argument(
        "--interval", type=float, default=None,
        help="seconds between a timeline's samples (default: a week / --samples); the log's rows "
        "then fall within the timelines' span",
    )  # fmt: skip
    args = p.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-match-"))
    base.mkdir(parents=True, exist_ok=True)
    # With --interval the timelines span samples x interval and the log's rows fall within it
    # (every row's hour has samples to keep); by default both span the week.
    span = args.samples * args.interval if args.timelines and args.interval else WEEK
    spanned = f"-{span:g}s" if span != WEEK else ""
    log = base / f"log-{args.rows}-{args.failure_share}{spanned}.csv"
    reports = base / f"reports-{args.reports}{'-inbound' if args.inbound else ''}"
    start = time.time() - 7 * 86400
    if not log.exists():
        make_log(log, args.rows, args.reports, start, args.failure_share, span)
    if args.timelines:
        reports = base / f"timelines-{args.reports}x{args.samples}{spanned}"
        if not reports.exists():
            make_timelines(reports, args.reports, args.samples, start, span / args.samples)
    elif not reports.exists():
        make_reports(reports, args.reports, start, args.inbound)
    argv = [sys.executable, "-m", "diag", "match", "--log", str(log), str(reports)]
    argv += ["--format", args.format]
    compiled = dict(os.environ)
    compiled.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "diag", "checks"], cwd=REPO, env=compiled,
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    out_path = base / "match-output"
    params = {"path": str(log), "start": start, "reports": args.reports}
    baselines = {"scan": BARE_SCAN, "scan + ASOF join": BARE_ASOF}
    env = dict(os.environ, XDG_CACHE_HOME=str(base / "cache"))
    shutil.rmtree(base / "cache", ignore_errors=True)

    def run_sipdiag() -> tuple[float, float, float]:
        """Wall time, CPU time and peak RSS (MiB) of one `sipdiag match`."""
        with out_path.open("wb") as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            child = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - t0
            child.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            if child.returncode != 0:
                sys.exit(f"sipdiag match failed ({child.returncode}): {err.read().decode()[-500:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KiB on Linux

    cold = run_sipdiag() if args.timelines else None
    runs: list[float] = []
    cpu: list[float] = []
    rss: list[float] = []
    inproc: dict[str, list[float]] = {name: [] for name in baselines}
    fresh: dict[str, list[float]] = {name: [] for name in baselines}
    for _ in range(args.repeat):
        wall, used, peak = run_sipdiag()
        runs.append(wall)
        cpu.append(used)
        rss.append(peak)
        for name, sql in baselines.items():
            inproc[name].append(baseline(sql, params))
            fresh[name].append(baseline_process(sql, params))
    out_rows = out_path.read_bytes().count(b"\n")
    run = statistics.median(runs)
    size = log.stat().st_size / 1e6
    what = (
        f"{args.reports} timelines x {args.samples} samples "
        f"({sum(f.stat().st_size for f in reports.iterdir()) / 1e6:.0f} MB)"
        if args.timelines
        else f"{args.reports} reports"
    )
    print(f"data: {args.rows} log rows ({size:.0f} MB, {args.failure_share:.0%} failures), {what}")
    if cold is not None:
        cache_mb = sum(f.stat().st_size for f in (base / "cache").rglob("*") if f.is_file()) / 1e6
        print(
            f"cold run (every timeline parsed, cache written, {cache_mb:.0f} MB): {cold[0]:.2f} s, "
            f"CPU {cold[1]:.2f} s, peak RSS {cold[2]:.0f} MiB"
        )
    warm = " warm" if cold is not None else ""
    print(f"sipdiag match --format {args.format}: median {run:.2f} s of {args.repeat}{warm} runs")
    print(f"  runs: {', '.join(f'{r:.2f}' for r in runs)}; output {out_rows} lines")
    print(f"  CPU (user+sys) of the sipdiag process: median {statistics.median(cpu):.2f} s")
    print(f"  peak RSS of the sipdiag process: max {max(rss):.0f} MiB")
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    target = "3 s (issue 18, timelines)" if args.timelines else "2 s"
    print(f"end to end target <= {target}; ratio target <= 3x the bare DuckDB baseline")
    # This machine's speed drifts between rounds: a round's baselines ran right after its run,
    # so the per-round ratios are the steadier figure.
    for name in baselines:
        for where, times in (("in process", inproc[name]), ("fresh process", fresh[name])):
            base_time = statistics.median(times)
            per_round = statistics.median(r / b for r, b in zip(runs, times, strict=True))
            print(
                f"bare DuckDB {name}, {where}: median {base_time:.2f} s; "
                f"ratio {run / base_time:.2f}x (median per round {per_round:.2f}x)"
            )


if __name__ == "__main__":
    main()
