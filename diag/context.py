"""What a check is given: its settings, the run's id and User-Agent, the environment, clocks,
its deadline, the results of the checks it runs after, and the file the SIP trace goes to.

Checks receive everything through this object (httpie's `Environment` idea), so tests swap
the boundaries instead of patching module internals.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from diag.config import Settings
from diag.model import CheckResult


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Context:
    settings: Settings
    run_id: str
    user_agent: str
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    now: Callable[[], dt.datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    # Results of the checks named in Check.after, filled in by the runner before the check starts.
    results: Mapping[str, CheckResult] = field(default_factory=dict)
    deadline: float = float("inf")  # monotonic time by which this check must return
    sip_log: Path | None = None  # where the SIP worker appends the run's scrubbed SIP trace

    def remaining(self) -> float:
        """Seconds left before this check's deadline (never negative)."""
        return max(0.0, self.deadline - self.monotonic())

    def for_check(self, deadline: float, results: Mapping[str, CheckResult]) -> Context:
        return replace(self, deadline=deadline, results=dict(results))
