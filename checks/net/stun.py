"""net.stun: a STUN Binding (RFC 5389/8489) to every --stun server, over UDP and TCP, side by side.

Resolves each server through net.dns's resolver, then probes every server and transport in
parallel by the check's deadline; checks/wire/stun.py does the exchanges (aioice's codec, UDP
retransmissions, TCP framing). The verdict follows the UDP answers; TCP only tells a UDP block
from a dead server in the summary and hint. net.nat (checks/net/nat.py) reuses probe_servers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.wire.budget import MIN_CONCLUSIVE_WAIT, RESERVE, UNREACHABLE_ERRNOS
from checks.wire.dns import DEADLINE_REACHED, lookup_addresses, tried_summary
from checks.wire.stun import (
    FIREWALL_ERROR,
    Address,
    Transaction,
    address_text,
    exchange_tcp,
    exchange_udp,
)
from diag.context import Context
from diag.model import CheckResult, Status
from diag.outcomes import ANSWERED, DNS_FAILURE, ERROR, NOT_FINISHED, REFUSED, TIMEOUT, UNREACHABLE
from diag.target import is_ip, parse_registrar

if TYPE_CHECKING:
    pass

DEFAULT_PORT = 3478
PROBE_TIMEOUT = 2.0  # per server and transport: a healthy STUN server answers in milliseconds
JOIN_SLACK = 0.05
DNS_UNFINISHED = "name resolution did not finish in time"


@dataclass(frozen=True)
class Server:
    text: str  # as configured
    host: str
    port: int


def configured_servers(ctx: Context) -> list[Server]:
    """--stun servers (HOST[:PORT], validated by diag.config; 3478 by default) in order, once."""
    parsed = {text: parse_registrar(text) for text in dict.fromkeys(ctx.settings.stun)}
    return [Server(text, p.host, p.port or DEFAULT_PORT) for text, p in parsed.items()]


def new_record(server: Server, transport: str) -> dict[str, Any]:
    return {
        "server": server.text, "transport": transport, "address": None, "outcome": NOT_FINISHED,
        "rtt_ms": None, "mapped": None, "mapped_plain": None, "alg_suspected": False,
        "other_address": None, "software": None, "local": None, "error": None,
    }  # fmt: skip


def record(rec: dict[str, Any], t: Transaction, waited: float, exc: Exception | None) -> None:
    """What ``t`` got (or the socket error ``exc``), in ``rec``'s words."""
    rec["sent"] = t.sent
    if isinstance(exc, PermissionError):  # EPERM: a netfilter rule on this machine dropped it
        rec.update(outcome=REFUSED, error=FIREWALL_ERROR)
    elif isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        outcome = UNREACHABLE if exc.errno in UNREACHABLE_ERRNOS else ERROR
        outcome = REFUSED if isinstance(exc, ConnectionRefusedError) else outcome
        rec.update(outcome=outcome, error=exc.strerror or str(exc))
    elif exc is not None and not isinstance(exc, TimeoutError):
        rec.update(outcome=ERROR, error=str(exc) or type(exc).__name__)
    elif t.response is None:  # a wait cut short by the budget is no evidence
        short = waited < MIN_CONCLUSIVE_WAIT
        rec["outcome"] = NOT_FINISHED if short else TIMEOUT
        rec["error"] = f"only {waited:.1f} s was left" if short else f"no answer in {waited:.1f} s"
    elif not t.success:
        code, reason = t.attribute("ERROR-CODE") or (None, "")
        rec.update(outcome=ERROR, rtt_ms=t.rtt_ms, error=f"STUN error {code} {reason}".strip())
    elif t.mapped is None:
        rec.update(outcome=ERROR, error="Binding Success without a (XOR-)MAPPED-ADDRESS")
    else:
        xor, plain = t.attribute("XOR-MAPPED-ADDRESS"), t.attribute("MAPPED-ADDRESS")
        rec.update(
            outcome=ANSWERED,
            rtt_ms=t.rtt_ms,
            mapped=address_text(t.mapped),
            mapped_plain=address_text(plain),
            alg_suspected=bool(xor and plain and tuple(xor) != tuple(plain)),
            # RFC 5780 OTHER-ADDRESS, else RFC 3489 CHANGED-ADDRESS
            other_address=address_text(
                t.attribute("OTHER-ADDRESS") or t.attribute("CHANGED-ADDRESS")
            ),
            software=t.attribute("SOFTWARE"),
        )


def probe(rec: dict[str, Any], address: Address, until: float, clock: Callable[[], float]) -> None:
    """One Binding to ``address`` over rec["transport"], filling ``rec``."""
    rec["address"] = address_text(address)
    waited = until - clock()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    udp = rec["transport"] == "udp"
    t, failure = Transaction(address), None
    try:
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
            sock.settimeout(max(0.001, waited))
            sock.connect(address)  # UDP too: ICMP port unreachable becomes "refused"
            rec["local"] = address_text(sock.getsockname()[:2])
            if udp:
                exchange_udp(sock, [t], until, clock, connected=True)
            else:
                exchange_tcp(sock, t, until, clock)
    except (OSError, ValueError) as exc:
        failure = exc
    record(rec, t, waited, failure)


def resolve(server: Server, nameserver: str | None, deadline: float) -> tuple[str | None, str]:
    """(address, why there is none) through the resolver net.dns uses."""
    if is_ip(server.host):
        return server.host, ""
    addresses, lookups = lookup_addresses(server.host, nameserver, deadline)
    if addresses:
        return addresses[0], ""
    if lookups and all(q["error"] == DEADLINE_REACHED for q in lookups):
        return None, DNS_UNFINISHED
    return None, f"cannot resolve {server.host}: {tried_summary(lookups)}"


