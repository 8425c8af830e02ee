"""net.nat (RFC 5780 mapping and filtering) against coturn on loopback and behind real Linux NAT
in namespaces (masquerade, masquerade random, plain routing), plus the classification rules."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun as codec
from clihelp import cli
from contexts import make_context
from peers.checkdriver import NAT_CHECK, STUN_CHECK, run_in_netns
from peers.fakestun import FakeStun
from peers.natrouter import (
    CLIENT_IP,
    ROUTER_OUTSIDE_IP,
    SERVER_ALT_IP,
    SERVER_IP,
    STUN_ALT_PORT,
    STUN_PORT,
    NatRouter,
)
from peers.process import socket_in_netns
from peers.stun import Stun

from checks.net.nat import (
    ADM,
    APDM,
    EIM,
    NO_ALTERNATE,
    NO_ALTERNATE_HINT,
    RELAY_HINT,
    UNKNOWN,
    check_nat,
    classify_filtering,
    classify_mapping,
)
from checks.net.stun import Transaction, check_stun, exchange_udp
from diag.model import Status

pytestmark = pytest.mark.integration
PRIMARY, ALTERNATE = (SERVER_IP, STUN_PORT), (SERVER_ALT_IP, STUN_ALT_PORT)

MakeTopology = Callable[[str | None], NatRouter]


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


@pytest.fixture
def nat_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeTopology]:
    """``nat_topology("masquerade random")`` -> client/router/server namespaces with coturn
    running in ``server``; None routes without NAT. All deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("nat_topology needs root (network namespaces, nftables)", pytrace=False)
    made: list[NatRouter] = []

    def make(nat: str | None) -> NatRouter:
        topo = NatRouter.create(tmp_path_factory.mktemp("nat"), nat=nat)
        made.append(topo)
        topo.start_stun()
        return topo

    try:
        yield make
    finally:
        for topo in made:
            topo.destroy()


def checks_by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


@pytest.mark.usefixtures("data_home")
def test_loopback_coturn_is_no_nat_and_lets_every_test_answer(stun: Stun) -> None:
    r = cli("check", "--stun", stun.server, "--format", "json", registry=[STUN_CHECK, NAT_CHECK])
    nat = checks_by_id(r.json)["net.nat"]
    assert (nat["status"], r.code) == ("pass", 0)
    d = nat["details"]
    assert d["nat_present"] is False and d["mapped"] == d["local"]
    assert (d["mapping"], d["filtering"]) == (EIM, EIM)
    assert d["other_address"] == f"{stun.alt_host}:{stun.alt_port}"
    assert nat["summary"] == (
        f"no NAT between this machine and {stun.server} (endpoint-independent filtering)"
    )
    tests = [(t["purpose"], t["target"], t["change_request"], t["source"]) for t in d["tests"]]
    primary, alt = stun.server, f"{stun.alt_host}:{stun.alt_port}"
    assert tests == [
        ("mapping", primary, None, primary),
        ("mapping", f"{stun.alt_host}:{stun.port}", None, f"{stun.alt_host}:{stun.port}"),
        ("mapping", alt, None, alt),
        ("filtering", primary, None, primary),
        ("filtering", primary, "ip+port", alt),
        ("filtering", primary, "port", f"{stun.host}:{stun.alt_port}"),
    ]
    assert all(t["answered"] and t["rtt_ms"] is not None for t in d["tests"])
    assert nat["duration_ms"] < 500


def test_net_nat_alone_asks_the_servers_itself(stun: Stun) -> None:
    result = check_nat(make_context(stun=(stun.server,)))  # no net.stun result to read
    assert result.status == Status.PASS and result.details["mapping"] == EIM


def test_a_server_without_an_alternate_address_skips_with_the_hint() -> None:
    with FakeStun() as plain:
        ctx = make_context(stun=(plain.server,))
        stun_result = check_stun(ctx)
        result = check_nat(ctx.for_check(ctx.deadline, {"net.stun": stun_result}))
    assert result.status == Status.SKIP
    assert result.summary == NO_ALTERNATE
    assert result.summary == "the STUN server offers no alternate address (RFC 5780 OTHER-ADDRESS)"
    assert result.hint == NO_ALTERNATE_HINT
    assert result.details["nat_present"] is False and result.details["mapping"] == UNKNOWN


