"""number.* timings: the offline checks, and the test call against Kamailio and sipp on loopback.

Usage: python bench/bench_number.py [--runs N]
Figures: wall time of `sipdiag check --only number` (format + policy + identity, no server) for
1 and 20 numbers; for the test call, the whole check, and how long the call lasted on the far end
(sipp's own log: INVITE received -> CANCEL/BYE received, or the 403 sent by Kamailio's path).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers.kamailio import Kamailio  # noqa: E402
from peers.sipp import Sipp  # noqa: E402

POLICY = 'default = "deny"\n[allow]\ncountries = ["GB"]\n[deny]\ntypes = ["premium_rate"]\n'


def sipdiag(*args: str) -> tuple[float, dict]:
    env = dict(os.environ, SIPDIAG_PASSWORD="alice-secret")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "diag", "check", "--format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)


def far_end_seconds(sipp: Sipp, end: str) -> float:
    stamps: dict[str, dt.datetime] = {}
    for block in re.split(r"^-{20,} ", sipp.messages(), flags=re.M)[1:]:
        stamp, _, rest = block.partition("\n")
        start = next(line for line in rest.split("\n")[1:] if line.strip()).split()[0]
        stamps.setdefault(start, dt.datetime.fromisoformat(stamp.strip()))
    return (stamps[end] - stamps["INVITE"]).total_seconds()


def summary(name: str, values: list[float]) -> None:
    print(
        f"{name:52s} median {statistics.median(values) * 1000:7.1f} ms  "
        f"max {max(values) * 1000:7.1f} ms  (n={len(values)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.toml"
        policy.write_text(POLICY)
        from checks.number.format import describe
        from diag.policy import NumberFacts, evaluate, load_policy

        rules = load_policy(policy)
        t0 = time.perf_counter()
        describe("+442079460123", None)  # first call loads the metadata
        first = time.perf_counter() - t0
        per = []
        for i in range(200):
            t0 = time.perf_counter()
            n = describe(f"+4420794601{i % 100:02d}", None)
            evaluate(rules, NumberFacts(n["e164"], n["country"], n["type"]))
            per.append(time.perf_counter() - t0)
        print(f"in-process: first number {first * 1000:.1f} ms (metadata load)")
        summary("in-process: format + policy per number", per)
        for count in (1, 20):
            numbers = [a for i in range(count) for a in ("--number", f"+4420794601{i:02d}")]
            times = [
                sipdiag("--only", "number", "--policy", str(policy), "--user", "+442079460100",
                        *numbers)[0]
                for _ in range(runs)
            ]  # fmt: skip
            summary(f"check --only number, {count} number(s), no server", times)

        kam = Kamailio.start(Path(tmp) / "kam")
        try:
            uri = kam.registrar_uri("udp")
            times = []
            for _ in range(runs):
                took, report = sipdiag(
                    "--only", "number.dial-test", "--registrar", uri,
                    "--user", "alice", "--dial-test", "+442079460999",
                )  # fmt: skip
                assert report["checks"][0]["details"]["code"] == 403
                times.append(took)
            summary("dial-test, Kamailio 403 (whole run)", times)
            for scenario, end, extra in (
                ("dial_183_cancel.xml", "CANCEL", []),
                ("dial_200_bye.xml", "BYE", []),
                ("dial_100_only.xml", "CANCEL", ["--dial-max-duration", "1"]),
            ):
                whole, far = [], []
                for i in range(runs):
                    sipp = Sipp.start(
                        scenario, Path(tmp) / f"{scenario}-{i}", extra_args=["-m", "2"]
                    )
                    try:
                        took, _ = sipdiag("--only", "number.dial-test", "--registrar", sipp.uri,
                                          "--user", "alice", "--dial-test", "+442079460123",
                                          *extra)  # fmt: skip
                        sipp.wait(5)
                        whole.append(took)
                        far.append(far_end_seconds(sipp, end))
                    finally:
                        sipp.stop()
                summary(f"dial-test {scenario} (whole run)", whole)
                summary(f"dial-test {scenario} INVITE->{end} at sipp", far)
        finally:
            kam.stop()


if __name__ == "__main__":
    main()
