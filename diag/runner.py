"""Runs the selected checks concurrently, each under a deadline, and never lets one break the run.

The runner is the failure firewall: an exception becomes an `error` result (traceback kept for
--debug), an overrun becomes `error: timed out`, Ctrl-C stops the run with what it has so far.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from diag.context import Check, CheckRun, Context
from diag.errors import UsageError
from diag.lifecycle import forget_interrupt
from diag.model import CheckResult, Status

Progress = Callable[[str, Check, "CheckResult | None"], None]  # ("start"|"done", check, result)

# The test suite names a file here to learn which checks its tests really ran (tests/conftest.py).
# Not SIPDIAG_*: the tests' subprocess helper drops those, and `python -m diag` children need it.
RECORD_ENV = "PYTEST_SIPDIAG_RECORD"
# After Ctrl-C, how long running checks get to notice ctx.stop and clean up (un-REGISTER).
CLEANUP_GRACE = 1.5


def record_run(check_id: str, status: Status) -> None:
    """Append "<check id> <status>" to the file RECORD_ENV names, when it names one.

    Read from this process's environment, not the run's: in-process test runs pass an empty one.
    """
    path = os.environ.get(RECORD_ENV)
    if path:
        with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as record:
            record.write(f"{check_id} {status.value}\n")


def select_checks(
    registry: Sequence[Check], only: Sequence[str], skip: Sequence[str]
) -> list[Check]:
    """--only/--skip take a check id or a family prefix (audio, host, net, sip, number)."""

    def matches(check: Check, pattern: str) -> bool:
        return check.id == pattern or check.family == pattern

    for pattern in (*only, *skip):
        if not any(matches(c, pattern) for c in registry):
            known = sorted({c.family for c in registry})
            raise UsageError(
                f"no check or family named '{pattern}'",
                f"run `sipdiag checks`; families are {', '.join(known)}",
            )
    chosen = [c for c in registry if not only or any(matches(c, p) for p in only)]
    chosen = [c for c in chosen if not any(matches(c, p) for p in skip)]
    if not chosen:
        raise UsageError("--only/--skip leave no check to run", "run `sipdiag checks` for the ids")
    return chosen


@dataclass
class RunOutcome:
    runs: list[CheckRun]
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_ms: int
    complete: bool
    # Threads of checks that overran and are still inside a probe (the process must not wait).
    abandoned: list[threading.Thread] = field(default_factory=list)


@dataclass
class _Running:
    thread: threading.Thread
    started: float
    deadline: float
    box: list[CheckResult]


def _missing_setting(check: Check, ctx: Context) -> CheckResult | None:
    for needed in check.requires:
        if not needed.is_set(ctx.settings):
            setting = needed.setting
            return CheckResult(
                Status.SKIP,
                f"no {setting.label or setting.name} configured",
                {"missing_setting": setting.name},
                f"pass {setting.flag} or set {setting.name} in the profile",
            )
    return None


def _error(summary: str, hint: str, duration_ms: int, tb: str | None = None) -> CheckResult:
    return CheckResult(Status.ERROR, summary, {}, hint, duration_ms, tb)


def _invoke(check: Check, ctx: Context) -> CheckResult:
    t0 = time.monotonic()
    try:
        result = check.run(ctx)
        if not isinstance(result, CheckResult):
            raise TypeError(f"check {check.id} returned {type(result).__name__}, not CheckResult")
    except BaseException as exc:  # noqa: BLE001 - the firewall: nothing escapes a check
        ms = int((time.monotonic() - t0) * 1000)
        hint = "re-run with --debug to see the traceback, and report it as a sipdiag bug"
        if isinstance(exc, ImportError):  # a dependency missing on this machine, not our bug
            hint = f"install the missing Python package ({exc.name or exc}) with pip and re-run"
        return _error(
            f"the probe crashed: {type(exc).__name__}: {exc}", hint, ms, traceback.format_exc()
        )
    ms = int((time.monotonic() - t0) * 1000)
    return CheckResult(
        result.status, result.summary, result.details, result.hint, ms, result.traceback
    )


def run_checks(
    checks: Sequence[Check],
    ctx: Context,
    budget: float,
    progress: Progress | None = None,
    given: Mapping[str, CheckResult] | None = None,
) -> RunOutcome:
    """``given``: results from an earlier run that checks may read (`sipdiag watch` runs
    sip.inbound after it has refreshed its binding), not part of this run's outcome."""
    started_at = ctx.now()
    t0 = time.monotonic()
    run_end = t0 + budget
    selected = {c.id for c in checks}
    done: dict[str, CheckResult] = {}
    pending = list(checks)
    running: dict[str, _Running] = {}
    abandoned: list[threading.Thread] = []
    wake = threading.Condition()
    interrupted = False

    def finish(check: Check, result: CheckResult) -> None:
        done[check.id] = result
        record_run(check.id, result.status)
        if progress:
            progress("done", check, result)

    def start(check: Check) -> None:
        skip = _missing_setting(check, ctx)
        if skip is not None:
            finish(check, skip)
            return
        limit = budget if check.timeout is None else min(check.timeout, budget)
        deadline = min(time.monotonic() + limit, run_end)
        known = {**(given or {}), **done}
        deps = {d: known[d] for d in check.after if d in known}
        check_ctx = ctx.for_check(deadline, deps)
        box: list[CheckResult] = []

        def target() -> None:
            result = _invoke(check, check_ctx)
            with wake:
                box.append(result)
                wake.notify_all()

        thread = threading.Thread(target=target, name=f"check:{check.id}", daemon=True)
        running[check.id] = _Running(thread, time.monotonic(), deadline, box)
        if progress:
            progress("start", check, None)
        thread.start()

    try:
        with wake:
            while pending or running:
                for check in list(pending):
                    if all(d in done or d not in selected for d in check.after):
                        pending.remove(check)
                        start(check)
                now = time.monotonic()
                for cid, r in list(running.items()):
                    check = next(c for c in checks if c.id == cid)
                    if r.box:
                        del running[cid]
                        finish(check, r.box[0])
                    elif now >= r.deadline:
                        del running[cid]
                        abandoned.append(r.thread)
                        budget_hit = r.deadline >= run_end
                        finish(
                            check,
                            _error(
                                f"timed out after {now - r.started:.1f} s",
                                "re-run with a larger --timeout"
                                if budget_hit
                                else "the probe overran its own deadline; report it as a bug",
                                int((now - r.started) * 1000),
                            ),
                        )
                if pending and not running and time.monotonic() >= run_end:
                    for check in pending:
                        finish(
                            check,
                            _error(
                                "timed out before it could start",
                                "re-run with a larger --timeout",
                                0,
                            ),
                        )
                    pending.clear()
                if running:
                    next_deadline = min(r.deadline for r in running.values())
                    wake.wait(max(0.0, min(next_deadline - time.monotonic(), 0.25)))
    except KeyboardInterrupt:
        interrupted = True
        # Consumed here (the partial report is what follows): a later error, say the report
        # cannot be written, must be reported as itself, not as the interrupt.
        forget_interrupt()
        ctx.stop.set()
        grace_end = time.monotonic() + CLEANUP_GRACE
        for r in running.values():
            try:
                r.thread.join(max(0.0, grace_end - time.monotonic()))
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                break
        now = time.monotonic()
        for cid, r in running.items():
            if r.box:  # finished just before the signal: keep its evidence
                done[cid] = r.box[0]
                continue
            abandoned.append(r.thread)
            done[cid] = _error(
                "interrupted before it finished", "re-run the check", int((now - r.started) * 1000)
            )
        for check in pending:
            done[check.id] = _error("interrupted before it started", "re-run the check", 0)

    finished_at = ctx.now()
    runs = [CheckRun(c, done[c.id]) for c in checks]
    return RunOutcome(
        runs=runs,
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=int((time.monotonic() - t0) * 1000),
        complete=not interrupted,
        abandoned=[t for t in abandoned if t.is_alive()],
    )
