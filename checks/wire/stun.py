"""STUN transactions on the wire (RFC 5389): UDP with retransmissions, TCP with framing.

aioice.stun is the codec; this adds sending, matching by transaction id and deadlines.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checks.wire.dns import hostport

if TYPE_CHECKING:
    from aioice.stun import Message

Address = tuple[str, int]
INITIAL_RTO = 0.1  # RFC 5389 §7.2.1: sends at 0, 0.1, 0.3, 0.7, 1.5 s ... (doubling)
MAX_SENDS = 7  # RFC 5389 Rc
HEADER = 20
FIREWALL_ERROR = "this machine's firewall did not let it out (EPERM)"
RESPONSE_PORT = 0x0027  # RFC 5780 §7.5; aioice's attribute table does not know it


@dataclass
class Transaction:
    """One Binding request to ``target`` (with RFC 5780 CHANGE-REQUEST flags, and RESPONSE-PORT:
    answer to this port of the address the request came from) and its answer."""

    target: Address
    change: int = 0  # 4 = change IP, 2 = change port
    response_port: int | None = None
    request: Message = field(init=False)
    response: Message | None = None
    source: Address | None = None  # where the answer came from
    rtt_ms: int | None = None  # from the first transmission
    sent: int = 0
    first_sent: float = 0.0
    next_send: float = 0.0

    def __post_init__(self) -> None:
        from aioice import stun

        attributes = {"CHANGE-REQUEST": self.change} if self.change else {}
        if self.response_port is not None:
            self.request = _with_response_port(attributes, self.response_port)
            return
        self.request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, None, attributes)

    def attribute(self, name: str) -> Any:
        return None if self.response is None else self.response.attributes.get(name)

    @property
    def success(self) -> bool:
        return self.response is not None and self.response.message_class.name == "RESPONSE"

    @property
    def mapped(self) -> Address | None:
        """XOR-MAPPED-ADDRESS, else (an RFC 3489 server) MAPPED-ADDRESS."""
        found = self.attribute("XOR-MAPPED-ADDRESS") or self.attribute("MAPPED-ADDRESS")
        return None if found is None or not self.success else (str(found[0]), int(found[1]))


def _with_response_port(attributes: dict[str, Any], port: int) -> Message:
    """A Binding Request whose encoding ends with RESPONSE-PORT (a 16-bit port, 2 bytes of
    padding), which aioice cannot encode from its attribute table."""
    from aioice import stun

    class ResponsePortRequest(stun.Message):
        def __bytes__(self) -> bytes:
            data = super().__bytes__()
            extra = struct.pack("!HHHH", RESPONSE_PORT, 4, port, 0)
            length = struct.pack("!H", len(data) - HEADER + len(extra))
            return data[:2] + length + data[4:] + extra

    return ResponsePortRequest(stun.Method.BINDING, stun.Class.REQUEST, None, attributes)


def parse_message(data: bytes) -> Message | None:
    """The STUN message in ``data``, or None for anything else (exchange_udp's reading)."""
    return _parse(data)


def _parse(data: bytes) -> Message | None:
    from aioice import stun

    try:
        return stun.parse_message(data)
    # Not STUN, or a method aioice does not know: not our answer. aioice raises struct.error
    # for a fixed-size attribute that is too short (PRIORITY, ICE-CONTROLLING with 0 bytes).
    except (ValueError, struct.error):
        return None


def exchange_udp(
    sock: socket.socket,
    transactions: Sequence[Transaction],
    until: float,
    clock: Callable[[], float],
    connected: bool = False,
) -> None:
    """Send every request at once and retransmit each (RFC 5389) until it is answered or
    ``until``; answers are matched by transaction id. Socket errors propagate (OSError)."""
    by_id = {t.request.transaction_id: t for t in transactions}
    start = clock()
    for t in transactions:
        t.next_send = start
    while True:
        pending = [t for t in transactions if t.response is None]
        now = clock()
        if not pending or now >= until:
            return
        for t in pending:
            if t.sent < MAX_SENDS and now >= t.next_send:
                data = bytes(t.request)
                if connected:
                    sock.send(data)
                else:
                    sock.sendto(data, t.target)
                t.first_sent = t.first_sent if t.sent else now
                t.sent += 1
                t.next_send = now + INITIAL_RTO * 2 ** (t.sent - 1)
        wake = min([until, *(t.next_send for t in pending if t.sent < MAX_SENDS)])
        sock.settimeout(max(0.001, wake - clock()))  # never 0: that would not block
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            continue
        answer = _parse(data)
        t_answered = by_id.get(answer.transaction_id) if answer is not None else None
        if answer is None or t_answered is None or t_answered.response is not None:
            continue
        if answer.message_class.name in ("RESPONSE", "ERROR"):
            t_answered.response, t_answered.source = answer, (str(source[0]), int(source[1]))
            t_answered.rtt_ms = round((clock() - t_answered.first_sent) * 1000)


def exchange_tcp(
    sock: socket.socket, t: Transaction, until: float, clock: Callable[[], float]
) -> None:
    """One Binding over a connected stream: RFC 5389 framing (20-byte header, then its length)."""
    t.first_sent, t.sent = clock(), 1
    sock.sendall(bytes(t.request))
    while t.response is None:
        head = _recv_exact(sock, HEADER, until, clock)
        frame = head + _recv_exact(sock, struct.unpack_from("!H", head, 2)[0], until, clock)
        answer = _parse(frame)
        if answer is None:
            raise ValueError(f"the server sent something that is not STUN ({frame[:8].hex()}…)")
        if answer.transaction_id == t.request.transaction_id:
            t.response, t.source = answer, t.target
            t.rtt_ms = round((clock() - t.first_sent) * 1000)


def _recv_exact(sock: socket.socket, size: int, until: float, clock: Callable[[], float]) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(0.001, until - clock()))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection without an answer")
        data += chunk
    return data


def address_text(address: Address | None) -> str | None:
    return None if address is None else hostport(address[0], address[1])
