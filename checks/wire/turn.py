"""TURN/STUN probe plumbing for net.media: connect, ask, allocate and release, each bounded by a
deadline; aioice does the protocol, this adds ICMP/closed-connection handling and timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from checks.wire.sip import Password
from checks.wire.stun import address_text
from diag import outcomes as o
from diag.target import is_ip

if TYPE_CHECKING:
    from aioice import stun, turn

Row = dict[str, Any]
PROBE_TIMEOUT_S = 2.5  # STUN sends at 0, 0.5 and 1.5 s (aioice's RTO), then give up
RELEASE_TIMEOUT_S = 0.5  # at most this of a probe's time goes to the Refresh(0) release
LIFETIME_S = 120  # asked for; released at once anyway, this bounds a release that got lost
AUTH_FAILED = "auth_failed"  # credentials sent and rejected (401 again, or 441)


async def guard(
    base: Row,
    probe: Callable[[tuple[str, int], float], Awaitable[Row]],
    at: tuple[str | None, int],
    until: float,
    short: bool,
) -> Row:
    """One probe's row: what it found, or the failure that stopped it."""
    from aioice import stun

    keys = ("relayed", "mapped", "rtt_ms", "error_code", "error", "lifetime_s", "released")
    row = {**base, **dict.fromkeys(keys if "server" in base else ("rtt_ms", "mapped", "error"))}
    host, port = at
    try:
        if host is None:
            return {**row, "outcome": o.DNS_FAILURE, "error": "the name does not resolve"}
        return {**row, **await probe((host, port), until)}
    except (asyncio.TimeoutError, stun.TransactionTimeout):
        if short:
            return {**row, "outcome": o.NOT_FINISHED, "error": "the check's deadline came first"}
        return {**row, "outcome": o.TIMEOUT, "error": f"no answer within {PROBE_TIMEOUT_S:g} s"}
    except stun.TransactionFailed as exc:
        code, reason = exc.response.attributes.get("ERROR-CODE", (None, ""))
        return {**row, "outcome": o.REJECTED, "error_code": code, "error": f"{code} {reason}"}
    except ConnectionRefusedError:
        return {**row, "outcome": o.REFUSED, "error": "connection refused"}
    except OSError as exc:
        lost = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        return {**row, "outcome": o.UNREACHABLE if lost else o.ERROR, "error": str(exc)}


async def resolve_address(host: str, until: float, nameserver: str | None) -> str | None:
    """``host``'s first address through the resolver net.dns uses (``--dns-server``, else the
    system's), asked in a daemon thread so that a hung resolver is abandoned at the deadline."""
    if is_ip(host):
        return host
    from checks.wire.dns import lookup_addresses

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not answer.done():
            answer.set_result(value)

    def work() -> None:
        addresses, _ = lookup_addresses(host, nameserver, until)  # loop.time() is monotonic
        with contextlib.suppress(RuntimeError):  # the loop is closed: the check returned
            loop.call_soon_threadsafe(deliver, addresses[0] if addresses else None)

    threading.Thread(target=work, name=f"resolve:{host}", daemon=True).start()
    try:
        return await asyncio.wait_for(answer, _left(until, loop))
    except asyncio.TimeoutError:
        return None


async def _connect(
    at: tuple[str, int], transport: str, user: str | None, pw: Password | None, until: float
) -> tuple[asyncio.BaseTransport, turn.TurnClientMixin, asyncio.Future[Exception]]:
    """aioice's TURN client over a connected socket (its request() also runs plain STUN
    transactions), plus a future set by an ICMP error or a closed TCP link, which aioice
    ignores: a refused port then shows at once instead of after the retransmissions."""
    from aioice import turn

    loop = asyncio.get_running_loop()
    broken: asyncio.Future[Exception] = loop.create_future()

    def set_broken(exc: Exception) -> None:
        if not broken.done():
            broken.set_result(exc)

    class Udp(turn.TurnClientUdpProtocol):
        def error_received(self, exc: Exception) -> None:
            set_broken(exc)

    class Tcp(turn.TurnClientTcpProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            set_broken(exc or ConnectionResetError("the server closed the connection"))
            super().connection_lost(exc)

    args = (at, user, pw.reveal() if pw else None, LIFETIME_S, 0)
    sock: asyncio.BaseTransport
    client: turn.TurnClientMixin
    if transport == "udp":
        opening = loop.create_datagram_endpoint(lambda: Udp(*args), remote_addr=at)
        sock, client = await asyncio.wait_for(opening, _left(until, loop))
    else:
        connecting = loop.create_connection(lambda: Tcp(*args), *at)
        sock, client = await asyncio.wait_for(connecting, _left(until, loop))
    return sock, client, broken


async def _ask(
    client: turn.TurnClientMixin,
    request: stun.Message,
    broken: asyncio.Future[Exception],
    until: float,
) -> stun.Message:
    """One transaction (a 401 challenge answered once when there are credentials), bounded by
    ``until``; an ICMP error or a closed link ends it at once."""
    task = asyncio.ensure_future(client.request_with_retry(request))
    either: set[asyncio.Future[Any]] = {task, broken}
    try:
        done, _ = await asyncio.wait(
            either,
            timeout=_left(until, asyncio.get_running_loop()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            return task.result()[0]
        if broken in done:
            raise broken.result()
        raise asyncio.TimeoutError
    finally:
        task.cancel()


async def binding(at: tuple[str, int], until: float) -> Row:
    from aioice import stun

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sock, client, broken = await _connect(at, "udp", None, None, until)
    try:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        response = await _ask(client, request, broken, until)
        mapped = address_text(response.attributes.get("XOR-MAPPED-ADDRESS"))
        return {"outcome": o.ANSWERED, "mapped": mapped, "rtt_ms": _ms(loop.time() - t0)}
    finally:
        sock.close()


async def allocate(
    transport: str, user: str | None, pw: Password | None, at: tuple[str, int], until: float
) -> Row:
    """Allocate (401 challenge, then the authenticated request), then release at once."""
    from aioice import stun, turn

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    release_at = until - min(RELEASE_TIMEOUT_S, _left(until, loop) / 3)
    sock, client, broken = await _connect(at, transport, user, pw, release_at)
    try:
        request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
        request.attributes["LIFETIME"] = LIFETIME_S
        request.attributes["REQUESTED-TRANSPORT"] = turn.UDP_TRANSPORT
        try:
            response = await _ask(client, request, broken, release_at)
        except stun.TransactionFailed as exc:
            code, reason = exc.response.attributes.get("ERROR-CODE", (None, ""))
            outcome = o.CHALLENGED if code == 401 else o.REJECTED
            if client.integrity_key is not None and code in (401, 441):
                outcome = AUTH_FAILED  # our credentials were sent and refused
            return {"outcome": outcome, "error_code": code, "error": f"{code} {reason}"}
        found = {
            "outcome": o.OK,
            "relayed": address_text(response.attributes.get("XOR-RELAYED-ADDRESS")),
            "mapped": address_text(response.attributes.get("XOR-MAPPED-ADDRESS")),
            "lifetime_s": response.attributes.get("LIFETIME"),
            "rtt_ms": _ms(loop.time() - t0),  # the challenge and the authenticated Allocate
            "released": False,  # unless the Refresh(0) below is answered
        }
        refresh = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 0
        with contextlib.suppress(asyncio.TimeoutError, stun.TransactionError, OSError):
            found["released"] = bool(await _ask(client, refresh, broken, until))
        return found
    finally:
        sock.close()


def _left(until: float, loop: asyncio.AbstractEventLoop) -> float:
    return max(0.0, until - loop.time())


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
