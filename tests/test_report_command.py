"""`sipdiag report` re-renders saved reports; the terminal experience of `sipdiag check`."""

from __future__ import annotations

import io
import json
from pathlib import Path

from clihelp import cli, cli_process, registered
from test_report_html import sample_report

from diag.cli import Environment, run_cli


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(sample_report()))
    return path


def test_report_renders_markdown_verdict_first_then_findings_checks_and_correlation(
    tmp_path: Path,
) -> None:
    r = cli("report", str(_saved(tmp_path)), "--format", "md")
    assert r.code == 0, r.err
    md = r.out
    assert md.startswith("# sipdiag report — failing\n\n**Verdict: failing**")
    positions = [md.index(h) for h in ("## Findings", "## Checks", "## Correlation")]
    assert positions == sorted(positions)
    assert "- **Cause:** `sip.forbidden` (registration)" in md
    assert "- **Action:** Ask the platform administrator." in md
    assert "<details><summary>sip.register details</summary>" in md
    assert "- Clock offset: `-1250 ms`" in md
    assert "- User-Agent: `sipdiag/0.1.0 run=5b0c7f5e-3d0c-4a55-9b1e-0d6a8a1f2c3d`" in md


def test_report_out_takes_the_format_from_the_extension(tmp_path: Path) -> None:
    out = tmp_path / "ticket.html"
    r = cli("report", str(_saved(tmp_path)), "--out", str(out))
    assert r.code == 0 and r.out == ""
    assert r.err == f"sipdiag: report written to {out}\n"
    assert out.read_text().startswith("<!doctype html>")


def test_report_text_has_the_correlation_block(tmp_path: Path) -> None:
    r = cli("report", str(_saved(tmp_path)), "--format", "text")
    assert "Correlation (search the platform's SIP logs for these):" in r.out
    assert "  Public addresses: 198.51.100.7" in r.out
    assert "\033[" not in r.out  # not a terminal: no colours


def test_report_defaults_to_the_newest_saved_report(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path)}
    first = cli_process("check", "--only", "host.os", "--format", "json", env=env)
    second = cli_process("check", "--only", "host.os", "--format", "json", env=env)
    r = cli_process("report", "--format", "json", env=env)
    assert r.code == 0, r.err
    assert r.json["run_id"] == second.json["run_id"] != first.json["run_id"]


def test_report_refuses_bad_input_with_one_line_and_exit_64(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text('{"schema_version": 1, "run_id": "x"}')
    cases = [
        (["report", str(tmp_path / "missing.json")], "not found"),
        (["report", str(broken)], "is not valid JSON (line 1)"),
        (["report", str(other)], "is incomplete (missing tool,"),
        (["report", str(_saved(tmp_path)), "--format", "pdf"], "unknown format 'pdf'"),
        (["bundle", str(broken), "--out", str(tmp_path / "b.zip")], "is not valid JSON"),
    ]
    for args, what in cases:
        r = cli(*args)
        assert r.code == 64, (args, r.err)
        assert r.err.startswith("sipdiag: error: ") and what in r.err, r.err
        assert r.err.count("\n") == 1 and "(hint: " in r.err and "Traceback" not in r.err
    empty = cli_process("bundle", "--out", str(tmp_path / "x.zip"), env={"XDG_DATA_HOME": "/nx"})
    assert empty.code == 64 and "no saved report in /nx/sipdiag/reports" in empty.err


class _Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _check_on_terminal(*args: str, environ: dict[str, str]) -> tuple[str, str]:
    out, err = _Terminal(), _Terminal()
    env = Environment(
        stdout=out, stderr=err, environ=environ, registry=registered("host.os", "host.vpn")
    )
    run_cli(["check", *args], env)
    return out.getvalue(), err.getvalue()


def test_progress_on_a_terminal_has_a_line_per_family_with_elapsed_time_and_colours() -> None:
    out, err = _check_on_terminal(environ={})
    assert "\033[32m  [✓] host    2 pass  (" in err and " s)\033[0m\n" in err
    assert "running: host.os" in err
    assert "\033[32m[✓] Operating system is identified" in out


def test_no_color_turns_colours_off_and_quiet_silences_stderr() -> None:
    out, err = _check_on_terminal(environ={"NO_COLOR": "1"})
    assert "\033[3" not in out + err and "[✓] host    2 pass" in err
    out, err = _check_on_terminal("--quiet", environ={})
    assert err == "" and "Verdict: healthy" in out


def test_shell_completion_is_offered() -> None:
    r = cli_process("--help")
    assert "--install-completion" in r.out and "--show-completion" in r.out
    # --show-completion is a flag: typer detects the shell from the process tree (shellingham),
    # so run it from a bash that stays its parent (`; exit` keeps bash from exec-ing it).
    r = cli_process(
        "--show-completion",
        env={"SHELL": "/bin/bash"},
        prefix=("bash", "-c", '"$@"; exit $?', "bash"),
    )
    assert r.code == 0 and "_SIPDIAG_COMPLETE" in r.out
