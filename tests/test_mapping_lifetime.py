"""checks/wire/mapping: a UDP NAT mapping's lifetime measured with coturn's RESPONSE-PORT, behind
a real Linux masquerade router whose conntrack UDP timeout is lowered (tests/README.md §NAT),
on loopback without NAT, against coturn on one address (no RFC 5780), and against a silent path."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun as codec
from peers.natrouter import SERVER_ALT_IP, SERVER_IP, STUN_ALT_PORT, STUN_PORT, NatRouter
from peers.process import Daemon, free_port, socket_in_netns, udp_answers
from peers.stun import Stun, binding_request_message, parse_binding_success

from checks.wire.mapping import (
    CONTROL_LOST,
    IGNORES_RESPONSE_PORT,
    NO_ANSWER,
    NO_OTHER_ADDRESS,
    NO_TIME,
    REJECTS_RESPONSE_PORT,
    ladder,
    mapping_lifetime,
)
from checks.wire.stun import RESPONSE_PORT, Transaction, exchange_udp, parse_message

PRIMARY = (SERVER_IP, STUN_PORT)
NAT_TIMEOUT = 5  # seconds the router keeps a silent UDP mapping in the short-timeout tests


MakeTopology = Callable[[str], NatRouter]


@pytest.fixture
def nat_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeTopology]:
    """``nat_topology("masquerade random")``: client -> router with that source NAT -> coturn on
    10.96.0.2/.3 (3478/3479). All deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the NAT topology needs root (network namespaces, nftables)", pytrace=False)
    made: list[NatRouter] = []

    def make(statement: str) -> NatRouter:
        topo = NatRouter.create(tmp_path_factory.mktemp("mapping"), nat=statement)
        made.append(topo)
        topo.start_stun()
        return topo

    try:
        yield make
    finally:
        for topo in made:
            topo.destroy()


@pytest.fixture
def nat(nat_topology: MakeTopology) -> NatRouter:
    """The default: Linux masquerade, which keeps the source port."""
    return nat_topology("masquerade")


def in_client(topo: NatRouter) -> Callable[[int], socket.socket]:
    """Sockets for mapping_lifetime, made in the client namespace (behind the NAT)."""
    return lambda family: socket_in_netns(topo.client, family)


def measure(
    topo: NatRouter, waits: list[float], budget: float = 30.0
) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    result = mapping_lifetime(PRIMARY, waits, start + budget, make_socket=in_client(topo))
    return result, time.monotonic() - start


@pytest.mark.integration
def test_a_nat_that_forgets_after_5_s_answers_after_2_s_but_not_after_9(nat: NatRouter) -> None:
    nat.set_udp_timeout(NAT_TIMEOUT)
    result, took = measure(nat, [2, 9])
    assert result["error"] is None and result["control"] is True
    assert (result["lifetime_at_least"], result["lifetime_at_most"]) == (2.0, 9.0)
    assert result["server"] == f"{SERVER_IP}:{STUN_PORT}"
    assert result["other"] == f"{SERVER_ALT_IP}:{STUN_ALT_PORT}"
    short, long = result["probes"]
    assert (short["after"], short["answered"], long["after"], long["answered"]) == (
        2.0, True, 9.0, False
    )  # fmt: skip
    # Alive: A asks again and keeps its public port. Forgotten: our answer to the old port left a
    # conntrack entry on the router, so masquerade gives A a new port.
    assert short["mapping_changed"] is False and short["mapped_after"] == short["mapped"]
    assert long["mapping_changed"] is True and long["mapped_after"] != long["mapped"]
    assert result["mapping_changed"] is True and result["stopped"] is False
    assert took < 9 + 1


@pytest.mark.integration
def test_the_ladder_narrows_the_bracket_to_the_nat_timeout(nat: NatRouter) -> None:
    nat.set_udp_timeout(NAT_TIMEOUT)
    waits = ladder([2, 9], budget=30)
    assert waits == [2.0, 2.4, 2.9, 4.2, 5.1, 6.1, 7.4, 9.0]
    result, took = measure(nat, waits)
    assert (result["lifetime_at_least"], result["lifetime_at_most"]) == (4.2, 5.1)
    assert [p["answered"] for p in result["probes"]] == [True] * 4 + [False] * 4
    assert took < 9 + 1


