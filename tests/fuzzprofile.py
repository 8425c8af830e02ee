"""Hypothesis settings for the fuzz tests (tests/test_fuzz_*.py), chosen by SIPDIAG_FUZZ_PROFILE.

"ci" (the default): a short, reproducible run (derandomize: the same examples every time, so a
CI failure replays locally). "bench": bench/bench_fuzz.py's long run, random examples, in rounds.
Every example must finish within the deadline: that is the "bounded time" of issue 16.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, Phase, settings

PROFILE_ENV = "SIPDIAG_FUZZ_PROFILE"
ROUND_ENV = "SIPDIAG_FUZZ_ROUND"  # bench/bench_fuzz.py's examples per run
DEADLINE = timedelta(milliseconds=500)  # per example, for the pure parsers
SLOW_DEADLINE = timedelta(seconds=5)  # per example, for what reads a file through DuckDB

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=DEADLINE,
    print_blob=True,
)
settings.register_profile(
    "bench",
    max_examples=int(os.environ.get(ROUND_ENV, "100000")),  # one Hypothesis run: a round
    derandomize=False,
    database=None,
    deadline=DEADLINE,
    phases=(Phase.generate, Phase.target, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


def slow(divisor: int = 10) -> settings:
    """Settings for tests that open files or DuckDB: a tenth of the profile's examples."""
    return settings(
        max_examples=max(10, settings().max_examples // divisor),
        deadline=SLOW_DEADLINE,
        suppress_health_check=[HealthCheck.too_slow],
    )
