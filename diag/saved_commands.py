"""`sipdiag report` and `sipdiag bundle`: work on a saved report, never run checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diag.environment import Environment, use_color, write_report_file, write_text
from diag.errors import SipdiagError, UsageError
from diag.saved import load_report, newest_report
from diag.timeline_report import looks_like_timeline

REPORT_FORMATS = ("text", "md", "html", "json")


def run_report_command(
    env: Environment,
    path: Path | None,
    fmt: str | None,
    out: str | None,
    log: Path | None = None,
    columns: Sequence[str] = (),
    tz: str = "UTC",
) -> int:
    from diag.render import Marks, format_for_path, render

    if fmt is not None and fmt not in REPORT_FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of {', '.join(REPORT_FORMATS)}")
    source = path or newest_report()
    fmt = fmt or (format_for_path(out, "text") if out else "text")
    if looks_like_timeline(source):
        text = _render_timeline(source, fmt, log, columns, tz)
    elif log is not None:
        raise UsageError(
            "--log goes with a timeline", "use `sipdiag match --log EXPORT REPORT` for reports"
        )
    else:
        report = load_report(source)
        marks = Marks.for_encoding("utf-8" if out else getattr(env.stdout, "encoding", None))
        color = out is None and fmt == "text" and use_color(env.stdout, env.environ)
        try:
            text = render(report, fmt, marks, color)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UsageError(
                f"report {source} is malformed ({type(exc).__name__}: {exc})",
                "give the report exactly as `sipdiag check` wrote it",
            ) from None
    if out is None:
        if not write_text(env.stdout, text):
            raise SipdiagError("cannot write to standard output", "use --out FILE")
        return 0
    target = Path(out).expanduser()
    if target.is_dir() or not target.resolve().parent.is_dir():
        raise UsageError(f"cannot write --out {out}", "give a file in an existing directory")
    try:
        write_report_file(target, text)
    except OSError as exc:
        raise SipdiagError(
            f"cannot write --out {out}: {exc.strerror or exc}", "choose another --out path"
        ) from None
    write_text(env.stderr, f"sipdiag: report written to {out}\n")
    return 0


def _render_timeline(
    source: Path, fmt: str, log: Path | None, columns: Sequence[str], tz: str
) -> str:
    """A watch timeline (issue 18) summarised: its lines read, checked and rendered; with
    ``log``, the export's failure rows `match` pairs with it are drawn on it."""
    from diag.render.timeline import render_timeline
    from diag.timeline_report import HINT, load_timeline, summarise

    lines = load_timeline(source)
    paired = _paired_rows(source, lines, log, columns, tz) if log is not None else None
    summary = summarise(lines, paired)
    if summary["first_t"] is None:
        raise UsageError(f"timeline {source} has no line valid against timeline format v1", HINT)
    return render_timeline(summary, fmt)


def _paired_rows(
    source: Path, lines: Sequence[Mapping[str, Any]], log: Path, columns: Sequence[str], tz: str
) -> list[dict[str, Any]]:
    from diag.lifecycle import interruptible
    from diag.logs.log_export import parse_column_options
    from diag.logs.match import run_match
    from diag.logs.timeline_match import timeline_rows

    watches = {str(x["watch_id"]) for x in lines if x.get("type") == "start"}
    with interruptible():
        result = run_match(log, [source], parse_column_options(list(columns)), 4 * 3600, tz)
        try:
            return [row for w in sorted(watches) for row in timeline_rows(result, w)]
        finally:
            result.con.close()


def run_bundle_command(env: Environment, path: Path | None, out: str | None, redact: bool) -> int:
    from diag.bundle import build_bundle

    source = path or newest_report()
    report = load_report(source)
    target = Path(out).expanduser() if out else Path(f"{source.stem}-bundle.zip")
    if target.is_dir() or not target.resolve().parent.is_dir():
        raise UsageError(
            f"cannot write --out {target}", "give a .zip file in an existing directory"
        )
    try:
        result = build_bundle(report, source, target, redact=redact)
    except OSError as exc:
        raise SipdiagError(
            f"cannot write the bundle {target}: {exc.strerror or exc}", "choose another --out path"
        ) from None
    for note in result.notes:
        write_text(env.stderr, f"sipdiag: note: {note}\n")
    state = "redacted" if redact else "not redacted: contains hostname, user name and addresses"
    write_text(
        env.stderr,
        f"sipdiag: bundle written to {target} ({', '.join(result.files)}; {state})\n",
    )
    return 0
