"""net.route: the interface, address and MTU that carry traffic to the registrar."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from clihelp import cli, cli_process
from peers.tun import held_tun


def test_a_loopback_registrar_is_reached_through_lo() -> None:
    r = cli("check", "--registrar", "sip:127.0.0.1:5999", "--only", "net.route", "--format", "json")
    check = r.json["checks"][0]
    assert (check["id"], check["status"]) == ("net.route", "pass")
    assert check["details"]["interface"] == "lo"
    assert check["details"]["local_address"] == "127.0.0.1"
    assert check["details"]["mtu"] == 65536 and check["details"]["is_vpn"] is False
    assert r.json["findings"] == []


@pytest.fixture
def vpn_namespace() -> Iterator[str]:
    name = f"sdr{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_registrar_routed_through_a_vpn_warns_with_the_interface_and_mtu(
    vpn_namespace: str,
) -> None:
    ns = vpn_namespace
    with held_tun(ns, "tun3", "10.8.3.1", "10.8.3.2"):
        subprocess.run(["ip", "-n", ns, "link", "set", "tun3", "mtu", "1280"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", "10.77.0.0/16", "dev", "tun3"], check=True)
        r = cli_process(
            "check",
            "--registrar",
            "sip:10.77.0.5",
            "--only",
            "net.route",
            "--format",
            "json",
            prefix=["ip", "netns", "exec", ns],
        )
    check = r.json["checks"][0]
    assert check["status"] == "warn"
    assert check["details"]["interface"] == "tun3" and check["details"]["is_vpn"] is True
    assert check["summary"] == (
        "traffic to 10.77.0.5 goes through the VPN interface tun3 "
        "(10.8.3.1), MTU 1280 (SIP over UDP above 1252 bytes will "
        "fragment)"
    )
    finding = r.json["findings"][0]
    assert finding["cause"] == "host.vpn_active" and finding["evidence"]["checks"] == ["net.route"]
