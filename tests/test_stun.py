"""net.stun against real coturn (loopback and behind a NAT router), a scripted fake STUN server
(ALG rewriting MAPPED-ADDRESS, lost requests, errors, silence) and firewalled namespaces."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli
from contexts import make_context
from peers.checkdriver import STUN_CHECK, run_in_netns
from peers.dnsmasq import DnsmasqFactory, host
from peers.fakestun import FakeStun
from peers.natrouter import CLIENT_IP, ROUTER_OUTSIDE_IP, SERVER_IP, NatRouter
from peers.stun import Stun

from checks.net.stun import check_stun
from diag.model import CheckResult, Status

pytestmark = pytest.mark.integration


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved reports go to a temporary directory, not the real user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


@pytest.fixture
def nat_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatRouter]:
    """client -> masquerading router -> server (coturn on 10.96.0.2/.3, 3478/3479)."""
    if os.geteuid() != 0:
        pytest.fail("nat_router needs root (network namespaces, nftables)", pytrace=False)
    topo = NatRouter.create(tmp_path_factory.mktemp("nat"))
    try:
        topo.start_stun()
        yield topo
    finally:
        topo.destroy()


def run_stun(*servers: str, budget: float = 5.0, dns_server: str | None = None) -> CheckResult:
    return check_stun(make_context(stun=servers, dns_server=dns_server, budget=budget))


def by_transport(result: CheckResult | dict[str, Any], server: str) -> dict[str, dict[str, Any]]:
    details = result.details if isinstance(result, CheckResult) else result["details"]
    return {r["transport"]: r for r in details["servers"] if r["server"] == server}


@pytest.mark.usefixtures("data_home")
def test_coturn_on_loopback_sees_us_as_ourselves_over_udp_and_tcp(stun: Stun) -> None:
    t0 = time.monotonic()
    r = cli("check", "--stun", stun.server, "--format", "json", registry=[STUN_CHECK])
    elapsed = time.monotonic() - t0
    check = r.json["checks"][0]
    assert (check["id"], check["status"], r.code) == ("net.stun", "pass", 0)
    rec = by_transport(check, stun.server)
    for transport in ("udp", "tcp"):
        assert rec[transport]["outcome"] == "answered"
        assert rec[transport]["mapped"] == rec[transport]["local"]  # nothing between us
        assert rec[transport]["mapped_plain"] == rec[transport]["mapped"]
        assert rec[transport]["other_address"] == f"{stun.alt_host}:{stun.alt_port}"
        assert rec[transport]["alg_suspected"] is False
    assert rec["udp"]["sent"] == 1 and rec["udp"]["rtt_ms"] < 100
    assert check["summary"] == (
        f"{stun.server} sees us as {rec['udp']['mapped']} ({rec['udp']['rtt_ms']} ms, TCP too)"
    )
    details = check["details"]
    assert details["public_addresses"] == [] and details["local_address"] == "127.0.0.1"
    assert "127.0.0.1" in r.json["correlation"]["local_addresses"]
    assert elapsed < 1.5


def test_a_server_that_does_not_answer_next_to_one_that_does_warns(stun: Stun) -> None:
    with FakeStun(silent=True) as hole:
        t0 = time.monotonic()
        result = run_stun(stun.server, hole.server)
        elapsed = time.monotonic() - t0
        sends = len(hole.received)
    udp = by_transport(result, hole.server)["udp"]
    assert result.status == Status.WARN
    assert udp["outcome"] == "timeout" and udp["error"] == "no answer in 2.0 s"
    # RFC 5389 retransmissions: sent at 0, 0.1, 0.3, 0.7 and 1.5 s within the 2 s wait.
    assert udp["sent"] == sends == 5
    assert by_transport(result, hole.server)["tcp"]["outcome"] == "refused"
    assert result.summary.endswith(f"; {hole.server} no answer over UDP")
    assert result.hint == (
        f"allow outbound UDP {hole.port} to 127.0.0.1 in the firewall/VPN, and check that "
        "127.0.0.1 is the right STUN server"
    )
    assert 1.9 < elapsed < 2.5


def test_icmp_port_unreachable_fails_at_once_as_refused() -> None:
    with FakeStun(silent=True) as closed:
        port = closed.port
    t0 = time.monotonic()
    result = run_stun(f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 0.5
    udp = by_transport(result, f"127.0.0.1:{port}")["udp"]
    assert result.status == Status.FAIL
    assert (udp["outcome"], udp["error"]) == ("refused", "Connection refused")
    assert result.hint == (
        f"127.0.0.1 refused UDP {port}: check the STUN server's address and port, and allow "
        f"outbound UDP {port} to 127.0.0.1"
    )


def test_a_budget_too_short_to_wait_is_no_evidence() -> None:
    with FakeStun(silent=True) as hole:
        result = run_stun(hole.server, budget=0.6)
    udp = by_transport(result, hole.server)["udp"]
    assert udp["outcome"] == "not_finished" and udp["error"].startswith("only 0.")
    assert result.status == Status.ERROR and result.hint == "re-run with a larger --timeout"


def test_lost_requests_are_retransmitted_per_rfc_5389() -> None:
    with FakeStun(ignore_first=2) as lossy:
        result = run_stun(lossy.server)
    udp = by_transport(result, lossy.server)["udp"]
    assert result.status == Status.PASS
    assert udp["sent"] == 3 and 250 <= udp["rtt_ms"] < 500  # answered the send at 0.3 s


def test_stray_datagrams_and_foreign_transactions_are_ignored() -> None:
    with FakeStun(junk_first=True) as noisy:
        result = run_stun(noisy.server)
    udp = by_transport(result, noisy.server)["udp"]
    assert result.status == Status.PASS and udp["mapped"] == udp["local"]


def test_a_rewritten_mapped_address_next_to_the_xor_one_suspects_an_alg() -> None:
    with FakeStun(rewrite_mapped=("192.0.2.10", 5060)) as alg:
        result = run_stun(alg.server)
    udp = by_transport(result, alg.server)["udp"]
    assert udp["alg_suspected"] is True and result.details["alg_suspected"] is True
    assert udp["mapped"] == udp["local"]  # XOR-MAPPED-ADDRESS: what the server really saw
    assert udp["mapped_plain"] == "192.0.2.10:5060"
    assert udp["software"] == "fake-stun/1.0" and udp["other_address"] is None
    assert result.status == Status.PASS  # reachability is fine; net.sip_alg is diagnosis's call
    assert result.summary.endswith(
        f"; {alg.server} over UDP: MAPPED-ADDRESS 192.0.2.10:5060 but XOR-MAPPED-ADDRESS "
        f"{udp['mapped']} (something on the path rewrites addresses)"
    )
    assert result.details["public_addresses"] == []


def test_an_rfc_3489_server_is_read_from_mapped_and_changed_address() -> None:
    with FakeStun(rfc3489=True, other_address=("127.0.0.2", 3479)) as old:
        result = run_stun(old.server)
    udp = by_transport(result, old.server)["udp"]
    assert result.status == Status.PASS
    assert udp["mapped"] == udp["mapped_plain"] == udp["local"]
    assert udp["alg_suspected"] is False  # nothing to compare without XOR-MAPPED-ADDRESS
    assert udp["other_address"] == "127.0.0.2:3479"


def test_a_stun_error_response_fails_naming_it() -> None:
    with FakeStun(error=(400, "Bad Request")) as broken:
        result = run_stun(broken.server)
    udp = by_transport(result, broken.server)["udp"]
    assert (udp["outcome"], udp["error"]) == ("error", "STUN error 400 Bad Request")
    assert result.status == Status.FAIL
    assert result.hint == (
        f"check that 127.0.0.1:{broken.port} is a STUN server (STUN error 400 Bad Request), "
        f"and allow outbound UDP {broken.port} to 127.0.0.1"
    )


def test_a_server_name_resolves_through_the_dns_server_given(
    dnsmasq: DnsmasqFactory, stun: Stun
) -> None:
    dns = dnsmasq(host("stun.cc.test", "127.0.0.1"))
    good, bad = f"stun.cc.test:{stun.port}", "nostun.cc.test"
    result = run_stun(good, bad, dns_server=dns.server)
    assert by_transport(result, good)["udp"]["address"] == f"127.0.0.1:{stun.port}"
    assert by_transport(result, good)["udp"]["outcome"] == "answered"
    missing = by_transport(result, bad)["udp"]
    assert missing["outcome"] == "dns_failure" and missing["error"].startswith(
        "cannot resolve nostun.cc.test: tried A nostun.cc.test"
    )
    assert result.status == Status.WARN
    assert result.hint == "check the STUN server name nostun.cc.test and this machine's DNS servers"


def test_behind_masquerade_the_public_address_is_the_routers(
    nat_router: NatRouter, tmp_path: Path
) -> None:
    r = run_in_netns(nat_router.client, tmp_path, "--stun", nat_router.stun_server)
    check = r.json["checks"][0]
    assert check["status"] == "pass", check
    rec = by_transport(check, nat_router.stun_server)
    for transport in ("udp", "tcp"):
        assert rec[transport]["mapped"].startswith(f"{ROUTER_OUTSIDE_IP}:")
        assert rec[transport]["local"].startswith(f"{CLIENT_IP}:")
        assert rec[transport]["software"].startswith("Coturn-4.6")
    details = check["details"]
    assert details["public_addresses"] == [ROUTER_OUTSIDE_IP]
    assert details["local_address"] == CLIENT_IP
    assert ROUTER_OUTSIDE_IP in r.json["correlation"]["public_addresses"]


def test_udp_3478_dropped_by_this_machine_fails_at_once(
    nat_router: NatRouter, tmp_path: Path
) -> None:
    nat_router.block_client_output("udp dport 3478 drop")
    t0 = time.monotonic()
    r = run_in_netns(nat_router.client, tmp_path, "--stun", nat_router.stun_server)
    elapsed = time.monotonic() - t0
    stun_check, nat_check = r.json["checks"]
    rec = by_transport(stun_check, nat_router.stun_server)
    assert (stun_check["status"], r.code) == ("fail", 1)
    assert rec["udp"]["outcome"] == "refused"  # the kernel says EPERM to the sender
    assert rec["udp"]["error"] == "this machine's firewall did not let it out (EPERM)"
    assert rec["tcp"]["outcome"] == "answered"
    assert (
        stun_check["hint"]
        == f"this machine's firewall blocks it: allow outbound UDP 3478 to {SERVER_IP}"
    )
    assert nat_check["status"] == "skip"
    assert elapsed < 5


def test_udp_3478_dropped_on_the_way_fails_within_the_deadline(
    nat_router: NatRouter, tmp_path: Path
) -> None:
    nat_router.block_router_forward("udp dport 3478 drop")
    r = run_in_netns(
        nat_router.client, tmp_path, "--stun", nat_router.stun_server, "--timeout", "4"
    )
    stun_check, nat_check = r.json["checks"]
    rec = by_transport(stun_check, nat_router.stun_server)
    assert (stun_check["status"], r.code) == ("fail", 1)
    assert rec["udp"]["outcome"] == "timeout" and rec["tcp"]["outcome"] == "answered"
    assert 1900 <= stun_check["duration_ms"] < 2500
    assert (
        stun_check["summary"] == f"{nat_router.stun_server} no answer over UDP (answers over TCP)"
    )
    assert stun_check["hint"] == (
        f"allow outbound UDP 3478 to {SERVER_IP} in the firewall/VPN: STUN over TCP answers, "
        "so UDP is blocked on the way"
    )
    assert nat_check["status"] == "skip" and nat_check["summary"] == (
        "no STUN server answered over UDP (see net.stun), so the NAT cannot be measured"
    )
