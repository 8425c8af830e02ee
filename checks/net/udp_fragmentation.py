"""net.udp-fragmentation: OPTIONS over UDP padded to several sizes, all in flight together.

Messages over the path MTU leave this machine as IP fragments; a firewall or NAT that drops
fragments (or large datagrams) loses them while small ones get through (RFC 3261 §18.1.1: an
INVITE with SDP and credentials easily passes 1300 bytes). Each size has its own probe id and
its own connected socket, so an answer or an ICMP error is matched to the size that caused it.
The small UDP exchange here (``exchange``) also serves net.sip-alg's single OPTIONS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from checks.net.dns import dns_deadline, targets_for
from checks.wire import sip as sipwire
from checks.wire.budget import PROBE_TIMEOUT, RESERVE
from checks.wire.dns import Target, hostport
from checks.wire.udp import Exchange, exchange
from diag.context import Context
from diag.model import CheckResult, Status, failed, passed, skipped, warned
from diag.outcomes import ANSWERED, REFUSED, TIMEOUT, UNREACHABLE

SIZES = (500, 1300, 1600, 3000, 6000)  # bytes of UDP payload, i.e. of the SIP message
PAD_HEADER = "X-Sipdiag-Pad"
MAX_PAD_LINE = 1000  # bytes per padding line: long header lines trip some parsers
MIN_PAD = len(f"{PAD_HEADER}: \r\n")  # an empty padding line is the least we can add
IP_HEADER, UDP_HEADER = {4: 20, 6: 40}, 8
LOST = frozenset({TIMEOUT, REFUSED, UNREACHABLE})  # sent, and the registrar never saw it
HINT = (
    "use TCP or TLS for SIP (--transport tcp), or fix the path MTU / "
    "let the firewall pass IP fragments"
)
NO_ANSWER = "the registrar does not answer OPTIONS over UDP; see net.sip-options"


def pad_request(request: bytes, size: int) -> bytes:
    """``request`` grown to exactly ``size`` bytes with ``X-Sipdiag-Pad`` header lines (each at
    most MAX_PAD_LINE bytes) before Content-Length; the body and its length do not change."""
    need = size - len(request)
    if need == 0:
        return request
    if need < MIN_PAD:
        raise ValueError(f"cannot pad {len(request)} bytes to {size}: need at least {MIN_PAD}")
    anchor = request.find(b"\r\nContent-Length:")
    if anchor < 0 or request.find(b"\r\n\r\n") < anchor:
        raise ValueError("the request has no Content-Length header to pad before")
    lines = []
    while need:
        take = min(need, MAX_PAD_LINE)
        if 0 < need - take < MIN_PAD:  # leave enough for one more whole line
            take = need - MIN_PAD
        lines.append(f"\r\n{PAD_HEADER}: ".encode() + b"x" * (take - MIN_PAD))
        need -= take
    return request[:anchor] + b"".join(lines) + request[anchor:]


def fragments(size: int, mtu: int | None, ip_version: int = 4) -> int | None:
    """How many IP packets a UDP message of ``size`` bytes becomes on a path of ``mtu``."""
    if not mtu:
        return None
    per_fragment = (mtu - IP_HEADER[ip_version]) // 8 * 8  # fragment offsets count 8 bytes
    return max(1, math.ceil((size + UDP_HEADER) / per_fragment))


def interface_mtu(local_ip: str) -> tuple[str | None, int | None]:
    """(interface, MTU) of the interface that holds ``local_ip``, from psutil."""
    import psutil

    stats = psutil.net_if_stats()
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local_ip for a in addresses) and name in stats:
            return name, int(stats[name].mtu) or None
    return None, None


def udp_target(ctx: Context) -> Target | None:
    """The registrar's first UDP target (net.dns's, else resolved now within half the budget)."""
    found = targets_for(replace(ctx, deadline=dns_deadline(ctx)))
    return next((t for t in found if t.transport == "udp"), None)


def check_udp_fragmentation(ctx: Context) -> CheckResult:
    registrar = ctx.settings.target
    assert registrar is not None  # requires=("registrar",)
    configured = ctx.settings.effective_transports
    if "udp" not in configured:
        return skipped(
            f"SIP does not use UDP here (transports: {', '.join(configured)}); "
            "large messages over TCP/TLS are not fragmented by SIP's transport"
        )
    target = udp_target(ctx)
    if target is None:
        return skipped(f"no UDP target for {registrar.host}; see net.dns")
    uri = f"sip:{hostport(target.host, target.port)}"
    short_id = ctx.run_id[:8]  # short, so the 500-byte message has room for our User-Agent

    def probe(size: int) -> Exchange:
        pid = sipwire.probe_id(short_id, f"frag{size}")

        def build(host: str, port: int) -> bytes:
            base = sipwire.options_request(uri, "udp", host, port, pid, ctx.user_agent)
            return pad_request(base, max(size, len(base) + MIN_PAD))  # IPv6 may need > 500

        return Exchange(pid, build)

    probes = [probe(size) for size in SIZES]
    deadline = min(ctx.deadline - RESERVE, ctx.monotonic() + PROBE_TIMEOUT)
    exchange(probes, target.address, target.port, deadline, ctx.monotonic)
    return verdict(target, SIZES, probes)


def verdict(target: Target, requested: Sequence[int], probes: Sequence[Exchange]) -> CheckResult:
    """The evidence per size and what it means (see the module docstring)."""
    local = next((p.local for p in probes if p.local), None)
    version = 6 if ":" in target.address else 4
    iface, mtu = interface_mtu(local.rsplit(":", 1)[0].strip("[]")) if local else (None, None)
    mtu = next((p.mtu for p in probes if p.mtu), None) or mtu
    sizes: list[dict[str, Any]] = [
        {
            "size": len(p.request) or size,  # what was sent; else what was meant
            "answered": p.outcome == ANSWERED,
            "outcome": p.outcome,
            "code": p.code,
            "rtt_ms": p.rtt_ms,
            "retransmitted": p.retransmitted,
            "fragments": fragments(len(p.request), mtu, version) if p.request else None,
            "error": p.error,
        }
        for size, p in zip(requested, probes, strict=True)
    ]
    answered = [s["size"] for s in sizes if s["answered"]]
    lost = [s["size"] for s in sizes if s["outcome"] in LOST]
    details = {
        "target": hostport(target.address, target.port),
        "local": local,
        "interface": iface,
        "mtu": mtu,
        "sizes": sizes,
        "largest_answered": max(answered, default=None),
        "smallest_lost": min(lost, default=None),
    }
    if not answered:
        if lost:
            return skipped(NO_ANSWER, None, **details)
        return CheckResult(
            Status.ERROR,
            "no UDP probe could be sent or awaited long enough",
            details,
            "re-run with a larger --timeout" if not sizes[0]["error"] else None,
        )
    largest, smallest_lost = max(answered), min(lost, default=None)
    if smallest_lost is None:
        unsettled = [f"{s['size'] or '?'} bytes {s['outcome']}" for s in sizes if not s["answered"]]
        note = f" ({', '.join(unsettled)})" if unsettled else ""
        return passed(f"UDP messages up to {largest} bytes get through{note}", **details)
    if smallest_lost > largest:
        return failed(
            f"UDP messages up to {largest} bytes get through, {smallest_lost} bytes and more "
            f"are lost ({_fragment_note(sizes, smallest_lost, mtu)})",
            HINT,
            **details,
        )
    return warned(
        f"UDP messages of {', '.join(map(str, lost))} bytes were lost although {largest} bytes "
        "got through: packet loss, not message size",
        "re-run the check; if it persists, look for packet loss on the path",
        **details,
    )


def _fragment_note(sizes: list[dict[str, Any]], size: int, mtu: int | None) -> str:
    count = next((s["fragments"] for s in sizes if s["size"] == size), None)
    if mtu is None or count is None:
        return "path MTU unknown"
    return f"{size} bytes are {count} IP fragments at MTU {mtu}"