def _run_all(threads: Sequence[threading.Thread], end: float, clock: Callable[[], float]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, end - clock()))


def probe_servers(ctx: Context, transports: Sequence[str] = ("udp", "tcp")) -> list[dict[str, Any]]:
    """Every --stun server over every transport, all in parallel, by ctx.deadline."""
    clock = ctx.monotonic
    end = ctx.deadline - RESERVE
    until = min(end - JOIN_SLACK, clock() + PROBE_TIMEOUT)  # probes end before we stop waiting
    servers = configured_servers(ctx)
    records = [[new_record(s, t) for t in transports] for s in servers]

    def run(server: Server, recs: list[dict[str, Any]]) -> None:
        address, why = resolve(server, ctx.settings.dns_server, until)
        if address is None:
            for rec in recs:
                rec.update(
                    outcome=NOT_FINISHED if why == DNS_UNFINISHED else DNS_FAILURE, error=why
                )
            return
        workers = [
            threading.Thread(target=probe, args=(rec, (address, server.port), until, clock),
                             daemon=True, name=f"sipdiag-stun-{rec['transport']}")
            for rec in recs
        ]  # fmt: skip
        _run_all(workers, end, clock)

    threads = [
        threading.Thread(target=run, args=(s, r), daemon=True, name="sipdiag-stun")
        for s, r in zip(servers, records, strict=True)
    ]
    _run_all(threads, end, clock)
    # A probe still running at the deadline leaves its record at NOT_FINISHED.
    return [dict(rec) for recs in records for rec in recs]


def check_stun(ctx: Context) -> CheckResult:
    return verdict(probe_servers(ctx), configured_servers(ctx))


def _ip(address: str | None) -> str | None:
    return None if address is None else address.rsplit(":", 1)[0].strip("[]")


def verdict(records: Sequence[Mapping[str, Any]], servers: Sequence[Server]) -> CheckResult:
    """Status, summary, hint and details from every server's UDP and TCP records (pure)."""
    udp = {r["server"]: r for r in records if r["transport"] == "udp"}
    tcp = {r["server"]: r for r in records if r["transport"] == "tcp"}
    local = next((_ip(r["local"]) for r in udp.values() if r["local"]), None)
    public = {
        _ip(r["mapped"])
        for r in records
        if r["outcome"] == ANSWERED and _ip(r["mapped"]) != _ip(r["local"])
    }
    alg = [r for r in records if r["alg_suspected"]]
    details: dict[str, Any] = {
        "servers": [dict(r) for r in records],
        "public_addresses": sorted(a for a in public if a),
        "local_address": local,
        "alg_suspected": bool(alg),
    }
    parts = [_summary_part(udp[s.text], tcp.get(s.text)) for s in servers]
    parts += [
        f"{r['server']} over {r['transport'].upper()}: MAPPED-ADDRESS {r['mapped_plain']} but "
        f"XOR-MAPPED-ADDRESS {r['mapped']} (something on the path rewrites addresses)"
        for r in alg
    ]
    summary = "; ".join(parts)
    answered = [s for s in servers if udp[s.text]["outcome"] == ANSWERED]
    bad = [s for s in servers if udp[s.text]["outcome"] not in (ANSWERED, NOT_FINISHED)]
    if bad:
        hint = _hint(bad[0], udp[bad[0].text], tcp.get(bad[0].text))
        status = Status.WARN if answered else Status.FAIL
        return CheckResult(status, summary, details, hint)
    if len(answered) < len(servers):
        return CheckResult(Status.ERROR, summary, details, "re-run with a larger --timeout")
    return CheckResult(Status.PASS, summary, details)


def _summary_part(udp: Mapping[str, Any], tcp: Mapping[str, Any] | None) -> str:
    server = udp["server"]
    tcp_ok = tcp is not None and tcp["outcome"] == ANSWERED
    if udp["outcome"] == ANSWERED:
        also = ", TCP too" if tcp_ok else ""
        return f"{server} sees us as {udp['mapped']} ({udp['rtt_ms']} ms{also})"
    label = {
        TIMEOUT: "no answer over UDP",
        REFUSED: f"UDP refused: {udp['error']}",
        UNREACHABLE: f"unreachable ({udp['error']})",
        DNS_FAILURE: f"does not resolve ({udp['error']})",
        NOT_FINISHED: "not finished",
    }.get(udp["outcome"], f"error ({udp['error']})")
    return f"{server} {label}" + (" (answers over TCP)" if tcp_ok else "")


def _hint(server: Server, udp: Mapping[str, Any], tcp: Mapping[str, Any] | None) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    allow = f"allow outbound UDP {server.port} to {host}"
    outcome = udp["outcome"]
    if outcome == TIMEOUT and tcp is not None and tcp["outcome"] == ANSWERED:
        return f"{allow} in the firewall/VPN: STUN over TCP answers, so UDP is blocked on the way"
    if outcome == TIMEOUT:
        return f"{allow} in the firewall/VPN, and check that {host} is the right STUN server"
    if outcome == REFUSED and udp["error"] == FIREWALL_ERROR:
        return f"this machine's firewall blocks it: {allow}"
    if outcome == REFUSED:
        return (
            f"{host} refused UDP {server.port}: check the STUN server's address and port, "
            f"and {allow}"
        )
    if outcome == UNREACHABLE:
        return f"there is no route to {host}: check the network connection and VPN, then {allow}"
    if outcome == DNS_FAILURE:
        return f"check the STUN server name {server.host} and this machine's DNS servers"
    return f"check that {host}:{server.port} is a STUN server ({udp['error']}), and {allow}"
