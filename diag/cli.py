"""The `sipdiag` command line: one error boundary, one exit-code enum, no tracebacks for users."""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from diag import __version__
from diag.environment import Environment
from diag.errors import ExitCode, Interrupted, SipdiagError, UsageError
from diag.lifecycle import (
    exit_process,
    forget_interrupt,
    interrupt_received,
    interruptible,
    is_interrupt,
)
from diag.render.safe import neutralise, neutralise_lines
from diag.scrub import scrub_sip
from diag.settings import SETTINGS, Setting

# pretty_exceptions off: rich tracebacks print locals, and locals hold the password.
# Shell completion: `sipdiag --install-completion` / `--show-completion` (typer).
app = typer.Typer(
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Diagnose why calls to a contact-centre softphone fail (SIP 403 and friends).",
)


# check and watch take --debug from the settings table; every other command takes this one, so
# the boundary's "re-run with --debug" hint works whatever broke. run_cli reads it from argv.
Debug = Annotated[
    bool, typer.Option("--debug", help="Show the traceback if sipdiag itself breaks.")
]


def _env(ctx: typer.Context) -> Environment:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Environment) else Environment()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sipdiag {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Diagnose why calls to a contact-centre softphone fail (SIP 403 and friends)."""


@app.command()
def check(ctx: typer.Context, profile: Path | None = None, **options: Any) -> None:
    """Run the checks and write the report (always also saved under the user data directory)."""
    from diag.check_command import run_check_command
    from diag.config import given_flags

    raise typer.Exit(run_check_command(_env(ctx), profile, given_flags(options)))


def _check_signature() -> inspect.Signature:
    """--profile, then one option per setting, in the table's order (diag/settings.py)."""
    profile = typer.Option(help="TOML profile; flags override it.")
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter(
            "profile",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[Path | None, profile],
        ),
    ]
    return inspect.Signature([*params, *(_option(s) for s in SETTINGS)])


