"""`sipdiag report` and `sipdiag bundle`: work on a saved report, never run checks."""

from __future__ import annotations

from pathlib import Path

from diag.environment import Environment, use_color, write_report_file, write_text
from diag.errors import SipdiagError, UsageError
from diag.saved import load_report, newest_report
from diag.timeline_report import looks_like_timeline

REPORT_FORMATS = ("text", "md", "html", "json")


def run_report_command(
    env: Environment, path: Path | None, fmt: str | None, out: str | None
) -> int:
    from diag.render import Marks, format_for_path, render

    if fmt is not None and fmt not in REPORT_FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of {', '.join(REPORT_FORMATS)}")
    source = path or newest_report()
    fmt = fmt or (format_for_path(out, "text") if out else "text")
    if looks_like_timeline(source):
        text = _render_timeline(source, fmt)
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


def _render_timeline(source: Path, fmt: str) -> str:
    """A watch timeline (issue 18) summarised: its lines read, checked and rendered."""
    from diag.render.timeline import render_timeline
    from diag.timeline_report import HINT, load_timeline, summarise

    summary = summarise(load_timeline(source))
    if summary["first_t"] is None:
        raise UsageError(f"timeline {source} has no line valid against timeline format v1", HINT)
    return render_timeline(summary, fmt)


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
