"""Loading a permitted-numbers policy: 4,000 and 20,000 numbers (and as many prefixes), then one
evaluation. Hardening issue: loading was quadratic (6-9 s at 4,000, over 120 s at 20,000).

Usage: python bench/bench_policy.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag.policy import NumberFacts, evaluate, load_policy  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in (4_000, 20_000):
            numbers = ", ".join(f'"+4420{i:07d}"' for i in range(n))
            prefixes = ", ".join(f'"+44{i:06d}"' for i in range(n))
            path = Path(tmp) / f"policy-{n}.toml"
            path.write_text(f'default = "deny"\n[allow]\nnumbers = [{numbers}]\n'
                            f"prefixes = [{prefixes}]\n")  # fmt: skip
            loads, evals = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                policy = load_policy(path)
                loads.append(time.perf_counter() - t0)
                facts = NumberFacts(e164="+440000421234", country="GB", type="fixed_line")
                t0 = time.perf_counter()
                evaluate(policy, facts)
                evals.append(time.perf_counter() - t0)
            print(
                f"{n} numbers + {n} prefixes: load median {statistics.median(loads):.3f} s "
                f"(max {max(loads):.3f}), evaluate median {statistics.median(evals) * 1e6:.0f} µs"
            )


if __name__ == "__main__":
    main()