def _option(s: Setting) -> inspect.Parameter:
    annotation: Any
    if s.kind == "switch":
        decls = [s.flag, s.short] if s.short else [s.flag]
        annotation = Annotated[bool, typer.Option(*decls, help=s.help)]
        default: bool | None = False
    else:
        value: Any = list[str] if s.repeatable or s.once else float if s.kind == "number" else str
        annotation = Annotated[value | None, typer.Option(metavar=s.metavar, help=s.help)]
        default = None
    return inspect.Parameter(
        s.parameter, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


check.__signature__ = _check_signature()  # type: ignore[attr-defined]


# The check's settings `watch` has no use for: its --out is the timeline, and opt-in actions
# must not repeat every interval (a profile naming them is refused, diag/watch.py).
WATCH_EXCLUDED = frozenset(
    {"out", "format", "fail_on", "inbound_call", "idle", "dial_test", "dial_max_duration"}
    | {"play_tone"}
)


@app.command()
def watch(ctx: typer.Context, profile: Path | None = None, **options: Any) -> None:
    """Follow this machine through a shift: a light set of checks every --interval, each
    sample and each change between samples (registration lost, headset removed, address
    changed, sleep...) appended to a timeline (JSON Lines; `sipdiag report TIMELINE.jsonl`).
    The softphone's registration is only queried; a binding of our own is kept only while no
    other exists (or with --register-binding) and removed on SIGTERM/Ctrl-C (exit 0/130)."""
    from diag.config import SETTINGS as ALL
    from diag.watch import run_watch_command

    flags = {s.name: s.given(options[s.parameter]) for s in ALL if s.name not in WATCH_EXCLUDED}
    raise typer.Exit(
        run_watch_command(
            _env(ctx),
            profile,
            flags,
            options["interval"],
            options["duration"],
            options["until"],
            options["out"],
        )
    )


def _watch_signature() -> inspect.Signature:
    own = [
        _plain("interval", float, "S", "Seconds between samples [default: 60; at least 0.2]."),
        _plain("duration", str, "D", "Stop after this long (8h, 90m) [default: until Ctrl-C]."),
        _plain("until", str, "TIME", "Stop at this time: HH:MM local, or RFC 3339."),
        _plain("out", str, "FILE.jsonl", "The timeline [default: a new file under the data dir]."),
    ]
    base = list(_check_signature().parameters.values())
    kept = [p for p in base if p.name not in WATCH_EXCLUDED]
    return inspect.Signature([*kept, *own])


def _plain(name: str, kind: Any, metavar: str, help: str) -> inspect.Parameter:
    annotation = Annotated[kind | None, typer.Option(metavar=metavar, help=help)]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


watch.__signature__ = _watch_signature()  # type: ignore[attr-defined]


@app.command("checks")
def list_checks(ctx: typer.Context, debug: Debug = False) -> None:
    """List the registered checks: id, title and what each needs."""
    from diag.render import render_checks_table

    _env(ctx).stdout.write(render_checks_table(_env(ctx).checks()))


@app.command()
def schema(
    ctx: typer.Context,
    timeline: Annotated[
        bool, typer.Option("--timeline", help="The schema of one timeline line instead.")
    ] = False,
    debug: Debug = False,
) -> None:
    """Print the JSON Schema of the report (contract v1), or of a timeline line."""
    import json

    if timeline:
        from diag.timeline import schema as timeline_schema

        _env(ctx).stdout.write(json.dumps(timeline_schema(), indent=2) + "\n")
        return
    from diag.report import schema as report_schema

    _env(ctx).stdout.write(json.dumps(report_schema(), indent=2) + "\n")


@app.command()
def explain(
    ctx: typer.Context,
    status: Annotated[list[str], typer.Argument(help="Platform statuses, e.g. 'SIP 403'.")],
    format: Annotated[str, typer.Option(metavar="text|json", help="Output format.")] = "text",
    debug: Debug = False,
) -> None:
    """Explain what a platform call-offer status means and what to check next."""
    from diag.logs.explain import lookup, suggestions
    from diag.render.explain import render_explanation

    env = _env(ctx)
    _choose("--format", format, ("text", "json"))
    entries = []
    for text in status:
        entry = lookup(text)
        if entry is None:
            close = suggestions(text)
            raise UsageError(
                f"unknown status '{text}'",
                "did you mean " + " or ".join(f"'{s}'" for s in close)
                if close
                else "quote the status as the platform shows it, e.g. 'SIP 403 Forbidden'",
            )
        entries.append((text, entry))
    env.stdout.write(render_explanation(entries, {c.family for c in env.checks()}, format))


def _choose(flag: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"unknown {flag} '{value}'", f"use one of {', '.join(allowed)}")


@app.command()
def match(
    ctx: typer.Context,
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT_TIMELINE_OR_DIR",
            help="Reports, watch timelines (.jsonl) or directories of them.",
            show_default=False,
        ),
    ],
    log: Annotated[
        Path,
        typer.Option(
            metavar="EXPORT",
            help="Central-log export: CSV (any delimiter; UTF-8, Windows-1252 or UTF-16) or "
            "JSON Lines, .gz ok.",
        ),
    ],
    column: Annotated[
        list[str] | None,
        typer.Option(metavar="FIELD=NAME", help="Column for time|agent|status|call_id|number."),
    ] = None,
    window: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Nearest report within this, before or after (4h, 90m)."
        ),
    ] = "4h",
    tz: Annotated[
        str, typer.Option(metavar="TZ", help="Time zone of naive log timestamps (IANA name).")
    ] = "UTC",
    format: Annotated[
        str, typer.Option(metavar="text|json|csv|md", help="Output format.")
    ] = "text",
    debug: Debug = False,
) -> None:
    """Match a platform's log export to agents' reports and timelines: each failure explained."""
    from diag.logs.log_export import parse_column_options
    from diag.logs.match import parse_duration, resource_errors, run_match
    from diag.render.match import write_match

    _choose("--format", format, ("text", "json", "csv", "md"))
    with interruptible():  # its temporary files and its parsing thread go with it
        columns = parse_column_options(column or [])
        result = run_match(log, reports, columns, parse_duration(window), tz)
        with resource_errors(log, "the output"):
            write_match(result, format, _env(ctx).stdout)
    _env(ctx).kept = result


@app.command()
def fleet(
    ctx: typer.Context,
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT_TIMELINE_OR_DIR",
            help="Reports, watch timelines (.jsonl) or directories of them.",
            show_default=False,
        ),
    ],
    format: Annotated[
        str, typer.Option(metavar="text|json|md|prom|ndjson", help="Output format.")
    ] = "text",
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="Only reports started at/after DATE (or 7d: ago)."),
    ] = None,
    debug: Debug = False,
) -> None:
    """Summarise many reports and timelines: verdicts, causes, uptime; Prometheus or ECS."""
    from diag.logs.fleet import parse_since, run_fleet
    from diag.render.fleet import render_fleet

    _choose("--format", format, ("text", "json", "md", "prom", "ndjson"))
    with interruptible():
        summary = run_fleet(
            reports, parse_since(since) if since else None, format in ("json", "ndjson")
        )
    _env(ctx).stdout.write(render_fleet(summary, format))