@pytest.mark.integration
def test_with_the_default_30_s_timeout_every_wait_is_answered(nat: NatRouter) -> None:
    result, took = measure(nat, [2, 5])
    assert result["error"] is None
    assert [(p["after"], p["answered"]) for p in result["probes"]] == [(2.0, True), (5.0, True)]
    assert (result["lifetime_at_least"], result["lifetime_at_most"]) == (5.0, None)
    assert result["mapping_changed"] is False
    assert took < 5 + 1


@pytest.mark.integration
def test_a_server_behind_a_silent_firewall_is_an_error_within_the_deadline(
    nat: NatRouter,
) -> None:
    nat.block_router_forward(f"ip daddr {SERVER_IP} udp dport {STUN_PORT} drop")
    result, took = measure(nat, [2, 9], budget=12)
    assert result["error"] == NO_ANSWER == "no answer from STUN server"
    assert result["lifetime_at_least"] is None and result["lifetime_at_most"] is None
    assert [p["answered"] for p in result["probes"]] == [None, None]
    assert took < 1.5  # the first answers' window (1 s), not the waits


@pytest.mark.integration
def test_a_nat_with_a_new_port_per_destination_still_lets_the_answer_in(
    nat_topology: MakeTopology,
) -> None:
    """masquerade random (address-and-port-dependent mapping): the answer comes from the very
    address and port A's mapping was made for, so it still finds A."""
    topo = nat_topology("masquerade random")
    topo.set_udp_timeout(NAT_TIMEOUT)
    result, took = measure(topo, [1, 7])
    assert result["error"] is None and result["control"] is True
    assert (result["lifetime_at_least"], result["lifetime_at_most"]) == (1.0, 7.0)
    assert took < 7 + 1


@pytest.mark.integration
def test_setting_stop_ends_the_waits_and_keeps_what_is_known(nat: NatRouter) -> None:
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    start = time.monotonic()
    result = mapping_lifetime(PRIMARY, [5, 20], start + 30, stop=stop, make_socket=in_client(nat))
    took = time.monotonic() - start
    assert result["stopped"] is True and result["error"] is None
    assert result["control"] is True and result["lifetime_at_least"] == 0.0
    assert [p["answered"] for p in result["probes"]] == [None, None]
    assert all(p["mapped"] for p in result["probes"])  # the first Bindings were answered
    assert 1.0 <= took < 1.2


@pytest.mark.integration
def test_waits_that_cannot_finish_before_the_deadline_are_not_run(nat: NatRouter) -> None:
    result, took = measure(nat, [1, 20], budget=3)
    assert [(p["after"], p["answered"]) for p in result["probes"]] == [(1.0, True), (20.0, None)]
    assert result["probes"][1]["mapped"] is None
    assert (result["lifetime_at_least"], result["lifetime_at_most"]) == (1.0, None)
    assert took < 3


def test_a_budget_that_holds_no_wait_sends_nothing_and_says_so() -> None:
    start = time.monotonic()
    result = mapping_lifetime(PRIMARY, [5, 9], start + 5.5)
    assert result["error"] == NO_TIME.format(overhead=1.0)
    assert result["error"] == (
        "no wait fits in the time left (each needs about 1 s more than itself)"
    )
    assert [p["answered"] for p in result["probes"]] == [None, None]
    assert time.monotonic() - start < 0.1


@pytest.mark.integration
def test_without_nat_on_loopback_coturn_answers_every_wait(stun: Stun) -> None:
    start = time.monotonic()
    result = mapping_lifetime((stun.host, stun.port), [0.3, 0.6], start + 5)
    assert result["error"] is None and result["control"] is True
    assert [p["answered"] for p in result["probes"]] == [True, True]
    assert result["other"] == f"{stun.alt_host}:{stun.alt_port}"
    assert result["mapping_changed"] is False
    assert time.monotonic() - start < 0.6 + 1


