"""Small UDP request/answer exchanges, all in flight together: one connected socket each, so an
answer or an ICMP error is matched to the request that caused it. Used by net.udp-fragmentation
(padded OPTIONS) and net.sip-alg (one OPTIONS with SDP)."""

from __future__ import annotations

import selectors
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from checks.wire import sip as sipwire
from checks.wire.budget import MIN_CONCLUSIVE_WAIT, T1, UNREACHABLE_ERRNOS
from checks.wire.dns import hostport
from checks.wire.sip import SipMessage
from diag.outcomes import ANSWERED, ERROR, NOT_FINISHED, REFUSED, TIMEOUT, UNREACHABLE

_LINUX_MTU_OPTION = {4: (socket.IPPROTO_IP, 14), 6: (socket.IPPROTO_IPV6, 24)}  # IP_MTU, IPV6_MTU


@dataclass
class Exchange:
    """One UDP request and what became of it."""

    probe_id: str
    build: Callable[[str, int], bytes]  # (local ip, local port) -> the request
    request: bytes = b""
    local: str | None = None
    outcome: str = NOT_FINISHED
    code: int | None = None
    reason: str | None = None
    rtt_ms: int | None = None
    error: str | None = None
    retransmitted: bool = False
    answer: SipMessage | None = None
    sent_at: float = 0.0
    mtu: int | None = None  # the kernel's path MTU for the connected socket (Linux)


def _fail(ex: Exchange, exc: OSError) -> None:
    if isinstance(exc, ConnectionRefusedError):  # ICMP port unreachable
        ex.outcome = REFUSED
    elif isinstance(exc, PermissionError):  # EPERM: a netfilter rule on this machine said no
        ex.outcome, ex.error = REFUSED, "a firewall on this machine dropped it"
        return
    elif exc.errno in UNREACHABLE_ERRNOS:  # no route, or an ICMP "prohibited" from a firewall
        ex.outcome = UNREACHABLE
    else:
        ex.outcome = ERROR
    ex.error = exc.strerror or str(exc)


def _path_mtu(sock: socket.socket, version: int) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return int(sock.getsockopt(*_LINUX_MTU_OPTION[version]))
    except OSError:
        return None


def exchange(
    exchanges: Sequence[Exchange],
    address: str,
    port: int,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    """Send every request from its own connected socket, retransmit once after T1, and collect
    the answers (any status) until all have one or ``deadline`` passes."""
    version = 6 if ":" in address else 4
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    start = clock()
    selector = selectors.DefaultSelector()
    socks: dict[int, socket.socket] = {}
    try:
        for i, ex in enumerate(exchanges):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks[i] = sock
            try:
                sock.connect((address, port))  # connected: ICMP errors come back to us
                host, local_port = sock.getsockname()[:2]
                ex.local = hostport(str(host), int(local_port))
                ex.request = ex.build(str(host), int(local_port))
                ex.mtu = _path_mtu(sock, version)
                sock.setblocking(False)
                ex.sent_at = clock()
                sock.send(ex.request)
            except OSError as exc:
                _fail(ex, exc)
                continue
            selector.register(sock, selectors.EVENT_READ, (sock, ex))
        retransmit_at: float | None = start + T1
        while selector.get_map() and clock() < deadline:
            wake = deadline if retransmit_at is None else min(deadline, retransmit_at)
            for key, _ in selector.select(max(0.0, wake - clock())):
                sock, ex = key.data
                if _receive(sock, ex, clock):
                    selector.unregister(sock)
            if retransmit_at is not None and clock() >= retransmit_at:
                retransmit_at = None
                for key in list(selector.get_map().values()):
                    sock, ex = key.data
                    try:
                        sock.send(ex.request)  # the same bytes: the same transaction
                        ex.retransmitted = True
                    except OSError as exc:  # an ICMP error for the first copy shows up here
                        _fail(ex, exc)
                        selector.unregister(sock)
    finally:
        selector.close()
        for sock in socks.values():
            sock.close()
    waited = min(deadline, clock()) - start
    for ex in exchanges:
        if ex.outcome == NOT_FINISHED and ex.request and waited >= MIN_CONCLUSIVE_WAIT:
            ex.outcome, ex.error = TIMEOUT, f"no answer within {waited:.1f} s"


def _receive(sock: socket.socket, ex: Exchange, clock: Callable[[], float]) -> bool:
    """Read one datagram; True once ``ex`` is settled (answered or failed)."""
    try:
        data = sock.recv(65535)
    except BlockingIOError:
        return False
    except OSError as exc:
        _fail(ex, exc)
        return True
    try:
        msg = sipwire.match_response(data, ex.probe_id)
    except ValueError:
        return False  # not SIP: a stray datagram
    if msg is None:
        return False
    ex.answer, ex.outcome = msg, ANSWERED
    ex.code, ex.reason = sipwire.status_code(msg), sipwire.reason_phrase(msg)
    ex.rtt_ms = max(0, round((clock() - ex.sent_at) * 1000))
    return True
