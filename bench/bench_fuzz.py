"""The fuzz properties of tests/test_fuzz_*.py at length (issue 16): each property runs until it
has tried --examples examples or used --seconds, whichever comes first, in rounds of --round
random examples (the "bench" profile of tests/fuzzprofile.py: not derandomized, same deadline).
A failing round stops that property and prints Hypothesis's shrunk example and the error.

Usage: python bench/bench_fuzz.py [--examples 100000] [--seconds 600] [--round 2000] [-k NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
ROUND = 2_000  # examples per Hypothesis run (a tenth to a half of it for the file tests)


def properties() -> list[tuple[str, Callable[..., None]]]:
    import test_fuzz_inputs
    import test_fuzz_wire

    return [
        (f"{module.__name__.removeprefix('test_fuzz_')}.{name.removeprefix('test_')}", fn)
        for module in (test_fuzz_wire, test_fuzz_inputs)
        for name, fn in vars(module).items()
        if name.startswith("test_") and hasattr(fn, "hypothesis")
    ]


def run(fn: Callable[..., None], examples: int, seconds: float) -> tuple[int, float, str]:
    """(examples run, seconds, "" or the failure): rounds until either budget is spent."""
    count = 0
    inner = fn.hypothesis.inner_test  # type: ignore[attr-defined]

    def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        inner(*args, **kwargs)

    fn.hypothesis.inner_test = counted  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    try:
        while count < examples and time.perf_counter() - t0 < seconds:
            before = count
            fn()
            if count == before:  # the strategy has nothing left to try
                break
    except Exception as exc:  # the property failed: report it, go on with the next
        text = "".join(traceback.format_exception_only(exc)).strip()
        return count, time.perf_counter() - t0, text
    finally:
        fn.hypothesis.inner_test = inner  # type: ignore[attr-defined]
    return count, time.perf_counter() - t0, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="per property")
    parser.add_argument("--seconds", type=float, default=600.0, help="per property")
    parser.add_argument("--round", type=int, default=ROUND, help="examples per Hypothesis run")
    parser.add_argument("-k", default="", help="only properties whose name contains this")
    args = parser.parse_args()
    # Read when tests/fuzzprofile.py is imported (by properties()).
    os.environ["SIPDIAG_FUZZ_PROFILE"] = "bench"
    os.environ["SIPDIAG_FUZZ_ROUND"] = str(args.round)
    rows = []
    for name, fn in properties():
        if args.k not in name:
            continue
        n, took, failure = run(fn, args.examples, args.seconds)
        rate = n / took if took else 0.0
        rows.append((name, n, took, rate, failure))
        status = "FAIL" if failure else "ok"
        print(f"{name:<72} {n:>8} ex {took:>7.1f} s {rate:>8.0f}/s  {status}", flush=True)
        if failure:
            print("    " + failure.replace("\n", "\n    "), flush=True)
    total = sum(r[1] for r in rows)
    print(f"\n{len(rows)} properties, {total} examples, {sum(r[2] for r in rows):.0f} s, "
          f"{sum(1 for r in rows if r[4])} failing")  # fmt: skip
    short = [r for r in rows if r[1] < args.examples and not r[4]]
    for name, n, _took, rate, _ in short:
        need = args.examples / rate if rate else float("inf")
        print(f"  {name}: {n} of {args.examples} examples; all of them would take ~{need:.0f} s")


if __name__ == "__main__":
    main()
