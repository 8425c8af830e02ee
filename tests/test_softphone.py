"""host.softphone with real processes: a copy of `sleep` named like the softphone, and a process
renamed like one that holds a UDP port (psutil reads both from /proc, as on an agent's PC)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli, registered
from peers.process import free_port

from checks.host.softphone import matches, port_holders, port_ranges

SECRET = "s3cr3t-Passw0rd-on-argv"

# Renames itself (prctl PR_SET_NAME, what /proc/PID/comm and psutil's name() show), binds the
# UDP port given, says "ready" and waits for stdin to close.
HOLDER = """\
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[2])))
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def dummy_softphone(tmp_path: Path) -> Iterator[str]:
    """A running process whose name is a fresh softphone name (a copy of `sleep`), with a
    password on its command line as some softphones are started."""
    name = f"sdphone{uuid.uuid4().hex[:6]}"
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    # argv[0] carries the secret (cmdline shows it); the name still comes from the file.
    proc = subprocess.Popen([f"{name} --password={SECRET}", "300"], executable=exe)
    try:
        yield name
    finally:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def hold_udp_port(name: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """A process named `name` holding UDP `port` on 127.0.0.1 until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def run(*args: str) -> dict[str, Any]:
    r = cli("check", "--format", "json", *args, registry=registered("host.softphone"))
    report: dict[str, Any] = r.json
    report["_code"] = r.code
    report["_text"] = r.out + r.err
    return report


def check_of(report: dict[str, Any]) -> dict[str, Any]:
    check: dict[str, Any] = report["checks"][0]
    return check


def test_a_running_process_named_like_the_softphone_passes(dummy_softphone: str) -> None:
    report = run("--softphone-process", dummy_softphone.upper())
    check = check_of(report)
    assert check["id"] == "host.softphone"
    assert check["status"] == "pass", check
    running = check["details"]["running"]
    assert [p["name"] for p in running] == [dummy_softphone]
    assert report["findings"] == [] and report["_code"] == 0
    assert SECRET not in str(report["_text"])  # command lines are never collected


def test_a_softphone_that_is_not_running_is_host_softphone_not_running() -> None:
    report = run("--softphone-process", "no-such-softphone-x1", "--softphone-process", "nope2")
    check = check_of(report)
    assert check["status"] == "fail"
    assert "no process named 'no-such-softphone-x1' or 'nope2' is running" in check["summary"]
    assert report["_code"] == 1
    (finding,) = report["findings"]
    assert finding["cause"] == "host.softphone_not_running"
    assert finding["severity"] == "critical"
    assert finding["action"].startswith("start the softphone")


def test_the_process_holding_a_softphone_port_is_named() -> None:
    port = free_port(kinds=("udp",), span=2)
    with hold_udp_port("otherphone", port) as holder:
        report = run("--softphone-process", "no-such-softphone-x1", "--softphone-port", str(port))
    check = check_of(report)
    details = check["details"]
    assert str(port) in details["ports"] and "5060" in details["ports"]
    held = [h for h in details["port_holders"] if h["port"] == port]
    assert held == [
        {
            "protocol": "udp",
            "address": "127.0.0.1",
            "port": port,
            "pid": holder.pid,
            "process": "otherphone",
            "is_softphone": False,
        }
    ]
    assert f"UDP {port} is held by otherphone (pid {holder.pid})" in check["summary"]
    assert check["status"] == "fail"
    assert "after closing the other program" in check["hint"]


def test_another_program_on_the_softphone_port_warns_while_the_softphone_runs(
    dummy_softphone: str,
) -> None:
    low = free_port(kinds=("udp",), span=2)
    with hold_udp_port("otherphone", low) as holder:
        report = run("--softphone-process", dummy_softphone, "--softphone-port", f"{low}-{low + 1}")
    check = check_of(report)
    assert check["status"] == "warn"
    assert check["details"]["problem"] == "port_conflict"
    assert [c["pid"] for c in check["details"]["conflicts"]] == [holder.pid]
    assert report["findings"] == []  # no cause in the vocabulary for a port conflict


def test_the_softphone_holding_its_own_port_is_no_conflict() -> None:
    port = free_port(kinds=("udp",), span=2)
    name = f"sdp{uuid.uuid4().hex[:6]}"
    with hold_udp_port(name, port):
        report = run("--softphone-process", name, "--softphone-port", str(port))
    check = check_of(report)
    assert check["status"] == "pass", check
    holders = [h for h in check["details"]["port_holders"] if h["port"] == port]
    assert holders[0]["is_softphone"] is True


def test_without_a_configured_softphone_the_check_skips_but_lists_port_holders() -> None:
    port = free_port(kinds=("udp",), span=2)
    with hold_udp_port("someapp", port):
        report = run("--softphone-port", str(port))
    check = check_of(report)
    assert check["status"] == "skip"
    assert "no softphone process configured" in check["summary"]
    assert f"UDP {port} is held by someapp" in check["summary"]
    assert "--softphone-process" in check["hint"]


def test_softphone_names_and_ports_come_from_the_profile(
    tmp_path: Path, dummy_softphone: str
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'softphone_processes = ["{dummy_softphone}"]\nsoftphone_ports = [5080, "10000-10010"]\n'
    )
    check = check_of(run("--profile", str(profile)))
    assert check["status"] == "pass"
    assert check["details"]["ports"] == ["5060", "5061", "5080", "10000-10010"]


@pytest.mark.parametrize(
    ("wanted", "name", "exe", "hit"),
    [
        (["Zoiper"], "zoiper", "/opt/zoiper/zoiper", True),
        (["zoiper.exe"], "Zoiper.exe", "C:\\Program Files\\Zoiper\\Zoiper.exe", True),
        (["chrome"], "chrome", "/opt/google/chrome/chrome", True),
        (["Microsoft Teams"], "Microsoft Teams", None, True),
        (["contact-centre-agent-console"], "contact-centre-", None, True),  # comm is 15 chars
        (["zoiper"], "zoiper5-helper", "/opt/zoiper/zoiper5-helper", False),
        (["chrome"], "chromium", None, False),
    ],
)
def test_softphone_name_matching(wanted: list[str], name: str, exe: str | None, hit: bool) -> None:
    assert matches(wanted, name, exe) is hit


def test_default_ports_are_sip_and_sips_plus_the_configured_ones() -> None:
    assert port_ranges([]) == [(5060, 5060), (5061, 5061)]
    assert port_ranges(["5060", "10000-20000"]) == [(5060, 5060), (5061, 5061), (10000, 20000)]


@pytest.mark.parametrize("bad", ["0", "70000", "20-10", "abc", "5060,5061"])
def test_a_bad_softphone_port_is_a_usage_error(bad: str) -> None:
    r = cli("check", "--softphone-port", bad, registry=registered("host.softphone"))
    assert r.code == 64
    assert r.err.strip() == (
        f"sipdiag: error: invalid --softphone-port '{bad}' "
        "(hint: use a port 1-65535 or a range LOW-HIGH, e.g. 5080 or 10000-20000)"
    )


def test_without_admin_rights_on_macos_each_inspectable_process_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The OS boundary that cannot exist here: macOS refuses net_connections() to non-admins.
    import psutil

    def refused(kind: str = "inet") -> list[Any]:
        raise psutil.AccessDenied()

    port = free_port(kinds=("udp",), span=2)
    monkeypatch.setattr(psutil, "net_connections", refused)
    with hold_udp_port("otherphone", port) as holder:
        holders, complete = port_holders(port_ranges([str(port)]))
    assert complete is False
    assert [(h["port"], h["pid"], h["process"]) for h in holders if h["port"] == port] == [
        (port, holder.pid, "otherphone")
    ]