@pytest.fixture
def coturn_one_address(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """coturn on 127.0.0.1 alone: no alternate address, so no RFC 5780."""
    port = free_port(["127.0.0.1"], ("udp",))
    argv = [
        "turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
        "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--simple-log",
        f"--pidfile={tmp_path / 'turnserver.pid'}", f"--db={tmp_path / 'turndb'}",
    ]  # fmt: skip
    tid = secrets.token_bytes(12)
    ready = udp_answers(
        "127.0.0.1", port, lambda _: binding_request_message(tid), lambda d: _success(d, tid)
    )
    daemon = Daemon("turnserver-one", argv, tmp_path, cwd=tmp_path).start(ready)
    try:
        yield ("127.0.0.1", port)
    finally:
        daemon.stop()


def _success(data: bytes, tid: bytes) -> bool:
    try:
        parse_binding_success(data, tid)
    except ValueError:
        return False
    return True


@pytest.mark.integration
def test_coturn_on_one_address_ignores_response_port_and_says_so(
    coturn_one_address: tuple[str, int],
) -> None:
    start = time.monotonic()
    result = mapping_lifetime(coturn_one_address, [5], start + 10)
    assert result["error"] == IGNORES_RESPONSE_PORT + NO_OTHER_ADDRESS
    assert result["error"] == (
        "the STUN server does not support RESPONSE-PORT (RFC 5780): it answered the asking "
        "socket, so the mapping lifetime cannot be measured with it; its answers carry no "
        "OTHER-ADDRESS either"
    )
    assert result["other"] is None and result["probes"][0]["answered"] is None
    assert time.monotonic() - start < 0.5
    # The same coturn refuses CHANGE-REQUEST outright, so that is no way round either.
    change = Transaction(coturn_one_address, change=6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        exchange_udp(sock, [change], time.monotonic() + 1, time.monotonic)
    assert change.response is not None and change.attribute("ERROR-CODE")[0] == 420


class RejectingServer:
    """Answers Bindings on loopback, and 420 to any request that carries RESPONSE-PORT (what
    RFC 5389 §7.3.1 asks of a server that does not know the attribute); or nothing at all."""

    def __init__(self, silent_to_response_port: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.silent = silent_to_response_port
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.done.is_set():
            try:
                data, client = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            request = parse_message(data)
            assert request is not None
            attributes: dict[str, Any] = {"XOR-MAPPED-ADDRESS": client}
            kind = codec.Class.RESPONSE
            if struct.pack("!HH", RESPONSE_PORT, 4) in data[20:]:
                if self.silent:
                    continue
                kind, attributes = codec.Class.ERROR, {"ERROR-CODE": (420, "Unknown Attribute")}
            reply = codec.Message(codec.Method.BINDING, kind, request.transaction_id, attributes)
            self.sock.sendto(bytes(reply), client)

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def test_a_server_that_rejects_response_port_is_named_with_its_answer() -> None:
    server = RejectingServer()
    try:
        result = mapping_lifetime(server.address, [3], time.monotonic() + 10)
    finally:
        server.close()
    assert result["error"] == REJECTS_RESPONSE_PORT.format(code=420, reason="Unknown Attribute")
    assert result["error"] == (
        "the STUN server does not support RESPONSE-PORT (RFC 5780): it answered 420 Unknown "
        "Attribute"
    )


def test_a_control_that_gets_no_answer_anywhere_ends_the_run() -> None:
    server = RejectingServer(silent_to_response_port=True)
    start = time.monotonic()
    try:
        result = mapping_lifetime(server.address, [3], start + 10)
    finally:
        server.close()
    assert result["error"] == CONTROL_LOST and result["control"] is False
    assert time.monotonic() - start < 1.0


def test_response_port_is_encoded_after_aioices_attributes_with_the_length_fixed() -> None:
    t = Transaction(PRIMARY, change=2, response_port=40000)
    data = bytes(t.request)
    assert struct.unpack_from("!H", data, 2)[0] == len(data) - 20
    assert data[-8:] == struct.pack("!HHHH", RESPONSE_PORT, 4, 40000, 0)
    parsed = parse_message(data)
    assert parsed is not None and parsed.attributes == {"CHANGE-REQUEST": 2}
    assert parsed.transaction_id == t.request.transaction_id
    assert bytes(Transaction(PRIMARY).request)[2:4] == b"\x00\x00"  # nothing added otherwise


def test_the_ladder_splits_the_widest_ratio_first_and_stays_within_the_budget() -> None:
    assert ladder([30, 90, 300], budget=400, most=5) == [30.0, 52.0, 90.0, 164.3, 300.0]
    assert ladder([30, 90, 300], budget=100, most=3) == [30.0, 52.0, 90.0]  # 300 s does not fit
    assert ladder([5], budget=10) == [5.0]
    assert ladder([], budget=10) == []
    assert ladder([2, 2.3], budget=10) == [2.0, 2.3]  # too close to be worth a socket
    assert len(ladder([1, 900], budget=1000)) == 8
