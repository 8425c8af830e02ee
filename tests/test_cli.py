"""The CLI contract: commands, flags, exit codes, one-line errors, report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import cli, cli_process

from diag import __version__
from diag.errors import ExitCode


def test_help_lists_every_command() -> None:
    r = cli("--help")
    assert r.code == 0
    for command in ("check", "checks", "schema", "explain"):
        assert command in r.out


def test_check_help_documents_every_contract_flag() -> None:
    r = cli("check", "--help")
    assert r.code == 0
    for flag in (
        "--profile",
        "--registrar",
        "--domain",
        "--user",
        "--auth-user",
        "--password-env",
        "--transport",
        "--agent-id",
        "--number",
        "--policy",
        "--stun",
        "--only",
        "--skip",
        "--timeout",
        "--format",
        "--out",
        "--fail-on",
        "--debug",
    ):
        assert flag in r.out, flag


def test_version_prints_the_package_version() -> None:
    r = cli("--version")
    assert (r.code, r.out.strip()) == (0, f"sipdiag {__version__}")


def test_checks_lists_the_registry_with_what_each_needs() -> None:
    from checks import REGISTRY

    r = cli("checks")
    assert r.code == 0
    for c in REGISTRY:
        line = next(line for line in r.out.splitlines() if line.startswith(c.id + " "))
        assert c.title in line and c.needs in line


def test_schema_is_a_valid_json_schema() -> None:
    r = cli("schema")
    jsonschema.Draft202012Validator.check_schema(r.json)
    assert r.json["properties"]["schema_version"] == {"const": 1}


def test_check_format_json_prints_only_a_report_that_validates_against_the_schema() -> None:
    r = cli_process("check", "--format", "json")
    report = r.json  # stdout parses as a single JSON document: nothing else was printed there
    jsonschema.validate(report, cli("schema").json)
    assert report["run_id"] in report["correlation"]["user_agent"]
    assert report["correlation"]["user_agent"] == f"sipdiag/{__version__} run={report['run_id']}"
    assert report["complete"] is True
    sip = next(c for c in report["checks"] if c["id"] == "sip.register")
    assert (sip["status"], sip["summary"]) == ("skip", "no registrar configured")


def test_only_host_exits_zero_on_a_healthy_machine() -> None:
    r = cli_process("check", "--only", "host")
    assert r.code == ExitCode.OK, r.out + r.err
    assert "Verdict: healthy" in r.out
    assert "Registrar accepts" not in r.out


def test_every_run_saves_its_report_under_the_user_data_directory(tmp_path: Path) -> None:
    r = cli_process("check", "--only", "host.os", env={"XDG_DATA_HOME": str(tmp_path)})
    saved = r.saved_report()
    assert saved["checks"][0]["id"] == "host.os"
    assert list((tmp_path / "sipdiag" / "reports").glob("sipdiag-*.json"))


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("report.json", '"schema_version": 1'),
        ("report.md", "# sipdiag report"),
        ("report.html", "<!doctype html>"),
        ("report.txt", "Verdict:"),
    ],
)
def test_out_picks_the_format_from_the_extension(tmp_path: Path, name: str, marker: str) -> None:
    target = tmp_path / name
    r = cli("check", "--only", "host.os", "--out", str(target))
    assert r.code == 0
    assert marker in target.read_text()
    assert "Verdict:" in r.out  # stdout keeps --format (text)


def test_out_without_a_known_extension_uses_format(tmp_path: Path) -> None:
    target = tmp_path / "report.out"
    cli("check", "--only", "host.os", "--format", "md", "--out", str(target))
    assert target.read_text().startswith("# sipdiag report")


@pytest.mark.parametrize(
    "args",
    [
        ("check", "--bogus"),
        ("check", "--transport", "sctp"),
        ("check", "--format", "yaml"),
        ("check", "--fail-on", "never"),
        ("check", "--timeout", "0"),
        ("check", "--timeout", "soon"),
        ("check", "--only", "nosuch"),
        ("check", "--skip", "nosuch.check"),
        ("check", "--password-env", "hunter2 with spaces"),
        ("check", "--out", "/nonexistent-dir/report.json"),
        ("nosuchcommand",),
        ("check", "--only", "host", "--skip", "host"),
        ("check", "--out", "-"),
        ("check", "--out", ""),
        ("check", "--timeout", "inf"),
        ("check", "--timeout", "nan"),
        ("check", "--agent-id", ""),
        ("check", "--number", ""),
        ("check", "--transport", "udp", "--registrar", "sips:pbx.example.com"),
        ("check", "--registrar", "sip:"),
        ("check", "--registrar", "foo bar"),
        ("check", "--registrar", "sip:127.0.0.1:99999"),
        ("check", "--registrar", "[::1"),
        ("check", "--profile", ""),
    ],
)
def test_usage_errors_exit_64_with_one_line(args: tuple[str, ...]) -> None:
    r = cli(*args)
    assert r.code == ExitCode.USAGE
    assert r.err.startswith("sipdiag: error: ")
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "(hint: " in r.err
    assert "Traceback" not in r.err


def test_usage_errors_from_a_real_process_have_no_traceback() -> None:
    r = cli_process("check", "--transport", "carrier-pigeon")
    assert r.code == 64
    assert r.err.strip() == (
        "sipdiag: error: unknown transport 'carrier-pigeon' (hint: use one of udp, tcp, tls)"
    )


def test_fail_on_warn_turns_a_warning_into_exit_1() -> None:
    from diag.context import Check
    from diag.model import warned

    registry = [Check("host.fake", "Fake is fine", lambda ctx: warned("meh", "do something"))]
    assert cli("check", registry=registry).code == 0
    assert cli("check", "--fail-on", "warn", registry=registry).code == 1


def test_explain_describes_the_403_status_with_an_en_dash() -> None:
    r = cli("explain", "Failure (Rejected – SIP 403 Forbidden)")
    assert r.code == 0
    assert "technical" in r.out and "sipdiag check" in r.out


def test_explain_unknown_status_exits_64_and_suggests() -> None:
    r = cli("explain", "Rejected by Agent Consle")
    assert r.code == 64
    assert "Failure (Rejected by Agent Console)" in r.err


def test_report_is_json_serialisable_and_complete_for_md_and_html() -> None:
    r = cli("check", "--only", "host", "--format", "json")
    report = r.json
    assert json.loads(json.dumps(report)) == report
    for fmt in ("md", "html"):
        rendered = cli("check", "--only", "host", "--format", fmt).out
        assert "host.os" in rendered


def test_an_unwritable_data_directory_exits_70_but_the_report_still_reaches_stdout(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = cli_process(
        "check", "--only", "host.os", "--format", "json", env={"XDG_DATA_HOME": str(blocker)}
    )
    assert r.code == ExitCode.INTERNAL
    assert r.json["checks"][0]["id"] == "host.os"
    assert r.err.strip().startswith("sipdiag: error: cannot save the report under ")
    assert "(hint: make that directory writable or point XDG_DATA_HOME elsewhere)" in r.err


def test_progress_is_shown_on_a_terminal_only() -> None:
    import io

    from diag.cli import Environment, run_cli

    class Terminal(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return True

    out, err = Terminal(), io.StringIO()
    run_cli(["check", "--only", "host.os"], Environment(stdout=out, stderr=err, environ={}))
    assert "host.os" in err.getvalue() and "\r" in err.getvalue()
    assert "[✓] Operating system is identified" in out.getvalue()
    assert "\r" not in cli("check", "--only", "host.os").err


def test_bare_sipdiag_shows_the_help() -> None:
    r = cli_process()
    assert r.code == 0 and "Usage: " in r.out and "check" in r.out


def test_a_password_given_to_password_env_by_mistake_is_not_echoed() -> None:
    for flag in ("--password-env", "--turn-password-env"):
        for value in ("Tr0ub4dor&3", "my secret"):
            r = cli("check", flag, value)
            assert r.code == 64 and value not in r.err + r.out
            assert r.err.startswith(f"sipdiag: error: {flag} must be the name of")


NATIVE_BLOCKERS = ("pjsua2", "sounddevice", "psutil", "numpy")


def test_help_version_checks_schema_and_explain_work_without_native_libraries(
    tmp_path: Path,
) -> None:
    for name in NATIVE_BLOCKERS:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    for args in (("--help",), ("--version",), ("checks",), ("schema",), ("explain", "403")):
        r = cli_process(*args, env=env)
        assert r.code == 0, (args, r.err)
        assert "blocked by the test" not in r.err
    # A check run without psutil still writes a report; the host probes say what broke.
    r = cli_process(
        "check",
        "--only",
        "host",
        "--format",
        "json",
        env={**env, "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    assert r.code == 1
    by_id = {c["id"]: c for c in r.json["checks"]}
    assert by_id["host.interfaces"]["status"] == "error"
    assert "psutil blocked by the test" in by_id["host.interfaces"]["summary"]
    assert by_id["host.interfaces"]["hint"].startswith("install the missing Python package")
    assert r.json["host"]["interfaces"] == [] and r.json["host"]["hostname"]
    assert r.saved_report()["run_id"] == r.json["run_id"]


def test_out_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert cli("check", "--only", "host.os", "--out", str(link)).code == 0
    assert link.is_symlink() and '"schema_version": 1' in real.read_text()


def test_out_to_a_device_writes_through_it_and_never_replaces_it(tmp_path: Path) -> None:
    import os
    import stat

    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    assert cli("check", "--only", "host.os", "--out", str(device)).code == 0
    assert stat.S_ISCHR(device.stat().st_mode)


def test_an_unwritable_out_still_saves_the_report_and_exits_70(tmp_path: Path) -> None:
    r = cli_process(
        "check",
        "--only",
        "host.os",
        "--out",
        "/proc/sipdiag-report.json",
        env={"XDG_DATA_HOME": str(tmp_path)},
    )
    assert r.code == ExitCode.INTERNAL
    assert (
        r.err.strip()
        .splitlines()[-1]
        .startswith("sipdiag: error: cannot write --out /proc/sipdiag-report.json: ")
    )
    assert r.saved_report()["checks"][0]["id"] == "host.os"
    assert "Verdict:" in r.out


def test_a_terminal_that_cannot_show_unicode_gets_ascii_not_a_crash() -> None:
    r = cli_process("check", "--only", "host.os", env={"PYTHONIOENCODING": "ascii"})
    assert r.code == 0, r.err
    assert "[+] Operating system is identified - Linux" in r.out and r.out.isascii()


def test_the_check_command_has_one_option_per_setting_in_the_tables_order() -> None:
    import typer

    from diag.cli import app
    from diag.settings import SETTINGS

    command = typer.main.get_command(app).commands["check"]  # type: ignore[attr-defined]
    options = [p for p in command.params if p.name != "ctx"]
    assert [p.name for p in options] == ["profile", *(s.parameter for s in SETTINGS)]
    for param, s in zip(options[1:], SETTINGS, strict=True):
        assert param.opts == ([s.flag, s.short] if s.short else [s.flag]), s.name
        assert param.help == s.help, s.name
        assert param.multiple == (s.repeatable or s.once), s.name
        assert param.is_flag == (s.kind == "switch"), s.name
        assert param.default == (False if s.kind == "switch" else None), s.name
        if s.metavar:
            assert param.metavar == s.metavar, s.name


def _readme_block(start: str, end: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    begin = text.index(start)
    return text[begin : text.index(end, begin)]


def test_the_readme_check_synopsis_is_the_one_the_settings_table_generates() -> None:
    from diag.settings import synopsis

    # README "## Commands": the `sipdiag check [...]` lines, up to `sipdiag report`.
    assert _readme_block("sipdiag check [", "sipdiag report [") == synopsis() + "\n"


def test_the_readme_check_flags_table_has_one_row_per_setting_in_the_tables_order() -> None:
    from diag.settings import PROFILE_OPTION, SETTINGS, usage

    # README "### `sipdiag check` flags": the first column of the table, row by row.
    block = _readme_block("| flag | meaning |", "\n\n")
    cells = [row.split(" | ")[0].removeprefix("| ") for row in block.splitlines()[2:]]

    def cell(s: Any) -> str:
        return f"`{usage(s)}`".replace("|", "\\|") + (f", `{s.short}`" if s.short else "")

    assert cells == [f"`{PROFILE_OPTION}`", *(cell(s) for s in SETTINGS)]
