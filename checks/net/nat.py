"""net.nat: RFC 5780 NAT behaviour discovery against the first --stun server that offers an
alternate address (OTHER-ADDRESS, or RFC 3489 CHANGED-ADDRESS).

Mapping (RFC 5780 §4.3), from ONE local socket: a Binding to the primary address (test I),
then to the alternate IP with the primary port (II) and to the alternate IP and port (III);
the XOR-MAPPED-ADDRESSes are compared. Filtering (§4.4), from a second socket: test I plus
CHANGE-REQUEST "change IP and port" and "change port", sent together; which answers get in.
Two sockets because the tests disturb each other on a real NAT: packets sent to the alternate
address open pinholes that would let the filtering answers in, and a filtering answer the NAT
drops still leaves a connection-tracking entry that can push a later mapping to a new port.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from checks.net.stun import Address, Transaction, exchange_udp, probe_servers
from checks.wire.budget import MIN_CONCLUSIVE_WAIT, RESERVE
from checks.wire.stun import address_text
from diag.context import Context
from diag.model import CheckResult, Status
from diag.outcomes import ANSWERED

CHANGE_IP, CHANGE_PORT = 4, 2  # RFC 5780 §7.2 CHANGE-REQUEST flags
CHANGE_NAMES = {0: None, CHANGE_PORT: "port", CHANGE_IP | CHANGE_PORT: "ip+port"}
TEST_WAIT = 1.2  # per exchange: 4 transmissions (0, 0.1, 0.3, 0.7 s), then the last answer's grace
EIM = "endpoint_independent"
ADM = "address_dependent"
APDM = "address_and_port_dependent"
UNKNOWN = "unknown"
NO_ALTERNATE = "the STUN server offers no alternate address (RFC 5780 OTHER-ADDRESS)"
NO_ALTERNATE_HINT = "use a STUN server with two addresses, e.g. coturn with --listening-ip twice"
RELAY_HINT = (
    "inbound calls and media need a relay (TURN): configure a TURN server in the softphone, or "
    "ask IT for endpoint-independent NAT mapping (RFC 4787) for this machine"
)


def parse_address(text: str) -> Address:
    """ "ip:port" or "[v6]:port" (as address_text writes them) -> (ip, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def words(behaviour: str) -> str:
    return behaviour.replace("_", "-")


def classify_mapping(i: Transaction, ii: Transaction, iii: Transaction) -> str:
    if not (i.success and ii.success):
        return UNKNOWN
    if ii.mapped == i.mapped:
        return EIM
    if iii.success and iii.mapped != ii.mapped:
        return APDM
    # III kept II's mapping (or never answered): the mapping follows the destination address.
    return ADM


def classify_filtering(
    i: Transaction, both: Transaction, port: Transaction, other: Address, conclusive: bool
) -> str:
    """Answers must come from where CHANGE-REQUEST sends them, else the server ignored it."""
    if not i.success or i.source is None:
        return UNKNOWN
    if both.response is not None:
        return EIM if both.success and both.source == other else UNKNOWN
    if port.response is not None:
        return ADM if port.success and port.source == (i.source[0], other[1]) else UNKNOWN
    return APDM if conclusive else UNKNOWN


def _bound_socket(target: Address) -> socket.socket:
    """A UDP socket on the local address that routes to ``target`` (a concrete local address,
    unlike 0.0.0.0, so the mapped address can be compared with it)."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(target)
        local_ip = probe.getsockname()[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((local_ip, 0))
    return sock


def _run(
    ctx: Context, sock: socket.socket, steps: Sequence[Sequence[Transaction]], errors: list[str]
) -> float:
    """The steps one after the other, each given TEST_WAIT; the shortest wait any step had."""
    shortest = TEST_WAIT
    try:
        for step in steps:
            until = min(ctx.deadline - RESERVE, ctx.monotonic() + TEST_WAIT)
            shortest = min(shortest, until - ctx.monotonic())
            exchange_udp(sock, step, until, ctx.monotonic)
            if not all(t.success for t in step[:1]):
                break  # without test I there is nothing to compare with
    except OSError as exc:
        errors.append(exc.strerror or str(exc))
    return shortest


def _test_entry(purpose: str, t: Transaction, local: str | None) -> dict[str, Any]:
    return {
        "purpose": purpose,
        "target": address_text(t.target),
        "change_request": CHANGE_NAMES[t.change],
        "local": local,
        "answered": t.response is not None,
        "source": address_text(t.source),
        "mapped": address_text(t.mapped),
        "rtt_ms": t.rtt_ms,
        "sent": t.sent,
    }


def measure(ctx: Context, record: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 5780 mapping and filtering tests against ``record``'s server (a net.stun record)."""
    primary = parse_address(record["address"])
    other = parse_address(record["other_address"])
    i, ii, iii = Transaction(primary), Transaction((other[0], primary[1])), Transaction(other)
    f_i = Transaction(primary)
    f_both = Transaction(primary, CHANGE_IP | CHANGE_PORT)
    f_port = Transaction(primary, CHANGE_PORT)
    errors: list[str] = []
    waits: dict[str, float] = {}
    with _bound_socket(primary) as msock, _bound_socket(primary) as fsock:
        local, flocal = (address_text(s.getsockname()[:2]) for s in (msock, fsock))
        jobs = {
            "mapping": (msock, [[i], [ii, iii]]),
            "filtering": (fsock, [[f_i, f_both, f_port]]),
        }
        threads = [
            threading.Thread(
                target=lambda n=name, s=sock, st=steps: waits.update({n: _run(ctx, s, st, errors)}),
                daemon=True,
                name=f"sipdiag-nat-{name}",
            )
            for name, (sock, steps) in jobs.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, ctx.deadline - RESERVE / 2 - ctx.monotonic()))
    mapped = i.mapped
    conclusive = {n: waits.get(n, 0.0) >= MIN_CONCLUSIVE_WAIT for n in jobs}
    return {
        "server": record["server"],
        "address": record["address"],
        "other_address": record["other_address"],
        "local": local,
        "mapped": address_text(mapped),
        "nat_present": None if mapped is None else address_text(mapped) != local,
        "mapping": classify_mapping(i, ii, iii),
        "filtering": classify_filtering(f_i, f_both, f_port, other, conclusive["filtering"]),
        "tests": [_test_entry("mapping", t, local) for t in (i, ii, iii)]
        + [_test_entry("filtering", t, flocal) for t in (f_i, f_both, f_port)],
        "conclusive": conclusive["mapping"],
        "errors": errors,
    }


