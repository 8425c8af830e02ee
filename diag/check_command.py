"""`sipdiag check`: settings -> run -> diagnosis -> report files -> exit code."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diag.config import Settings, build_settings, resolve_password
from diag.context import Check, Context, no_note
from diag.environment import Environment, isatty, use_color, write_report_file, write_text
from diag.errors import ExitCode, SipdiagError, UsageError
from diag.lifecycle import sigint_ignored, sigterm_as_interrupt
from diag.progress import PlainNotes, TerminalProgress
from diag.render import Marks, format_for_path, render
from diag.report import (
    build,
    reports_dir,
    saved_report_path,
    sip_log_path,
    to_json,
    user_agent,
    write_atomic,
)
from diag.runner import RunOutcome, run_checks, select_checks


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
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(f"--out {out} is a directory", "give a file name such as report.json")
    if not path.resolve().parent.is_dir():
        raise UsageError(
            f"cannot write --out {out}: directory {path.resolve().parent} does not exist",
            "create the directory or choose another --out path",
        )


def run_check_command(env: Environment, profile: Path | None, flags: Mapping[str, Any]) -> int:
    settings = build_settings(profile, flags)
    selected: list[Check] = select_checks(env.checks(), settings.only, settings.skip)
    _check_out_path(settings.out)
    if settings.policy and any(c.id == "number.policy" for c in selected):
        from diag.policy import load_policy

        load_policy(Path(settings.policy))  # a malformed policy stops the run here, with its line
    # Only a SIP check that will really run asks for the password (no prompt for a skipped one).
    if any(c.uses_sip and all(r.is_set(settings) for r in c.requires) for c in selected):
        settings = resolve_password(settings, env.environ, env.stdin_isatty)

    run_id = str(uuid.uuid4())
    marks = Marks.for_encoding(getattr(env.stdout, "encoding", None))
    stderr_marks = Marks.for_encoding(getattr(env.stderr, "encoding", None))
    show_progress = not settings.quiet and (
        isatty(env.stderr) or (settings.format == "text" and isatty(env.stdout))
    )
    progress = (
        TerminalProgress(
            env.stderr, selected, stderr_marks, use_color(env.stderr, env.environ), write_text
        )
        if show_progress
        else None
    )
    note = progress.note if progress is not None else no_note
    if progress is None and not settings.quiet:
        note = PlainNotes(env.stderr, write_text)
    ctx = Context(
        settings=settings,
        run_id=run_id,
        user_agent=user_agent(run_id),
        environ=env.environ,
        sip_log=_pending_sip_log(run_id),
        note=note,
    )

    sigterm_as_interrupt()  # fleet tools stop runs with SIGTERM: the report is kept
    try:
        outcome = run_checks(selected, ctx, settings.timeout, progress)
    finally:
        if progress is not None:
            progress.close()
    # From here on the report must get written: a second Ctrl-C waits for it.
    with sigint_ignored():
        env.abandoned.extend(outcome.abandoned)
        report, problem = _finish(env, settings, run_id, outcome, marks, ctx.sip_log)
    if problem is not None:
        raise problem
    return int(exit_code(report, settings.fail_on))


def _finish(
    env: Environment,
    settings: Settings,
    run_id: str,
    outcome: RunOutcome,
    marks: Marks,
    sip_log: Path | None,
) -> tuple[dict[str, Any], SipdiagError | None]:
    """Build the report and write it everywhere it goes; one failed output never stops the
    others. Returns the first output problem to report after everything was attempted."""
    from diag.diagnosis import diagnose, verdict

    findings = diagnose(outcome.runs)
    report = build(
        run_id=run_id,
        settings=settings,
        runs=outcome.runs,
        findings=findings,
        verdict=verdict(findings),
        host=host_section(env.environ),
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        duration_ms=outcome.duration_ms,
        complete=outcome.complete,
    )
    problems: list[SipdiagError] = []
    saved = saved_report_path(run_id, outcome.started_at)
    try:
        write_atomic(saved, to_json(report))
        _keep_sip_log(sip_log, saved)
        if not settings.quiet:
            write_text(env.stderr, f"sipdiag: report saved to {saved}\n")
    except OSError as exc:
        problems.append(
            SipdiagError(
                f"cannot save the report under {saved.parent}: {exc.strerror or exc}",
                "make that directory writable or point XDG_DATA_HOME elsewhere",
            )
        )
    if settings.out:
        try:
            write_report_file(
                Path(settings.out).expanduser(),
                render(report, format_for_path(settings.out, settings.format), marks),
            )
            if not settings.quiet:
                write_text(env.stderr, f"sipdiag: report written to {settings.out}\n")
        except OSError as exc:
            problems.append(
                SipdiagError(
                    f"cannot write --out {settings.out}: {exc.strerror or exc}",
                    "choose another --out path",
                )
            )
    color = settings.format == "text" and use_color(env.stdout, env.environ)
    if not write_text(env.stdout, render(report, settings.format, marks, color)):
        problems.append(
            SipdiagError(
                "cannot write the report to standard output",
                f"use --out FILE; the report is saved at {saved}",
            )
        )
    if settings.debug:
        for r in outcome.runs:
            if r.result.traceback:
                write_text(env.stderr, f"--- traceback of {r.check.id}\n{r.result.traceback}")
    return report, problems[0] if problems else None


def _pending_sip_log(run_id: str) -> Path | None:
    """The SIP worker appends the run's trace here; it is renamed next to the report once the
    report is saved. None when the reports directory cannot be made (the run goes on)."""
    try:
        directory = reports_dir()
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory / f".sipdiag-{run_id}.sip.log.part"


def _keep_sip_log(pending: Path | None, saved: Path) -> None:
    if pending is None:
        return
    try:
        os.replace(pending, sip_log_path(saved))
    except FileNotFoundError:
        pass  # no pjsua2 REGISTER in this run: nothing was traced


def host_section(environ: Mapping[str, str]) -> dict[str, Any]:
    """The report's host section; without psutil it still names the machine."""
    from checks import describe_host, describe_host_minimal

    try:
        return describe_host(environ)
    except Exception:  # noqa: BLE001 - e.g. psutil missing: the host checks say so themselves
        return describe_host_minimal(environ)
