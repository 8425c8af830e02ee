"""The `sipdiag` command line: one error boundary, one exit-code enum, no tracebacks for users."""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO

import typer

from diag import __version__
from diag.errors import ExitCode, Interrupted, SipdiagError, UsageError
from diag.lifecycle import (
    exit_process,
    forget_interrupt,
    interrupt_received,
    interruptible,
    is_interrupt,
)

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


@dataclass
class Environment:
    """Process boundaries the CLI touches, swappable in tests (httpie's Environment)."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdin_isatty: bool = field(default_factory=lambda: sys.stdin is not None and sys.stdin.isatty())
    registry: Sequence[Any] | None = None  # None: checks.REGISTRY, imported lazily
    # Threads of checks that overran: the process exits without waiting for them.
    abandoned: list[threading.Thread] = field(default_factory=list)
    # Set by a command whose only remaining state is an in-memory DuckDB, which it hands over
    # here: the process exits without freeing it (`match` spends ~0.1 s tearing down its tables
    # otherwise, as soon as the command returns and drops its last reference).
    kept: Any = None
    said_interrupted: bool = False  # the one "interrupted" line is out

    def checks(self) -> Sequence[Any]:
        if self.registry is None:
            from checks import REGISTRY

            self.registry = REGISTRY
        return self.registry


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
def check(
    ctx: typer.Context,
    profile: Annotated[Path | None, typer.Option(help="TOML profile; flags override it.")] = None,
    registrar: Annotated[str | None, typer.Option(help="Registrar URI or host[:port].")] = None,
    domain: Annotated[
        str | None, typer.Option(help="SIP domain (default: registrar host).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="SIP user.")] = None,
    auth_user: Annotated[
        str | None, typer.Option(help="Digest auth user (default: --user).")
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the password [default: SIPDIAG_PASSWORD]."),
    ] = None,
    transport: Annotated[
        list[str] | None,
        typer.Option(
            metavar="udp|tcp|tls|ws|wss",
            help="udp, tcp, tls (native SIP) or ws/wss (with --ws-url); repeatable [default: udp].",
        ),
    ] = None,
    agent_id: Annotated[str | None, typer.Option(help="The agent's id in the platform.")] = None,
    number: Annotated[
        list[str] | None, typer.Option(metavar="NUMBER", help="Agent number (E.164); repeatable.")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="Permitted-numbers policy file.")] = None,
    stun: Annotated[
        list[str] | None,
        typer.Option(metavar="HOST[:PORT]", help="STUN server HOST[:PORT]; repeatable."),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Run only this check id or family.")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Skip this check id or family.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Whole-run budget in seconds [default: 10].")
    ] = None,
    format: Annotated[
        str | None, typer.Option(help="text, json, md or html [default: text].")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Also write the report here (format by extension).")
    ] = None,
    fail_on: Annotated[str | None, typer.Option(help="warn or fail [default: fail].")] = None,
    dns_server: Annotated[
        str | None, typer.Option(help="Resolve via this DNS server IP[:PORT], not the system's.")
    ] = None,
    ca: Annotated[
        str | None, typer.Option(help="PEM CA bundle that verifies the registrar's TLS cert.")
    ] = None,
    no_register: Annotated[
        bool,
        typer.Option("--no-register", help="Only OPTIONS and a challenge-only probe; no REGISTER."),
    ] = False,
    register_binding: Annotated[
        bool,
        typer.Option(
            "--register-binding",
            help="sip.register also registers a binding of its own when the account already has "
            "one. WARNING: a registrar that keeps one registration per account then replaces the "
            "softphone's, which stays off the platform until it re-registers (reported as "
            "sip.binding_replaced). Not accepted in a profile.",
        ),
    ] = False,
    probe_all_transports: Annotated[
        bool,
        typer.Option(
            "--probe-all-transports",
            help="net.sip-options also probes UDP/TCP/TLS when neither configured nor in DNS "
            "(informational).",
        ),
    ] = False,
    turn: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST[:PORT]", help="TURN server HOST[:PORT] for the media path; repeatable."
        ),
    ] = None,
    turn_user: Annotated[str | None, typer.Option(help="TURN long-term credential user.")] = None,
    turn_password_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the TURN password [default: SIPDIAG_TURN_PASSWORD]."
        ),
    ] = None,
    media: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST:PORT[-PORT]",
            help="Platform media (RTP) endpoint HOST:PORT[-PORT]; repeatable.",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(metavar="CC", help="Default region for national numbers, e.g. GB."),
    ] = None,
    dial_test: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NUMBER",
            help="Place ONE test call to NUMBER through the registered account (opt-in).",
        ),
    ] = None,
    dial_max_duration: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Longest the test call may last [default: 5]."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress or notes on stderr; errors still."),
    ] = False,
    ws_url: Annotated[
        str | None,
        typer.Option(help="SIP over WebSocket URL of a WebRTC softphone, wss://host[:port]/path."),
    ] = None,
    softphone_url: Annotated[
        str | None,
        typer.Option(help="The WebRTC softphone's web address (browser microphone permission)."),
    ] = None,
    input_device: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Microphone/headset the softphone uses (substring)."),
    ] = None,
    output_device: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Speaker/headset the softphone uses (substring)."),
    ] = None,
    capture_seconds: Annotated[
        float | None,
        typer.Option(metavar="S", help="Microphone capture window in seconds [default: 1]."),
    ] = None,
    play_tone: Annotated[
        bool, typer.Option("--play-tone", help="Play a short quiet tone on the output device.")
    ] = False,
    softphone_process: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Softphone process name (e.g. zoiper); repeatable."),
    ] = None,
    softphone_port: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PORT[-PORT]",
            help="Local SIP/RTP port(s) the softphone needs, besides 5060/5061; repeatable.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of broken probes.")
    ] = False,
) -> None:
    """Run the checks and write the report (always also saved under the user data directory)."""
    from diag.check_command import run_check_command

    flags = {
        "registrar": registrar,
        "domain": domain,
        "user": user,
        "auth_user": auth_user,
        "password_env": password_env,
        "transports": transport,
        "agent_id": agent_id,
        "numbers": number,
        "policy": policy,
        "stun": stun,
        "only": only,
        "skip": skip,
        "timeout": timeout,
        "format": format,
        "out": out,
        "fail_on": fail_on,
        "dns_server": dns_server,
        "ca": ca,
        "no_register": no_register or None,
        "probe_all_transports": probe_all_transports or None,
        "register_binding": register_binding or None,
        "turn": turn,
        "turn_user": turn_user,
        "turn_password_env": turn_password_env,
        "media": media,
        "quiet": quiet or None,
        "ws_url": ws_url,
        "softphone_url": softphone_url,
        "input_device": input_device,
        "output_device": output_device,
        "capture_seconds": capture_seconds,
        "play_tone": play_tone or None,
        "softphone_processes": softphone_process,
        "softphone_ports": softphone_port,
        "debug": debug or None,
        "region": region,
        "dial_test": _one_dial_test(dial_test),
        "dial_max_duration": dial_max_duration,
    }
    raise typer.Exit(run_check_command(_env(ctx), profile, flags))


def _one_dial_test(values: list[str] | None) -> str | None:
    """At most one test call per run: a repeated --dial-test is refused, not half-ignored."""
    if values and len(values) > 1:
        raise UsageError(
            f"--dial-test was given {len(values)} times; a run places at most one test call",
            "give --dial-test once; run sipdiag again for another number",
        )
    return values[0] if values else None


@app.command("checks")
def list_checks(ctx: typer.Context) -> None:
    """List the registered checks: id, title and what each needs."""
    from diag.render import render_checks_table

    _env(ctx).stdout.write(render_checks_table(_env(ctx).checks()))


@app.command()
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of the report (contract v1)."""
    import json

    from diag.report import schema as report_schema

    _env(ctx).stdout.write(json.dumps(report_schema(), indent=2) + "\n")


