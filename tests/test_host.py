"""Host checks: OS, interfaces, VPN detection (in a real namespace with a tun), proxies, clock."""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from clihelp import cli, cli_process
from contexts import make_context
from peers.tun import held_tun

from checks.host.clock import check_clock, clock_offset_ms
from checks.host.interfaces import is_vpn_interface
from checks.host.proxy import check_proxy, proxies
from diag.model import CheckResult, Status, passed


@pytest.mark.parametrize(
    ("name", "flags", "vpn"),
    [
        ("tun0", "up,pointopoint,running,noarp,multicast", True),
        ("wg0", "up,running", True),
        ("utun3", "", True),
        ("ppp0", "", True),
        ("Ethernet 2 (OpenVPN TAP-Windows6)", "", True),
        ("weird0", "up,pointopoint,running", True),
        ("eth0", "up,broadcast,running,multicast", False),
        ("wlan0", "up,broadcast,running,multicast", False),
        ("lo", "up,loopback,running", False),
    ],
)
def test_vpn_heuristic_uses_names_and_point_to_point_flags(
    name: str, flags: str, vpn: bool
) -> None:
    assert is_vpn_interface(name, flags) is vpn


def test_host_checks_pass_on_this_machine() -> None:
    report = cli("check", "--only", "host", "--format", "json").json
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["host.os"]["status"] == "pass"
    assert by_id["host.os"]["details"]["os"] == "Linux"
    assert by_id["host.interfaces"]["status"] == "pass"
    assert report["host"]["interfaces"] and report["host"]["hostname"]


@pytest.fixture
def netns_with_tun() -> Iterator[str]:
    name = f"sdv{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["ip", "-n", name, "link", "set", "lo", "up"],
            ["ip", "-n", name, "link", "add", "veth0", "type", "veth", "peer", "veth1"],
            ["ip", "-n", name, "addr", "add", "10.98.7.1/24", "dev", "veth0"],
            ["ip", "-n", name, "link", "set", "veth0", "up"],
            ["ip", "-n", name, "link", "set", "veth1", "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_machine_with_only_loopback_fails_host_interfaces() -> None:
    # A namespace with only loopback up: nothing routes anywhere.
    bare = f"sdb{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", bare], check=True)
    try:
        r = cli_process(
            "check",
            "--only",
            "host.interfaces",
            "--format",
            "json",
            prefix=["ip", "netns", "exec", bare],
        )
        check = r.json["checks"][0]
        assert (check["id"], check["status"]) == ("host.interfaces", "fail")
        assert check["hint"] == "connect this machine to the network (cable or Wi-Fi) and re-run"
        assert r.code == 1
    finally:
        subprocess.run(["ip", "netns", "del", bare], check=False)


def test_a_vpn_tun_interface_that_is_up_warns_and_becomes_a_finding(netns_with_tun: str) -> None:
    ns = netns_with_tun
    with held_tun(ns, "tun7", "10.8.0.1", "10.8.0.2"):
        r = cli_process(
            "check", "--only", "host.vpn", "--format", "json", prefix=["ip", "netns", "exec", ns]
        )
        report = r.json
        check = report["checks"][0]
        assert (check["id"], check["status"]) == ("host.vpn", "warn")
        assert check["details"]["vpn_interfaces"][0]["name"] == "tun7"
        assert "10.8.0.1" in check["details"]["vpn_interfaces"][0]["addresses"]
        assert "re-run with the VPN (tun7) disconnected" in check["hint"]
        assert [f["cause"] for f in report["findings"]] == ["host.vpn_active"]
        assert report["verdict"] == "degraded"
        assert next(i for i in report["host"]["interfaces"] if i["name"] == "tun7")["is_vpn"]
        assert r.code == 0  # a warning, not a failure
        assert (
            cli_process(
                "check",
                "--only",
                "host.vpn",
                "--fail-on",
                "warn",
                prefix=["ip", "netns", "exec", ns],
            ).code
            == 1
        )


def test_no_vpn_in_a_namespace_with_only_ethernet_passes(netns_with_tun: str) -> None:
    r = cli_process(
        "check",
        "--only",
        "host.vpn",
        "--format",
        "json",
        prefix=["ip", "netns", "exec", netns_with_tun],
    )
    assert r.json["checks"][0]["status"] == "pass"


def test_proxy_credentials_are_redacted() -> None:
    found = proxies({"HTTPS_PROXY": "http://bob:hunter2@proxy.corp:3128", "no_proxy": "localhost"})
    assert found == {"https_proxy": "http://[redacted]@proxy.corp:3128", "no_proxy": "localhost"}
    result = check_proxy(make_context(environ={"http_proxy": "http://u:pw@p:8080"}))
    assert result.status is Status.PASS and "pw" not in result.summary


def test_clock_offset_compares_whole_seconds() -> None:
    assert clock_offset_ms("Fri, 27 Nov 2026 04:10:00 GMT", "2026-11-27T04:10:07.900Z") == 7000
    assert clock_offset_ms("Fri, 27 Nov 2026 04:10:00 GMT", "2026-11-27T04:09:58.100Z") == -2000
    assert clock_offset_ms("yesterday", "2026-11-27T04:09:58.100Z") is None


def _register_result(server_date: str | None, local: dt.datetime) -> CheckResult:
    attempt = {
        "ok": True,
        "code": 200,
        "server_date": server_date,
        "local_time": local.isoformat().replace("+00:00", "Z"),
    }
    return passed("registered", attempts=[attempt])


def test_host_clock_warns_beyond_five_seconds_of_skew() -> None:
    local = dt.datetime(2026, 11, 27, 4, 10, 30, tzinfo=dt.timezone.utc)
    skewed = make_context(
        results={"sip.register": _register_result("Fri, 27 Nov 2026 04:10:00 GMT", local)}
    )
    result = check_clock(skewed)
    assert result.status is Status.WARN
    assert result.details["clock_offset_ms"] == 30000
    assert result.summary == "clock is 30.0 s ahead of the registrar's"
    ok = make_context(
        results={"sip.register": _register_result("Fri, 27 Nov 2026 04:10:29 GMT", local)}
    )
    assert check_clock(ok).status is Status.PASS


def test_host_clock_skips_without_a_registrar_date() -> None:
    local = dt.datetime(2026, 11, 27, 4, 10, 30, tzinfo=dt.timezone.utc)
    assert check_clock(make_context()).status is Status.SKIP
    no_date = make_context(results={"sip.register": _register_result(None, local)})
    assert check_clock(no_date).summary == "no registrar Date header to compare against"


def test_host_proxy_reports_the_environment_proxy_without_credentials() -> None:
    r = cli_process(
        "check",
        "--only",
        "host.proxy",
        "--format",
        "json",
        env={"HTTPS_PROXY": "http://bob:hunter2@proxy.corp:3128"},
    )
    check = r.json["checks"][0]
    assert (check["id"], check["status"]) == ("host.proxy", "pass")
    assert check["details"]["proxies"] == {"https_proxy": "http://[redacted]@proxy.corp:3128"}
    assert r.json["host"]["proxies"] == check["details"]["proxies"]
    assert "hunter2" not in r.out + r.err