def test_linux_masquerade_keeps_the_port_for_every_destination_but_filters_by_address_and_port(
    nat_topology: MakeTopology, tmp_path: Path
) -> None:
    topo = nat_topology("masquerade")
    r = run_in_netns(topo.client, tmp_path, "--stun", topo.stun_server)
    nat = checks_by_id(r.json)["net.nat"]
    d = nat["details"]
    assert (nat["status"], r.code) == ("pass", 0), nat
    assert d["nat_present"] is True and d["mapped"].startswith(f"{ROUTER_OUTSIDE_IP}:")
    # Masquerade keeps the source port when it can: one public port for all three destinations.
    local_port = d["local"].rsplit(":", 1)[1]
    assert {t["mapped"] for t in d["tests"][:3]} == {f"{ROUTER_OUTSIDE_IP}:{local_port}"}
    assert (d["mapping"], d["filtering"]) == (EIM, APDM)
    assert [t["answered"] for t in d["tests"][3:]] == [True, False, False]  # conntrack drops them
    assert nat["summary"] == (
        "the NAT keeps one public address per socket (endpoint-independent mapping, "
        f"address-and-port-dependent filtering; {d['local']} is seen as {d['mapped']} by "
        f"{topo.stun_server})"
    )
    assert nat["duration_ms"] < 2000


def test_masquerade_random_maps_each_destination_to_a_new_port_and_warns(
    nat_topology: MakeTopology, tmp_path: Path
) -> None:
    topo = nat_topology("masquerade random")
    r = run_in_netns(topo.client, tmp_path, "--stun", topo.stun_server)
    nat = checks_by_id(r.json)["net.nat"]
    d = nat["details"]
    assert (nat["status"], r.code) == ("warn", 0), nat
    assert (d["mapping"], d["filtering"], d["nat_present"]) == (APDM, APDM, True)
    assert len({t["mapped"] for t in d["tests"][:3]}) == 3
    assert nat["hint"] == RELAY_HINT
    assert RELAY_HINT == (
        "inbound calls and media need a relay (TURN): configure a TURN server in the "
        "softphone, or ask IT for endpoint-independent NAT mapping (RFC 4787) for this machine"
    )
    assert nat["summary"].startswith(
        "the NAT maps each destination to a new public port (address-and-port-dependent "
        "mapping, address-and-port-dependent filtering; "
    )


def test_a_router_without_nat_is_no_nat(nat_topology: MakeTopology, tmp_path: Path) -> None:
    topo = nat_topology(None)
    r = run_in_netns(topo.client, tmp_path, "--stun", topo.stun_server)
    stun_check, nat = checks_by_id(r.json)["net.stun"], checks_by_id(r.json)["net.nat"]
    assert stun_check["details"]["public_addresses"] == []
    assert nat["status"] == "pass" and nat["details"]["mapped"].startswith(f"{CLIENT_IP}:")
    assert nat["summary"] == (
        f"no NAT between this machine and {topo.stun_server} (endpoint-independent filtering)"
    )


def test_an_alternate_address_that_does_not_answer_leaves_the_mapping_unknown(
    nat_topology: MakeTopology, tmp_path: Path
) -> None:
    topo = nat_topology("masquerade")
    topo.block_router_forward(f"ip daddr {SERVER_ALT_IP} drop")
    r = run_in_netns(topo.client, tmp_path, "--stun", topo.stun_server)
    nat = checks_by_id(r.json)["net.nat"]
    assert nat["status"] == "skip" and nat["details"]["mapping"] == UNKNOWN
    assert nat["summary"] == (
        f"the STUN server's alternate address {SERVER_ALT_IP}:{STUN_PORT} does not answer, so "
        "the NAT's mapping behaviour is unknown"
    )
    assert nat["hint"] == (
        f"allow outbound UDP to {SERVER_ALT_IP} as well, or use a STUN server whose second "
        "address is reachable"
    )


