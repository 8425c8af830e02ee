"""`sipdiag check`: settings -> run -> diagnosis -> report files -> exit code."""

from __future__ import annotations

import signal
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.config import Settings, _host_of, build_settings, resolve_password
from diag.context import Context
from diag.errors import ExitCode, SipdiagError, UsageError
from diag.model import Check, CheckResult
from diag.render import Marks, format_for_path, progress_line, render
from diag.report import build, saved_report_path, to_json, user_agent, write_atomic
from diag.runner import RunOutcome, run_checks, select_checks

if TYPE_CHECKING:
    from diag.cli import Environment


def exit_code(report: Mapping[str, Any], fail_on: str) -> ExitCode:
    """Computed from the results and findings only."""
    if not report["complete"]:
        return ExitCode.INTERRUPTED
    statuses = {c["status"] for c in report["checks"]}
    severities = {f["severity"] for f in report["findings"]}
    if statuses & {"fail", "error"} or "critical" in severities:
        return ExitCode.CHECKS_FAILED
    if fail_on == "warn" and ("warn" in statuses or "warning" in severities):
        return ExitCode.CHECKS_FAILED
    return ExitCode.OK


def _check_out_path(out: str | None) -> None:
    if out is None:
        return
    parent = Path(out).expanduser().resolve().parent
    if not parent.is_dir():
        raise UsageError(
            f"cannot write --out {out}: directory {parent} does not exist",
            "create the directory or choose another --out path",
        )
    if Path(out).is_dir():
        raise UsageError(f"--out {out} is a directory", "give a file name such as report.json")


def run_check_command(env: Environment, profile: Path | None, flags: Mapping[str, Any]) -> int:
    settings = build_settings(profile, flags)
    selected: list[Check] = select_checks(env.checks(), settings.only, settings.skip)
    _check_out_path(settings.out)
    if any(c.uses_sip for c in selected):
        settings = resolve_password(settings, env.environ, env.stdin_isatty)

    run_id = str(uuid.uuid4())
    stack = None
    if any(c.uses_sip for c in selected):
        from diag.sipstack import SipStack

        stack = SipStack(user_agent(run_id), settings.timeout, _host_of(settings.registrar))
    ctx = Context(
        settings=settings,
        run_id=run_id,
        user_agent=user_agent(run_id),
        environ=env.environ,
        sip_stack=stack,
    )

    marks = Marks.for_encoding(getattr(env.stdout, "encoding", None))
    show_progress = settings.format == "text" and _isatty(env.stdout)

    def progress(event: str, check: Check, result: CheckResult | None) -> None:
        status = result.status.value if result else None
        env.stderr.write("\r\033[K" + progress_line(event, check, status, marks))
        env.stderr.flush()

    _sigterm_as_interrupt()
    outcome = run_checks(selected, ctx, settings.timeout, progress if show_progress else None)
    if show_progress:
        env.stderr.write("\r\033[K")
    env.abandoned.extend(outcome.abandoned)
    # From here on the report must get written: a second Ctrl-C waits for it.
    previous = _ignore_sigint()
    try:
        report = _finish(env, settings, run_id, outcome, stack, marks)
    finally:
        _restore_sigint(previous)
    return int(exit_code(report, settings.fail_on))


def _finish(
    env: Environment, settings: Settings, run_id: str, outcome: RunOutcome, stack: Any, marks: Marks
) -> dict[str, Any]:
    from checks.host import describe_host
    from diag.diagnosis import diagnose, verdict

    sip_busy = any(t.name.startswith("check:sip.") for t in outcome.abandoned)
    if stack is not None and not sip_busy:
        stack.close()  # pjsua2 objects are gone; a stuck SIP thread instead dies with the process
    findings = diagnose(outcome.runs)
    report = build(
        run_id=run_id,
        settings=settings,
        runs=outcome.runs,
        findings=findings,
        verdict=verdict(findings),
        host=describe_host(env.environ),
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        duration_ms=outcome.duration_ms,
        complete=outcome.complete,
    )
    # stdout and --out first: if the data directory is unwritable, the report still exists.
    if settings.out:
        write_atomic(
            Path(settings.out).expanduser(),
            render(report, format_for_path(settings.out, settings.format), marks),
        )
    env.stdout.write(render(report, settings.format, marks))
    if settings.debug:
        for r in outcome.runs:
            if r.result.traceback:
                env.stderr.write(f"--- traceback of {r.check.id}\n{r.result.traceback}")
    if settings.out:
        env.stderr.write(f"sipdiag: report written to {settings.out}\n")
    saved = saved_report_path(run_id, outcome.started_at)
    try:
        write_atomic(saved, to_json(report))
    except OSError as exc:
        raise SipdiagError(
            f"cannot save the report under {saved.parent}: {exc.strerror or exc}",
            "make that directory writable or point XDG_DATA_HOME elsewhere",
        ) from None
    env.stderr.write(f"sipdiag: report saved to {saved}\n")
    return report


def _sigterm_as_interrupt() -> None:
    """Fleet tools stop runs with SIGTERM: treat it like Ctrl-C so the report is kept."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if _in_main_thread():
        signal.signal(signal.SIGTERM, handler)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _ignore_sigint() -> Any:
    if sys.platform != "win32" and _in_main_thread():
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    return None


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
