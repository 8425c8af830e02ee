"""What a check is given: its settings, the run's id and User-Agent, the environment, clocks,
its deadline, the results of the checks it runs after, and the file the SIP trace goes to.

Checks receive everything through this object (httpie's `Environment` idea), so tests swap
the boundaries instead of patching module internals. `Check` is the registry's record of a check
(a function of a Context); `CheckRun` is a check with the result the run kept.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diag.config import Settings
from diag.model import CheckResult
from diag.settings import Requirement


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def no_note(text: str) -> None:
    """Context.note when nobody shows progress (quiet runs, tests)."""


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
    # Set by the runner on Ctrl-C/SIGTERM: a check that waits long (net.idle) stops waiting,
    # removes what it registered and returns what it measured, within CLEANUP_GRACE.
    stop: threading.Event = field(default_factory=threading.Event)
    # A long wait's progress for stderr ("net.idle: idle 90 s: 41 s left"); checks never print.
    note: Callable[[str], None] = no_note
    # `sipdiag watch` (issue 18): sip.register only queries (the watch keeps any binding of
    # ours itself), and sip.inbound uses ``held``, the watch's binding, instead of making one.
    watching: bool = False
    held: Any = None  # checks.sip.held.HeldBinding | None (diag may not import checks)

    def remaining(self) -> float:
        """Seconds left before this check's deadline (never negative)."""
        return max(0.0, self.deadline - self.monotonic())

    def for_check(self, deadline: float, results: Mapping[str, CheckResult]) -> Context:
        return replace(self, deadline=deadline, results=dict(results))


@dataclass(frozen=True)
class Check:
    """A registered probe: stable id, a title phrased as the healthy state, and run(ctx)."""

    id: str
    title: str
    run: Callable[[Context], CheckResult]
    needs: str = "nothing"  # what the user must configure, shown by `sipdiag checks`
    requires: tuple[Requirement, ...] = ()  # settings that must be set, else skip "no X configured"
    after: tuple[str, ...] = ()  # checks whose results this one reads (ctx.results)
    timeout: float | None = 5.0  # own deadline (s), capped by --timeout; None = the whole budget
    uses_sip: bool = False  # registers with the SIP password (resolved before the run)

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class CheckRun:
    """A check's result as the run recorded it."""

    check: Check
    result: CheckResult
