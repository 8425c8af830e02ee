"""What a hostile registrar, report or log export says cannot drive the terminal, a Markdown
viewer or a spreadsheet (issue: hardening, defects 3, 4 and 9).

The JSON report keeps the original text; only what text, Markdown and CSV show is neutralised.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clihelp import REPO, cli, subprocess_env
from peers.hostile import ESCAPES, HostileSip

from diag.render import Marks, render

PASSWORD = "output-safety-secret-2718"
# What ESCAPES looks like once neutralised: C0 as Control Pictures, C1 and bidi as U+FFFD.
VISIBLE = "␛]0;pwned␇␛[2J␍␀\ufffd31m\ufffdevil"
# A finding of a real 403 run, placed in reports whatever the peer's exchange led to.
FORBIDDEN = {
    "cause": "sip.forbidden",
    "family": "registration",
    "severity": "critical",
    "title": "Registrar refuses registration",
    "explanation": f"The registrar answers 403 Forbidden {ESCAPES}.",
    "action": "ask the platform administrator; quote the Warning text and the run id",
    "evidence": {"checks": ["sip.register"], "sip.register": {"reason": f"Forbidden {ESCAPES}"}},
}
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>[click](http://evil.example)"
TRACKER = "![t](http://track.example/p.gif) &amp; ```"


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*args: str, env: dict[str, str] | None = None) -> Run:
    """A real `python -m diag` process, its output kept byte for byte (no newline translation,
    which would turn a CR into a line break and hide it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "diag", *args],
        capture_output=True,
        timeout=60,
        env=subprocess_env(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys too."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def with_finding(report: dict[str, Any]) -> dict[str, Any]:
    report["findings"] = [json.loads(json.dumps(FORBIDDEN))]
    report["verdict"] = "failing"
    return report


def assert_nothing_raw(text: str) -> None:
    """No control character but the renderer's own line breaks, no ESC at all (stdout is not a
    tty), no C1 CSI, no bidi override."""
    raw = sorted({f"U+{ord(c):04X}" for c in text if re.match(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", c)})
    assert raw == [], raw
    assert "\u202e" not in text and "\u2066" not in text


def outside_code_blocks(md: str) -> str:
    """The Markdown a viewer renders as Markdown: fenced code blocks left out (CommonMark: a
    block ends only at a line of at least as many backticks as its opening fence)."""
    kept, fence = [], ""
    for line in md.split("\n"):
        run = re.match(r"^(`{3,})", line)
        if not fence and run:
            fence = run.group(1)
        elif (
            fence
            and run
            and line.strip() == "`" * len(line.strip())
            and len(run.group(1)) >= len(fence)
        ):
            fence = ""
        elif not fence:
            kept.append(line)
    assert not fence, "a fenced block is never closed"
    return "\n".join(kept)


@dataclass
class Hostile:
    check_text: Run
    check_md: Run
    saved: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    data = tmp_path_factory.mktemp("safety-data")
    env = {"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(data)}
    peer = HostileSip("escapes").start()
    try:
        args = ["check", "--registrar", peer.uri, "--user", "alice", "--only", "sip.register"]
        args += ["--agent-id", "A-66", "--timeout", "4"]
        text = run(*args, "--format", "text", env=env)
        md = run(*args, "--format", "md", env=env)
    finally:
        peer.stop()
    saved = next(line for line in text.err.splitlines() if "report saved to " in line)
    yield Hostile(text, md, Path(saved.split("report saved to ", 1)[1]))


def test_check_text_shows_a_hostile_registrars_escapes_as_visible_symbols(
    hostile: Hostile,
) -> None:
    r = hostile.check_text
    assert r.code in (1, 2), r.err
    assert "Registrar accepts our REGISTER" in r.out
    assert_nothing_raw(r.out)
    assert_nothing_raw(r.err)
    assert VISIBLE in r.out


def test_the_saved_json_report_keeps_the_registrars_original_text(hostile: Hostile) -> None:
    report = json.loads(hostile.saved.read_text())
    [check] = report["checks"]
    assert ESCAPES in check["summary"]
    assert any(ESCAPES in s for s in strings(check["details"]))


def test_report_text_of_the_saved_report_is_neutralised_too(hostile: Hostile) -> None:
    r = run("report", str(hostile.saved), "--format", "text")
    assert r.code == 0, r.err
    assert_nothing_raw(r.out)
    assert VISIBLE in r.out and "Verdict: " in r.out


def test_check_markdown_shows_the_escapes_visibly_in_prose_and_in_json_blocks(
    hostile: Hostile,
) -> None:
    r = hostile.check_md
    assert r.code in (1, 2), r.err
    assert_nothing_raw(r.out)
    assert "\\u001b" not in r.out  # JSON blocks show the neutralised text, not JSON escapes
    assert "␛\\]0;pwned␇␛\\[2J␍␀" in r.out  # in prose: Markdown-escaped as well
    assert "␛]0;pwned␇␛[2J␍␀" in r.out  # in a fenced JSON block: as it is


def _html_report(saved: Path, tmp_path: Path) -> Path:
    """The saved report with HTML, links and a fence-closing backtick run in what a registrar or
    an edited report controls: summary, hint, explanation, title, details and a key."""
    report = with_finding(json.loads(saved.read_text()))
    check = report["checks"][0]
    check["summary"] = f"{HTML} {ESCAPES}"
    check["hint"] = TRACKER
    check["details"]["server"] = "```` </details> <script>x</script>"
    check["details"]["`<b>key</b>`"] = "x"
    for f in report["findings"]:
        f["explanation"] = f"- {HTML}"
        f["title"] = f"# {HTML}"
        f["action"] = "> quote | pipe _em_ *strong*"
    report["target"]["registrar"] = f"sip:{HTML}"
    path = tmp_path / "html.json"
    path.write_text(json.dumps(report))
    return path


def test_report_markdown_escapes_html_links_and_markdown_from_outside(
    hostile: Hostile, tmp_path: Path
) -> None:
    r = run("report", str(_html_report(hostile.saved, tmp_path)), "--format", "md")
    assert r.code == 0, r.err
    md = r.out
    assert_nothing_raw(md)
    prose = outside_code_blocks(md)
    for live in ("<script", "<img", "](http", "<b>", "</details> <"):
        assert live not in prose, live
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md
    assert "\\[click\\]\\(http://evil.example\\)" in md
    assert "\\!\\[t\\]" in md and "&amp;amp;" in md
    assert "- **Why:** \\- &lt;script&gt;" in md
    assert "&gt; quote \\| pipe \\_em\\_ \\*strong\\*" in md
    # The details' JSON block opens with a fence longer than the value's four backticks, so
    # the value stays inside it: the block closes after the JSON, before </details>.
    assert "\n`````json\n" in md
    assert '"server": "```` </details> <script>x</script>",' in md
    assert "\n`````\n\n</details>" in md
    assert "<details><summary>sip.register details</summary>" in md


def test_report_text_of_a_report_with_html_shows_it_as_text(
    hostile: Hostile, tmp_path: Path
) -> None:
    """Text is for a terminal: HTML stays as it is, controls do not."""
    r = run("report", str(_html_report(hostile.saved, tmp_path)), "--format", "text")
    assert r.code == 0, r.err
    assert_nothing_raw(r.out)
    assert HTML in r.out and VISIBLE in r.out


def test_the_renderers_own_colours_survive_on_a_tty_and_the_reports_do_not() -> None:
    from test_render import _report

    report = _report()
    report["checks"][0]["summary"] = f"udp: 403 Forbidden {ESCAPES}\nsecond line"
    report["findings"][0][f"extra\x1b[2J{ESCAPES}"] = "keys are walked too"
    text = render(report, "text", Marks.for_encoding("utf-8"), color=True)
    assert "\x1b[31m[✗] Registrar accepts our REGISTER" in text  # our colour
    assert f"403 Forbidden {VISIBLE}␊second line\x1b[0m" in text
    assert "\x1b]" not in text and "\x1b[2J" not in text and "\x9b" not in text


def test_progress_and_the_checks_table_neutralise_what_they_show() -> None:
    from diag.render.text import progress_family_line, progress_running_line

    marks = Marks.for_encoding("utf-8")
    line = progress_family_line(f"sip{ESCAPES}", ["fail"], 1.0, marks, color=True)
    assert VISIBLE in line and line.startswith("\x1b[31m")
    assert VISIBLE in progress_running_line([f"sip.x{ESCAPES}"], 1.0, "|")


# --- match and fleet -------------------------------------------------------------------------

FORMULAS = {
    '=HYPERLINK("http://evil.example","x")': '\'=HYPERLINK("http://evil.example","x")',
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-1+2": "'-1+2",
    "\tTAB-led": "'\tTAB-led",
    "\rCR-led": "'\rCR-led",
}


@pytest.fixture(scope="module")
def reports_dir(hostile: Hostile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile registrar's report, its agent and a finding's title made hostile too."""
    directory = tmp_path_factory.mktemp("safety-reports")
    report = with_finding(json.loads(hostile.saved.read_text()))
    report["agent"]["id"] = f"A-66{ESCAPES}<img src=x onerror=alert(1)>"
    for f in report["findings"]:
        f["title"] = f"{ESCAPES} {HTML}"
    (directory / "hostile.json").write_text(json.dumps(report))
    return directory


def _export(tmp_path: Path, hostile: Hostile) -> Path:
    started = json.loads(hostile.saved.read_text())["started_at"]
    agents = [f"A-66{ESCAPES}<img src=x onerror=alert(1)>", *FORMULAS, "A-67 plain"]
    lines = ["time,agent,status"]
    for agent in agents:
        quoted = '"' + agent.replace('"', '""') + '"'
        lines.append(f"{started},{quoted},Failure (Rejected - SIP 403 Forbidden)")
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    return path


def test_match_csv_neutralises_formula_cells_and_leaves_others_alone(
    hostile: Hostile, reports_dir: Path, tmp_path: Path
) -> None:
    r = run("match", "--log", str(_export(tmp_path, hostile)), str(reports_dir), "--format", "csv")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out, newline="")))
    agents = [row["agent"] for row in rows]
    for raw, safe in FORMULAS.items():
        assert safe in agents, (raw, agents)
        assert raw not in agents
    assert "A-67 plain" in agents
    # Numbers stay numbers (a negative offset is not a formula) and ids keep their text.
    assert all(not row["report_offset_s"].startswith("'") for row in rows)
    assert any(row["run_id"] and not row["run_id"].startswith("'") for row in rows)


def test_match_text_and_markdown_neutralise_hostile_cells(
    hostile: Hostile, reports_dir: Path, tmp_path: Path
) -> None:
    export = _export(tmp_path, hostile)
    text = run("match", "--log", str(export), str(reports_dir))
    assert text.code == 0, text.err
    assert_nothing_raw(text.out)
    assert f"A-66{VISIBLE}" in text.out and "-> sip.forbidden (" in text.out
    assert "\ttab" not in text.out.lower() and "␉TAB-led" in text.out
    md = run("match", "--log", str(export), str(reports_dir), "--format", "md")
    assert md.code == 0, md.err
    assert_nothing_raw(md.out)
    for live in ("<script", "<img", "](http"):
        assert live not in md.out, live
    assert "A-66␛\\]0;pwned␇␛\\[2J␍␀" in md.out
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in md.out
    assert "\\=HYPERLINK\\(" not in md.out  # `=` is not Markdown; only the brackets are escaped


def test_fleet_text_and_markdown_neutralise_hostile_reports(reports_dir: Path) -> None:
    text = cli("fleet", str(reports_dir))
    assert text.code == 0, text.err
    assert_nothing_raw(text.out)
    assert f"A-66{VISIBLE}" in text.out
    md = cli("fleet", str(reports_dir), "--format", "md")
    assert md.code == 0, md.err
    assert_nothing_raw(md.out)
    assert "<img" not in md.out and "&lt;img src=x onerror=alert\\(1\\)&gt;" in md.out


# --- the one rule ----------------------------------------------------------------------------


def test_one_rule_in_python_and_in_duckdb_sql() -> None:
    import duckdb

    from diag.render.safe import neutralise, sql_neutralise

    every = "".join(chr(c) for c in range(0x300)) + "\u061c\u200b\u200e\u200f\u2028"
    every += "".join(chr(c) for c in range(0x2028, 0x2070)) + "é✓\U0001f4a5"
    expected = neutralise(every)
    assert expected[0x1B] == "␛" and expected[0x0D] == "␍" and expected[0] == "␀"
    assert (
        expected[0x7F] == "␡"
        and expected[0x9B] == "\ufffd"
        and expected[0x20:0x7F] == (every[0x20:0x7F])
    )
    assert "\u202e" not in expected and "\u2066" not in expected and "\u200b" in expected
    con = duckdb.connect()
    [(got,)] = con.execute(f"SELECT {sql_neutralise('$x')}", {"x": every}).fetchall()
    assert got == expected
    [(plain,)] = con.execute(f"SELECT {sql_neutralise('$x')}", {"x": "plain"}).fetchall()
    assert plain == "plain"


def test_markdown_text_is_the_same_in_python_and_in_match_sql() -> None:
    import duckdb

    from diag.render.safe import md_text, sql_md_row

    cells = [f"-a <b> & [x](y) `c` | _e_ \\ #+!~{{}}* {ESCAPES}\x1f\x1e", "plain", "=1", "-1", ""]
    sql = "SELECT " + sql_md_row([f"$c{i}" for i in range(len(cells))])
    [(row,)] = duckdb.connect().execute(sql, {f"c{i}": c for i, c in enumerate(cells)}).fetchall()
    assert row == "| " + " | ".join(md_text(c) for c in cells) + " |"
    assert row.startswith("| \\-a &lt;b&gt; &amp; \\[x\\]\\(y\\) \\`c\\` \\| \\_e\\_ \\\\ ")


def test_the_checks_table_neutralises_what_it_shows() -> None:
    from types import SimpleNamespace
    from typing import cast

    from diag.context import Check
    from diag.render.text import progress_line, render_checks_table

    evil = cast(Check, SimpleNamespace(id=f"x.{ESCAPES}", title=ESCAPES, needs=ESCAPES))
    table = render_checks_table([evil])
    assert_nothing_raw(table)
    assert table.count(VISIBLE) == 3
    assert VISIBLE in progress_line("start", evil, None, Marks.for_encoding("utf-8"))
