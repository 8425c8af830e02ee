"""Fleet examples as written in packaging/fleet: systemd units, the MDM shell wrapper, the
Ansible playbook (run for real against this machine over Ansible's local connection)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import REPO, subprocess_env

FLEET = REPO / "packaging" / "fleet"
UNITS = ("sipdiag-check.service", "sipdiag-check.timer")


def _shim(directory: Path) -> Path:
    """A `sipdiag` executable that is this checkout (what `pip install` would put on PATH)."""
    shim = directory / "sipdiag"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m diag "$@"\n')
    shim.chmod(0o755)
    return shim


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)", pytrace=False)
    return subprocess.run(
        [exe, "verify", "--man=no", *(str(directory / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_units_verify_with_sipdiag_installed(tmp_path: Path) -> None:
    shim = _shim(tmp_path)
    for unit in UNITS:
        text = (FLEET / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/local/bin/sipdiag", str(shim)))
    r = _verify(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ""


def test_systemd_verify_notices_a_missing_sipdiag_binary(tmp_path: Path) -> None:
    for unit in UNITS:
        text = (FLEET / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/local/bin/sipdiag", "/nonexistent/sd"))
    r = _verify(tmp_path)
    assert r.returncode != 0 and "/nonexistent/sd" in r.stderr


def test_the_service_writes_the_prometheus_textfile_through_a_temp_name(tmp_path: Path) -> None:
    """The unit's two ExecStart lines as written, with this checkout as `sipdiag` and the state
    directory in tmp_path: a real check saves its report, the real `sipdiag fleet` turns the
    saved reports into the textfile, which appears whole (no temp file left) and parses."""
    from prometheus_client.parser import text_string_to_metric_families

    sipdiag = str(_shim(tmp_path))
    state = tmp_path / "state"
    state.mkdir()  # what the unit's StateDirectory=sipdiag does
    service = (FLEET / "systemd" / "sipdiag-check.service").read_text()
    check, fleet = [x for x in service.splitlines() if x.startswith("ExecStart=")]
    check = check.removeprefix("ExecStart=").replace("--profile /etc/sipdiag/profile.toml ", "")
    fleet = fleet.removeprefix("ExecStart=/bin/sh -c ").strip("'")
    textfile = tmp_path / "sipdiag.prom"
    env = subprocess_env({"XDG_DATA_HOME": str(state), "TEXTFILE": str(textfile)})
    for argv in (check.split() + ["--only", "host.os"], ["/bin/sh", "-c", fleet]):
        argv = [a.replace("/usr/local/bin/sipdiag", sipdiag) for a in argv]
        argv = [a.replace("/var/lib/sipdiag", str(state)) for a in argv]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode in (0, 1), r.stderr  # SuccessExitStatus=1: failed checks are data
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    [sample] = [s for s in families["sipdiag_reports"].samples if s.value]
    assert sample.value == 1.0
    assert (state / "last.json").exists() and not (tmp_path / "sipdiag.prom.tmp").exists()


def _wrapper(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(FLEET / "sipdiag-mdm.sh"), *args],
        env=subprocess_env({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_shell_wrapper_keeps_the_last_n_reports_and_returns_the_exit_code(
    tmp_path: Path,
) -> None:
    sipdiag = str(_shim(tmp_path))
    reports = tmp_path / "reports dir"  # a space in the path, as on macOS
    codes = [
        _wrapper(
            tmp_path, "-k", "2", "-d", str(reports), "-b", sipdiag, "--", "--only", "host.os"
        ).returncode
        for _ in range(3)
    ]
    assert codes == [0, 0, 0]
    kept = sorted(reports.glob("sipdiag-*.json"))
    assert len(kept) == 2
    assert all(json.loads(p.read_text())["checks"][0]["id"] == "host.os" for p in kept)
    # A check that fails (nothing answers STUN on port 9) returns 1, and its report is kept.
    failing = _wrapper(
        tmp_path, "-k", "2", "-d", str(reports), "-b", sipdiag, "--",
        "--only", "net.stun", "--stun", "127.0.0.1:9", "--timeout", "2",
    )  # fmt: skip
    assert failing.returncode == 1, failing.stderr
    newest = sorted(reports.glob("sipdiag-*.json"))[-1]
    assert json.loads(newest.read_text())["checks"][0]["status"] == "fail"
    assert len(list(reports.glob("sipdiag-*.json"))) == 2
    usage = _wrapper(tmp_path, "-d", str(reports), "-b", sipdiag, "--", "--only", "nope")
    assert usage.returncode == 64 and "sipdiag: error: no check or family named 'nope'" in (
        usage.stderr
    )
    assert _wrapper(tmp_path, "-k", "x", "-b", sipdiag).returncode == 64


def test_the_ansible_playbook_runs_and_fetches_the_reports(tmp_path: Path) -> None:
    playbook = shutil.which("ansible-playbook") or str(
        Path(sys.executable).parent / "ansible-playbook"
    )
    if not os.path.exists(playbook):
        pytest.fail("ansible-playbook is missing: pip install '.[test]'", pytrace=False)
    sipdiag = _shim(tmp_path)
    args = [
        playbook,
        "-i",
        "localhost,",
        "-c",
        "local",
        str(FLEET / "ansible" / "sipdiag.yml"),
        "-e",
        json.dumps(
            {
                "sipdiag": str(sipdiag),
                "sipdiag_args": ["--only", "host.os"],
                "sipdiag_remote_dir": str(tmp_path / "remote"),
                "sipdiag_fetch_dir": str(tmp_path / "fetched"),
                "ansible_python_interpreter": sys.executable,
            }
        ),
    ]
    env = subprocess_env(
        {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "ANSIBLE_NOCOLOR": "1"}
    )
    check = subprocess.run([*args, "--syntax-check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    fetched = tmp_path / "fetched" / "localhost"
    assert json.loads((fetched / "report.json").read_text())["checks"][0]["id"] == "host.os"
    assert (fetched / "report.html").read_text().startswith("<!doctype html>")
    assert "localhost: exit 0 (ok)" in r.stdout