def test_a_budget_too_short_for_the_nat_tests_is_an_error_not_a_verdict(
    nat_topology: MakeTopology, tmp_path: Path
) -> None:
    topo = nat_topology("masquerade")
    topo.block_router_forward(f"ip daddr {SERVER_ALT_IP} drop")
    r = run_in_netns(topo.client, tmp_path, "--stun", topo.stun_server, "--timeout", "1")
    nat = checks_by_id(r.json)["net.nat"]
    assert nat["status"] == "error" and nat["summary"] == "the NAT tests did not finish"
    assert nat["hint"] == "re-run with a larger --timeout"
    assert nat["details"]["mapping"] == UNKNOWN and nat["duration_ms"] < 1000


def test_rfc_3489_test_order_is_why_pjsua2_calls_masquerade_symmetric(
    nat_topology: MakeTopology,
) -> None:
    """pjnath asks for "change IP and port" before it binds to CHANGED-ADDRESS. Masquerade drops
    that answer, but the router still records a conntrack entry for ALTERNATE -> router:port,
    so the later binding to ALTERNATE cannot reuse the port and gets a new one."""
    topo = nat_topology("masquerade")

    def mapped_ports(*steps: Transaction) -> list[int | None]:
        with socket_in_netns(topo.client) as sock:
            sock.bind((CLIENT_IP, 0))
            for step in steps:
                exchange_udp(sock, [step], time.monotonic() + 0.5, time.monotonic)
        return [t.mapped[1] if t.mapped else None for t in steps]

    clean = mapped_ports(Transaction(PRIMARY), Transaction(ALTERNATE))
    assert clean[0] == clean[1]  # RFC 5780 order: endpoint-independent
    first, dropped, to_alternate = mapped_ports(
        Transaction(PRIMARY), Transaction(PRIMARY, change=6), Transaction(ALTERNATE)
    )
    assert dropped is None and first is not None and to_alternate not in (None, first)


def answered(target: tuple[str, int], source: tuple[str, int], mapped: tuple[str, int]) -> Any:
    t = Transaction(target)
    t.response = codec.Message(
        codec.Method.BINDING,
        codec.Class.RESPONSE,
        t.request.transaction_id,
        {"XOR-MAPPED-ADDRESS": mapped},
    )
    t.source = source
    return t


def test_the_mapping_follows_the_destination_address_when_iii_keeps_iis_port() -> None:
    i = answered(PRIMARY, PRIMARY, ("192.0.2.1", 1000))
    ii = answered((SERVER_ALT_IP, STUN_PORT), (SERVER_ALT_IP, STUN_PORT), ("192.0.2.1", 2000))
    iii = answered(ALTERNATE, ALTERNATE, ("192.0.2.1", 2000))
    assert classify_mapping(i, ii, iii) == ADM
    assert classify_mapping(i, Transaction(ALTERNATE), iii) == UNKNOWN


def test_filtering_needs_answers_from_where_change_request_sends_them() -> None:
    i = answered(PRIMARY, PRIMARY, ("192.0.2.1", 1000))
    port_ok = answered(PRIMARY, (SERVER_IP, STUN_ALT_PORT), ("192.0.2.1", 1000))
    assert classify_filtering(i, Transaction(PRIMARY, 6), port_ok, ALTERNATE, True) == ADM
    # A server that ignores CHANGE-REQUEST answers from the primary address: no evidence.
    ignored = answered(PRIMARY, PRIMARY, ("192.0.2.1", 1000))
    assert classify_filtering(i, ignored, Transaction(PRIMARY, 2), ALTERNATE, True) == UNKNOWN
    silent = Transaction(PRIMARY, 6), Transaction(PRIMARY, 2)
    assert classify_filtering(i, *silent, ALTERNATE, True) == APDM
    assert classify_filtering(i, *silent, ALTERNATE, False) == UNKNOWN
