"""Fleet examples as written in packaging/fleet: systemd units, the MDM shell wrapper, the
Ansible playbook (run for real against this machine over Ansible's local connection)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import REPO, cli, subprocess_env

FLEET = REPO / "packaging" / "fleet"
UNITS = ("sipdiag-check.service", "sipdiag-check.timer")
WATCH_UNIT = FLEET / "systemd" / "sipdiag-watch.service"


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


def _verify_user_unit(unit: Path, runtime: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify`: the unit as a user manager reads it (%h and all);
    XDG_RUNTIME_DIR is all it needs from a session."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)", pytrace=False)
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [exe, "--user", "verify", "--man=no", str(unit)],
        env=subprocess_env({"XDG_RUNTIME_DIR": str(runtime)}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_watch_user_service_verifies_with_sipdiag_installed(tmp_path: Path) -> None:
    unit = tmp_path / "sipdiag-watch.service"
    unit.write_text(WATCH_UNIT.read_text().replace("/usr/local/bin/sipdiag", str(_shim(tmp_path))))
    r = _verify_user_unit(unit, tmp_path / "run")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    unit.write_text(WATCH_UNIT.read_text().replace("/usr/local/bin/sipdiag", "/nonexistent/sd"))
    r = _verify_user_unit(unit, tmp_path / "run")
    assert r.returncode != 0 and "/nonexistent/sd" in r.stderr


def test_the_watch_service_stops_it_with_sigterm_restarts_on_failure_and_inlines_no_password() -> (
    None
):
    unit = _unit_settings(WATCH_UNIT.read_text())
    [exec_start] = unit["ExecStart"]
    assert exec_start.startswith("/usr/local/bin/sipdiag watch --quiet ")
    assert unit["KillSignal"] == ["SIGTERM"] and unit["KillMode"] == ["mixed"]
    assert unit["Restart"] == ["on-failure"] and unit["RestartPreventExitStatus"] == ["64"]
    assert unit["EnvironmentFile"] == ["-%h/.config/sipdiag/env"]
    assert unit["WantedBy"] == ["default.target"]
    assert not re.search(
        r"pass|secret", " ".join(unit["ExecStart"] + unit.get("Environment", [])), re.I
    )


def test_sigterm_as_the_watch_service_sends_it_ends_the_watch_cleanly(tmp_path: Path) -> None:
    """The unit's ExecStart as written (this checkout as `sipdiag`, a profile in a HOME under
    tmp_path, only the host checks): after its first sample the unit's KillSignal ends it with
    exit 0, and the timeline's last line says why, which `sipdiag report` shows."""
    home = tmp_path / "home"
    (home / ".config" / "sipdiag").mkdir(parents=True)
    (home / ".config" / "sipdiag" / "profile.toml").write_text('agent_id = "A-17"\n')
    unit = _unit_settings(WATCH_UNIT.read_text())
    argv = unit["ExecStart"][0].replace("%h", str(home)).split()
    argv = [a.replace("/usr/local/bin/sipdiag", str(_shim(tmp_path))) for a in argv]
    data = tmp_path / "data"
    env = subprocess_env({"HOME": str(home), "XDG_DATA_HOME": str(data)})
    err = tmp_path / "watch.err"
    with err.open("wb") as stderr:  # a file, not a pipe: a chatty watch cannot block on it
        proc = subprocess.Popen(
            [*argv, "--only", "host"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 90
        timeline: Path | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = sorted((data / "sipdiag" / "timelines").glob("*.jsonl"))
            if found and '"type":"sample"' in found[0].read_text():
                timeline = found[0]
                break
            time.sleep(0.2)
        assert timeline is not None, err.read_text() or "no sample in 90 s"
        proc.send_signal(getattr(signal, unit["KillSignal"][0]))
        code = proc.wait(timeout=int(unit["TimeoutStopSec"][0]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err.read_text()
    last = json.loads(timeline.read_text().splitlines()[-1])
    assert last["type"] == "end" and last["reason"] == "terminated"
    r = cli("report", str(timeline))
    assert r.code == 0 and "  Ended: terminated\n" in r.out and "  Agent: A-17\n" in r.out


def test_the_shell_wrapper_carries_the_watch_unit_as_written() -> None:
    script = (FLEET / "sipdiag-mdm.sh").read_text()
    embedded = re.search(r"cat <<'UNIT'\n(.*?)^UNIT$", script, re.S | re.M)
    assert embedded, "no UNIT here-document in sipdiag-mdm.sh"
    assert embedded[1].replace("@SIPDIAG@", "/usr/local/bin/sipdiag") == WATCH_UNIT.read_text()


def _fake_systemctl(directory: Path) -> Path:
    """A `systemctl` that logs its arguments: no user manager runs in a test container."""
    log = directory / "systemctl.log"
    fake = directory / "bin" / "systemctl"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    fake.chmod(0o755)
    return log


def _watch_wrapper(tmp_path: Path, scope: str, *args: str) -> subprocess.CompletedProcess[str]:
    log = _fake_systemctl(tmp_path)
    env = subprocess_env(
        {
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PATH": f"{log.parent / 'bin'}:{os.environ['PATH']}",
            "WATCH_SCOPE": scope,
            "WATCH_UNIT_DIR": str(tmp_path / "units"),
        }
    )
    return subprocess.run(
        ["/bin/sh", str(FLEET / "sipdiag-mdm.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_shell_wrapper_installs_the_watch_service_and_restarts_it_only_when_changed(
    tmp_path: Path,
) -> None:
    sipdiag = str(_shim(tmp_path))
    args = ("-w", "-d", str(tmp_path / "reports"), "-b", sipdiag, "--", "--only", "host.os")
    log = tmp_path / "systemctl.log"
    first = _watch_wrapper(tmp_path, "user", *args)
    assert first.returncode == 0, first.stderr
    unit = tmp_path / "units" / "sipdiag-watch.service"
    assert unit.read_text() == WATCH_UNIT.read_text().replace("/usr/local/bin/sipdiag", sipdiag)
    r = _verify_user_unit(unit, tmp_path / "run")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    assert log.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable sipdiag-watch.service",
        "--user restart sipdiag-watch.service",
    ]
    assert len(list((tmp_path / "reports").glob("sipdiag-*.json"))) == 1  # the check still ran
    log.unlink()
    again = _watch_wrapper(tmp_path, "user", *args)
    assert again.returncode == 0, again.stderr
    assert log.read_text().splitlines() == [
        "--user enable sipdiag-watch.service",
        "--user start sipdiag-watch.service",
    ]
    assert not list(unit.parent.glob("*.tmp.*"))
    log.unlink()
    as_root = _watch_wrapper(tmp_path, "global", *args)  # root: every user, from their login
    assert as_root.returncode == 0, as_root.stderr
    assert log.read_text().splitlines() == ["--global enable sipdiag-watch.service"]
    wrong = _watch_wrapper(tmp_path, "everyone", *args)
    assert wrong.returncode == 64
    assert "sipdiag-mdm: error: WATCH_SCOPE must be user or global" in wrong.stderr
    missing = _watch_wrapper(tmp_path, "user", "-w", "-b", str(tmp_path / "nope"))
    assert missing.returncode == 64 and "-w: no program" in missing.stderr


def test_the_mdm_scripts_parse() -> None:
    r = subprocess.run(["/bin/sh", "-n", str(FLEET / "sipdiag-mdm.sh")], capture_output=True)
    assert r.returncode == 0, r.stderr
    ps1 = (FLEET / "sipdiag-mdm.ps1").read_text()  # no PowerShell here: its watch part, read
    assert "[switch]$Watch" in ps1 and "Register-ScheduledTask -TaskName 'sipdiag watch'" in ps1
    assert "watch --quiet --profile" in ps1
