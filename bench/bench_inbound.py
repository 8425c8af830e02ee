"""Issue 17: what sip.bindings and sip.inbound add to a healthy full check, the own-binding
path, and net.idle's budget, in the inbound test bed (tests/peers/inbound.py: agent -> NAT
router -> platform namespaces, a real Kamailio routing requests to users, a real baresip
registered for alice in the agent namespace; tests/README.md §Inbound).

1. a healthy full check without audio over UDP and TCP (which now includes sip.bindings and
   sip.inbound), paired run by run (A B A B ...) with
2. the same check with ``--skip sip.bindings --skip sip.inbound``: the cost of the two checks is
   the pairwise difference of the wall times; each check's own ``duration_ms`` comes from the
   JSON report, and the SIP requests sip.inbound sent are counted in Kamailio's log (its
   ``REQ`` lines carry the Call-ID the report names in ``details.call_ids``);
3. the same full check with no softphone registered: sip.inbound registers a binding of its
   own, sends the OPTIONS to it and removes the binding;
4. that check with ``--idle 5 --timeout 10`` (net.idle: silent 5 s, then the request): the
   process's wall time against ``--timeout`` + 0.5 s.

Usage (root; kamailio, baresip, nftables, iproute2):
    .venv/bin/python bench/bench_inbound.py [--runs N] [--json-only]
Each wall time is the whole ``sipdiag check`` process (``ip netns exec`` included): minimum,
median and maximum of N runs after one warm-up run of each command that is not counted. The
last line is the summary as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers.inbound import PASSWORD, PLATFORM_IP, USER, InboundBed  # noqa: E402

NEW_CHECKS = ("sip.bindings", "sip.inbound")
IDLE, IDLE_TIMEOUT = 5, 10.0
# A line of Kamailio's log: the prefix "{<msg type> <CSeq number> <CSeq method> <Call-ID>} "
# (log_prefix in tests/data/kamailio/kamailio-testbed.cfg), then what request_route logs, e.g.
# {1 2 OPTIONS <run id>-in@10.95.0.1} <script>: REQ OPTIONS sip:alice@10.94.0.2 from ...
REQ_LINE = re.compile(r"\{\d+ \d+ \w+ (\S+)\} (?:<script>: )?REQ (\w+) (\S+) from ")


@dataclass
class Run:
    """One ``sipdiag check`` process and what its report and Kamailio's log say of it."""

    wall: float
    code: int
    report: dict[str, Any]
    log_start: int  # offset in Kamailio's log when the process started
    log_end: int = 0  # ... and when the next one started (or the log's end)
    requests: Counter[str] = field(default_factory=Counter)  # REQ lines by method
    inbound_requests: Counter[str] = field(default_factory=Counter)  # sip.inbound's, by method

    @property
    def verdict(self) -> str:
        return str(self.report.get("verdict"))

    def check(self, check_id: str) -> dict[str, Any]:
        return next((c for c in self.report.get("checks", []) if c["id"] == check_id), {})

    def duration(self, check_id: str) -> int | None:
        found = self.check(check_id).get("duration_ms")
        return None if found is None else int(found)

    def status(self, check_id: str) -> str | None:
        return self.check(check_id).get("status")

    def causes(self) -> list[str]:
        return sorted(f["cause"] for f in self.report.get("findings", []))