@app.command()
def report(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[REPORT.json|TIMELINE.jsonl]",
            help="A saved JSON report, or a watch timeline [default: the newest saved report].",
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="text, md, html or json [default: by --out, else text]."),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Write here instead of stdout.")] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            metavar="EXPORT",
            help="With a timeline: a central-log export whose failures `match` pairs with it.",
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(metavar="FIELD=NAME", help="With --log: as for `sipdiag match`."),
    ] = None,
    tz: Annotated[
        str, typer.Option(metavar="TZ", help="With --log: time zone of naive log timestamps.")
    ] = "UTC",
    debug: Debug = False,
) -> None:
    """Re-render a saved report, or summarise a watch timeline, for people (Markdown or HTML)."""
    from diag.saved_commands import run_report_command

    raise typer.Exit(run_report_command(_env(ctx), path, format, out, log, column or (), tz))


@app.command()
def bundle(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[REPORT.json]", help="A saved JSON report [default: the newest saved one]."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="The zip to write [default: <report>-bundle.zip here].")
    ] = None,
    redact: Annotated[
        bool,
        typer.Option("--redact", help="Replace hostname, user name and IP addresses by tokens."),
    ] = False,
    debug: Debug = False,
) -> None:
    """Zip a report (JSON + HTML), its scrubbed SIP trace and a manifest for a support ticket."""
    from diag.saved_commands import run_bundle_command

    raise typer.Exit(run_bundle_command(_env(ctx), path, out, redact))


def run_cli(argv: Sequence[str], env: Environment | None = None) -> int:
    """The single error boundary: every outcome becomes an ExitCode and at most one error line."""
    env = env or Environment()
    forget_interrupt()  # each command decides about its own Ctrl-C (in-process tests run many)
    argv = list(argv) or ["--help"]  # bare `sipdiag` shows the help, exit 0
    # Settings do not exist yet when an error can happen, so the boundary reads the flag itself.
    debug = "--debug" in argv
    try:
        command = typer.main.get_command(app)  # inside: Ctrl-C while typer builds it is caught
        rv = command.main(args=list(argv), prog_name="sipdiag", standalone_mode=False, obj=env)
        if rv == ExitCode.INTERRUPTED:  # also typer's silent return for a Ctrl-C while parsing
            return _interrupted(env)
        return int(rv or 0)
    except typer.Exit as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # typer's silent Exit(130) for Ctrl-C
            return _interrupted(env)
        return int(exc.exit_code)
    except SipdiagError as exc:
        if interrupt_received():  # e.g. a DuckDB error that was a Ctrl-C, read as bad input
            return _interrupted(env)
        env.stderr.write(exc.one_line() + "\n")
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(env)
    except typer.TyperException as exc:  # click's usage errors (unknown option, bad value)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        line = neutralise(" ".join(message.split()))
        env.stderr.write(f"sipdiag: error: {line} (hint: see `sipdiag --help`)\n")
        return int(ExitCode.USAGE)
    except Exception as exc:  # noqa: BLE001 - anything else is our bug, still one line
        if is_interrupt(exc):
            return _interrupted(env)
        if debug:  # no locals (they hold the password); a message from a hostile file is shown
            env.stderr.write(scrub_sip(neutralise_lines(traceback.format_exc())))
        env.stderr.write(
            f"sipdiag: error: internal error: {type(exc).__name__}: {neutralise(str(exc))} "
            "(hint: re-run with --debug and report it as a sipdiag bug)\n"
        )
        return int(ExitCode.INTERNAL)


def _interrupted(env: Environment) -> int:
    env.said_interrupted = True
    env.stderr.write(Interrupted().one_line() + "\n")
    return int(ExitCode.INTERRUPTED)


def main() -> NoReturn:
    env = Environment()
    try:
        code = run_cli(sys.argv[1:], env)
    except KeyboardInterrupt:  # a second one, while the boundary handled the first
        if not env.said_interrupted:
            _interrupted(env)
        code = int(ExitCode.INTERRUPTED)
    exit_process(code, (env.stdout, env.stderr), kept=env.kept, abandoned=env.abandoned)