def _alternate_differs(record: Mapping[str, Any]) -> bool:
    """RFC 5780 needs an alternate address with another IP and another port."""
    if not record["other_address"]:
        return False
    primary, other = parse_address(record["address"]), parse_address(record["other_address"])
    return primary[0] != other[0] and primary[1] != other[1]


def check_nat(ctx: Context) -> CheckResult:
    stun = ctx.results.get("net.stun")
    if stun is not None and "servers" in stun.details:
        records = [r for r in stun.details["servers"] if r["transport"] == "udp"]
    else:  # net.stun did not run (or broke): ask the servers ourselves, in half the time
        half = ctx.monotonic() + ctx.remaining() / 2
        records = probe_servers(replace(ctx, deadline=half), ("udp",))
    answered = [r for r in records if r["outcome"] == ANSWERED]
    if not answered:
        why = "no STUN server answered over UDP (see net.stun), so the NAT cannot be measured"
        return CheckResult(Status.SKIP, why, empty_details(records[0] if records else None))
    offering = [r for r in answered if _alternate_differs(r)]
    if not offering:
        details = empty_details(answered[0])
        details["nat_present"] = answered[0]["mapped"] != answered[0]["local"]
        return CheckResult(Status.SKIP, NO_ALTERNATE, details, NO_ALTERNATE_HINT)
    return verdict(measure(ctx, offering[0]))


def empty_details(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """measure()'s keys, from a net.stun record alone (no NAT tests made)."""
    r = record or {}
    return {
        "server": r.get("server"), "address": r.get("address"),
        "other_address": r.get("other_address"), "local": r.get("local"),
        "mapped": r.get("mapped"), "nat_present": None, "mapping": UNKNOWN, "filtering": UNKNOWN,
        "tests": [], "conclusive": False, "errors": [],
    }  # fmt: skip


def verdict(d: dict[str, Any]) -> CheckResult:
    """Status, summary and hint from measure()'s details (pure)."""
    server, mapping, filtering = d["server"], d["mapping"], d["filtering"]
    tests = d["tests"]
    filtered = f"{words(filtering)} filtering"
    if d["nat_present"] is False:
        return CheckResult(Status.PASS, f"no NAT between this machine and {server} ({filtered})", d)
    seen = f"{d['local']} is seen as {d['mapped']}"
    if mapping in (ADM, APDM):
        per = "destination address" if mapping == ADM else "destination"
        summary = (
            f"the NAT maps each {per} to a new public port ({words(mapping)} mapping, "
            f"{filtered}; {seen} by {server})"
        )
        return CheckResult(Status.WARN, summary, d, RELAY_HINT)
    if mapping == EIM:
        summary = (
            f"the NAT keeps one public address per socket (endpoint-independent mapping, "
            f"{filtered}; {seen} by {server})"
        )
        return CheckResult(Status.PASS, summary, d)
    if not d["conclusive"]:
        return CheckResult(
            Status.ERROR, "the NAT tests did not finish", d, "re-run with a larger --timeout"
        )
    if not tests[0]["answered"]:
        why = f"{server} did not answer the NAT tests ({'; '.join(d['errors']) or 'no answer'})"
        return CheckResult(Status.SKIP, why, d, "re-run; net.stun shows whether it answers at all")
    alternate = tests[1]["target"]
    return CheckResult(
        Status.SKIP,
        f"the STUN server's alternate address {alternate} does not answer, so the NAT's "
        "mapping behaviour is unknown",
        d,
        f"allow outbound UDP to {d['other_address'].rpartition(':')[0]} as well, or use a STUN "
        "server whose second address is reachable",
    )