@app.command()
def explain(
    ctx: typer.Context,
    status: Annotated[list[str], typer.Argument(help="Platform statuses, e.g. 'SIP 403'.")],
    format: Annotated[str, typer.Option(metavar="text|json", help="Output format.")] = "text",
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
        typer.Argument(metavar="REPORT_OR_DIR", help="Reports or directories.", show_default=False),
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
) -> None:
    """Match a platform's log export to agents' reports: each failure explained."""
    from diag.logs.log_export import parse_column_options
    from diag.logs.match import parse_duration, run_match
    from diag.render.match import write_match

    _choose("--format", format, ("text", "json", "csv", "md"))
    with interruptible():  # its temporary files and its parsing thread go with it
        columns = parse_column_options(column or [])
        result = run_match(log, reports, columns, parse_duration(window), tz)
        write_match(result, format, _env(ctx).stdout)
    _env(ctx).kept = result


@app.command()
def fleet(
    ctx: typer.Context,
    reports: Annotated[
        list[Path],
        typer.Argument(metavar="REPORT_OR_DIR", help="Reports or directories.", show_default=False),
    ],
    format: Annotated[
        str, typer.Option(metavar="text|json|md|prom|ndjson", help="Output format.")
    ] = "text",
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="Only reports started at/after DATE (or 7d: ago)."),
    ] = None,
) -> None:
    """Summarise many reports: verdicts, causes, sites, days, changes; Prometheus or ECS."""
    from diag.logs.fleet import parse_since, run_fleet
    from diag.render.fleet import render_fleet

    _choose("--format", format, ("text", "json", "md", "prom", "ndjson"))
    with interruptible():
        summary = run_fleet(reports, parse_since(since) if since else None)
    _env(ctx).stdout.write(render_fleet(summary, format))


@app.command()
def report(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[REPORT.json]", help="A saved JSON report [default: the newest saved one]."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="text, md, html or json [default: by --out, else text]."),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Re-render a saved report for people (Markdown or HTML for a ticket)."""
    from diag.saved_commands import run_report_command

    raise typer.Exit(run_report_command(_env(ctx), path, format, out))


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
        line = " ".join(message.split())
        env.stderr.write(f"sipdiag: error: {line} (hint: see `sipdiag --help`)\n")
        return int(ExitCode.USAGE)
    except Exception as exc:  # noqa: BLE001 - anything else is our bug, still one line
        if is_interrupt(exc):
            return _interrupted(env)
        if debug:
            env.stderr.write(traceback.format_exc())
        env.stderr.write(
            f"sipdiag: error: internal error: {type(exc).__name__}: {exc} "
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