class Bench:
    """Runs ``sipdiag check`` in the agent namespace of ``bed`` and reads Kamailio's log."""

    def __init__(self, bed: InboundBed, data_home: Path) -> None:
        self.bed = bed
        self.env = {**os.environ, "SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(data_home)}
        self.runs: list[Run] = []

    def args(self, *extra: str) -> list[str]:
        return [
            "check", "--registrar", f"sip:{PLATFORM_IP}:{self.bed.pbx.port}", "--user", USER,
            "--transport", "udp", "--transport", "tcp", "--skip", "audio", "--format", "json",
            *extra,
        ]  # fmt: skip

    def run(self, args: Sequence[str]) -> Run:
        start = len(self.bed.pbx.log_text())
        argv = [*self.bed.agent_prefix, sys.executable, "-m", "diag", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, cwd=ROOT,
            stdin=subprocess.DEVNULL, timeout=120, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            report = {"verdict": f"no report (exit {proc.returncode}): {proc.stderr[-300:]}"}
        run = Run(wall, proc.returncode, report, start)
        self.runs.append(run)
        return run

    def attribute(self) -> None:
        """Slice Kamailio's log run by run and count the requests (after the last run's
        stragglers had a moment to be logged); the softphone's own requests are left out."""
        time.sleep(0.5)
        text = self.bed.pbx.log_text()
        phone_ids = {b.get("Call-ID") for b in self.bed.bindings()}
        for run, following in zip(self.runs, [*self.runs[1:], None], strict=True):
            run.log_end = following.log_start if following else len(text)
            inbound_ids = set(run.check("sip.inbound").get("details", {}).get("call_ids") or [])
            for m in REQ_LINE.finditer(text, run.log_start, run.log_end):
                call_id, method = m[1], m[2]
                if call_id in phone_ids:
                    continue
                run.requests[method] += 1
                if call_id in inbound_ids:
                    run.inbound_requests[method] += 1


def spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def ms_spread(values: Sequence[int | None]) -> dict[str, float] | None:
    known = [v for v in values if v is not None]
    return spread(known) if known else None


def series(bench: Bench, runs: int, *commands: list[str]) -> list[list[Run]]:
    """One warm-up of each command, then ``runs`` rounds of the commands in turn (A B A B)."""
    for args in commands:
        bench.run(args)
    bench.runs.clear()
    rounds: list[list[Run]] = [[] for _ in commands]
    for _ in range(runs):
        for i, args in enumerate(commands):
            rounds[i].append(bench.run(args))
    bench.attribute()
    return rounds


def describe(runs: list[Run], watch: Sequence[str]) -> dict[str, Any]:
    return {
        "wall_s": spread([r.wall for r in runs]),
        "verdicts": dict(Counter(r.verdict for r in runs)),
        "per_run": [[round(r.wall, 3), r.verdict, r.code] for r in runs],
        "exit_codes": dict(Counter(str(r.code) for r in runs)),
        "causes": sorted({c for r in runs for c in r.causes()}),
        "checks": {
            cid: {
                "duration_ms": ms_spread([r.duration(cid) for r in runs]),
                "status": dict(Counter(str(r.status(cid)) for r in runs)),
            }
            for cid in watch
        },
        "requests_per_run": spread([sum(r.requests.values()) for r in runs]),
        "slowest_checks_ms": slowest(runs),
    }


def slowest(runs: list[Run], top: int = 4) -> dict[str, float]:
    """The checks with the longest median duration_ms over ``runs``."""
    ids = {c["id"] for r in runs for c in r.report.get("checks", [])}
    medians = {
        cid: statistics.median([d for r in runs if (d := r.duration(cid)) is not None] or [0])
        for cid in ids
    }
    return dict(sorted(medians.items(), key=lambda kv: -kv[1])[:top])


def inbound_requests(runs: list[Run]) -> dict[str, Any]:
    per_run = [dict(r.inbound_requests) for r in runs]
    return {"per_run": per_run, "total": spread([sum(r.inbound_requests.values()) for r in runs])}


def inbound_detail(run: Run, *keys: str) -> Any:
    """``details[keys[0]][keys[1]]...`` of the run's sip.inbound result (None when absent)."""
    found: Any = run.check("sip.inbound").get("details", {})
    for key in keys:
        found = found.get(key) if isinstance(found, dict) else None
    return found


def inbound_answers(runs: list[Run]) -> dict[str, Any]:
    """Who answered sip.inbound's request, how fast, and (own binding) when it arrived."""
    return {
        "final": dict(
            Counter(
                f"{inbound_detail(r, 'final', 'code')} {inbound_detail(r, 'final', 'reason')} "
                f"by {inbound_detail(r, 'final', 'by')}"
                for r in runs
            )
        ),
        "final_rtt_ms": ms_spread([inbound_detail(r, "final", "rtt_ms") for r in runs]),
        "arrived_after_ms": ms_spread([inbound_detail(r, "arrived", "after_ms") for r in runs]),
        "modes": dict(Counter(str(inbound_detail(r, "mode")) for r in runs)),
        "last": {
            k: inbound_detail(runs[-1], k)
            for k in ("mode", "final", "arrived", "registration", "error")
        },
    }


def binding_key(bed: InboundBed) -> list[tuple[str | None, ...]]:
    """What a re-REGISTER or a replacement would change in the softphone's binding."""
    return [
        tuple(b.get(k) for k in ("Address", "Call-ID", "CSeq", "User-Agent"))
        for b in bed.bindings()
    ]


def row(label: str, values: dict[str, float] | None, unit: str, note: str = "") -> str:
    if values is None:
        return f"{label:<52} {'-':>28}  {note}"
    fmt = {"s": ".3f", "x": ".3f"}.get(unit, "g")
    figures = " / ".join(format(values[k], fmt) for k in ("min", "median", "max"))
    figures += f" {unit}" if unit else ""
    return f"{label:<52} {figures:>28}  {note}"


def with_softphone(work: Path, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    with InboundBed.start(work / "phone", route_users=True) as bed:
        bench = Bench(bed, work / "data-phone")
        before = binding_key(bed)
        full_args = bench.args()
        skip_args = bench.args(*(x for cid in NEW_CHECKS for x in ("--skip", cid)))
        full, skipped = series(bench, runs, full_args, skip_args)
        after = binding_key(bed)
        pairs = [a.wall - b.wall for a, b in zip(full, skipped, strict=True)]
        ratios = [a.wall / b.wall for a, b in zip(full, skipped, strict=True)]
        watch = ("sip.register", *NEW_CHECKS)
        result: dict[str, Any] = {
            "full": describe(full, watch),
            "without_new_checks": describe(skipped, ("sip.register",)),
            "cost_of_new_checks_s": spread(pairs),
            "cost_per_pair_s": [round(p, 3) for p in pairs],
            "ratio_full_over_without": spread(ratios),
            "inbound_requests": inbound_requests(full),
            "inbound": inbound_answers(full),
            "softphone_binding_untouched": before == after and len(before) == 1,
        }
        say(
            f"-- with the softphone (baresip) registered, {runs} paired runs "
            "(min / median / max) --"
        )
        say(row("1. full check, udp+tcp, no audio", result["full"]["wall_s"], "s", "(<= 2.0 s)"))
        say(
            row(
                "2. same, --skip sip.bindings --skip sip.inbound",
                result["without_new_checks"]["wall_s"],
                "s",
            )
        )
        say(row("   cost of the two checks (1 - 2, pair by pair)", spread(pairs), "s"))
        say(row("   ratio 1 / 2 (pair by pair)", spread(ratios), "x"))
        for cid in watch:
            say(
                row(
                    f"   {cid} duration_ms (in 1)",
                    result["full"]["checks"][cid]["duration_ms"],
                    "ms",
                )
            )
        say(row("   sip.inbound final answer rtt_ms", result["inbound"]["final_rtt_ms"], "ms"))
        say(
            row(
                "   sip.inbound requests (Kamailio REQ lines)",
                result["inbound_requests"]["total"],
                "",
            )
        )
        say(
            f"   verdicts 1: {result['full']['verdicts']}, 2: "
            f"{result['without_new_checks']['verdicts']}; sip.inbound "
            f"{result['full']['checks']['sip.inbound']['status']}, answers "
            f"{result['inbound']['final']}; softphone binding untouched: "
            f"{result['softphone_binding_untouched']}"
        )
        say(f"   slowest checks in 1 (median ms): {result['full']['slowest_checks_ms']}")
        say(
            f"   SIP requests per run (Kamailio REQ lines, the softphone's left out): 1: "
            f"{result['full']['requests_per_run']['median']:g}, 2: "
            f"{result['without_new_checks']['requests_per_run']['median']:g}"
        )
        if result["full"]["causes"] or result["without_new_checks"]["causes"]:
            say(
                f"   causes 1: {result['full']['causes']}, 2: "
                f"{result['without_new_checks']['causes']}"
            )
        return result


def without_softphone(work: Path, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    with InboundBed.start(work / "nophone", route_users=True, softphones=0) as bed:
        bench = Bench(bed, work / "data-nophone")
        (own,) = series(bench, runs, bench.args())
        idle_args = bench.args("--idle", str(IDLE), "--timeout", f"{IDLE_TIMEOUT:g}")
        (idle,) = series(bench, runs, idle_args)
        left = bed.bindings()
        result: dict[str, Any] = {
            "own_binding": describe(own, NEW_CHECKS),
            "own_binding_inbound_requests": inbound_requests(own),
            "own_binding_inbound": inbound_answers(own),
            "idle": describe(idle, ("net.idle", *NEW_CHECKS)),
            "idle_budget_s": IDLE_TIMEOUT + 0.5,
            "idle_within_budget": all(r.wall <= IDLE_TIMEOUT + 0.5 for r in idle),
            "bindings_left": len(left),
        }
        say(f"-- no softphone registered (own-binding path), {runs} runs --")
        say(row("3. full check, udp+tcp, no audio", result["own_binding"]["wall_s"], "s"))
        for cid in NEW_CHECKS:
            say(
                row(
                    f"   {cid} duration_ms",
                    result["own_binding"]["checks"][cid]["duration_ms"],
                    "ms",
                )
            )
        say(
            row(
                "   sip.inbound requests (REGISTER+OPTIONS+un-REGISTER)",
                result["own_binding_inbound_requests"]["total"],
                "",
            )
        )
        say(
            f"   verdicts: {result['own_binding']['verdicts']}; causes "
            f"{result['own_binding']['causes']}; sip.inbound "
            f"{result['own_binding']['checks']['sip.inbound']['status']} "
            f"mode {result['own_binding_inbound']['modes']}, answers "
            f"{result['own_binding_inbound']['final']}"
        )
        say(
            row(
                "   request at our socket after (arrived.after_ms)",
                result["own_binding_inbound"]["arrived_after_ms"],
                "ms",
            )
        )
        say(f"   slowest checks (median ms): {result['own_binding']['slowest_checks_ms']}")
        say(f"   last run: {json.dumps(result['own_binding_inbound']['last'])}")
        say(
            row(
                f"4. same with --idle {IDLE} --timeout {IDLE_TIMEOUT:g}",
                result["idle"]["wall_s"],
                "s",
                f"(<= {IDLE_TIMEOUT + 0.5:g} s)",
            )
        )
        say(
            row(
                "   net.idle duration_ms", result["idle"]["checks"]["net.idle"]["duration_ms"], "ms"
            )
        )
        say(
            f"   verdicts: {result['idle']['verdicts']}; net.idle "
            f"{result['idle']['checks']['net.idle']['status']}; causes {result['idle']['causes']}; "
            f"every run within budget: {result['idle_within_budget']}; bindings left after all "
            f"runs: {result['bindings_left']}"
        )
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="counted runs of each command (>= 5)")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON summary")
    opts = ap.parse_args()
    if opts.runs < 5:
        ap.error("--runs must be at least 5 (a median and a spread)")
    if os.geteuid() != 0:
        sys.exit("bench_inbound.py needs root (network namespaces, nftables)")

    def say(line: str) -> None:
        if not opts.json_only:
            print(line, flush=True)

    try:
        with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
            work = Path(tmp)
            summary = {
                "runs": opts.runs,
                "with_softphone": with_softphone(work, opts.runs, say),
                "without_softphone": without_softphone(work, opts.runs, say),
            }
    except KeyboardInterrupt:  # the beds' namespaces and processes are gone by now
        sys.exit("bench_inbound.py: interrupted; namespaces and processes removed")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
