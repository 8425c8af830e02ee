"""How long a NAT keeps a silent UDP mapping, measured with an RFC 5780 STUN server alone.

Per wait t: socket A sends a Binding Request to the server's primary address and learns its
public address; A then sends nothing for t seconds. Another socket, B, then asks the server to
answer to A's public port (RESPONSE-PORT, RFC 5780 §7.5). The server answers from the address
and port A contacted, so even an address-and-port-dependent filter lets the answer in, but only
while the NAT still holds A's mapping; nothing passes through A's mapping during the wait, so
measuring does not refresh what it measures. Afterwards A asks again from itself: a different
public address means the NAT made a new mapping.

All waits run together, one socket A each (plus one B), so a run costs the longest wait plus a
few round trips. A control with t = 0 goes first: an answer there proves that the server honours
RESPONSE-PORT and that the path lets its answers in, so a later silence means the mapping died.

Seen against coturn 4.6.1 (tests/test_mapping_lifetime.py): with two listening addresses it
honours RESPONSE-PORT and answers from the address and port the request reached; with one
address its answers carry no OTHER-ADDRESS, it ignores RESPONSE-PORT (answers the asking socket)
and rejects CHANGE-REQUEST with 420. Linux masquerade that forgot a mapping gives the same public
port again, unless an answer arrived for the forgotten port in the meantime (as our probe's
does): that leaves a connection-tracking entry, and the next mapping gets a new port.
"""

from __future__ import annotations

import enum
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from checks.wire.stun import (
    FIREWALL_ERROR,
    INITIAL_RTO,
    MAX_SENDS,
    Address,
    Transaction,
    address_text,
    parse_message,
)

MAX_PROBES = 8  # waits per run (each one socket), besides the control
BIND_WAIT = 1.0  # for the first answer: sends at 0, 0.1, 0.3, 0.7 s (RFC 5389)
MIN_WINDOW, MAX_WINDOW = 0.5, 2.0  # for an answer to a later request: 4 round trips, clamped
OVERHEAD = 1.0  # a wait's cost beyond itself on a healthy path: bind, answer window, re-ask
MIN_GAP, MIN_RATIO = 0.4, 1.1  # ladder: neighbours closer than this are not worth a socket
POLL = 0.05  # how often a wait looks at the stop event
ANSWERS = ("RESPONSE", "ERROR")  # STUN classes that end a transaction

NO_ANSWER = "no answer from STUN server"
IGNORES_RESPONSE_PORT = (
    "the STUN server does not support RESPONSE-PORT (RFC 5780): it answered the asking socket, "
    "so the mapping lifetime cannot be measured with it"
)
NO_OTHER_ADDRESS = "; its answers carry no OTHER-ADDRESS either"
REJECTS_RESPONSE_PORT = (
    "the STUN server does not support RESPONSE-PORT (RFC 5780): it answered {code} {reason}"
)
NO_TIME = "no wait fits in the time left (each needs about {overhead:g} s more than itself)"
CONTROL_LOST = (
    "no answer reached the mapped port even right after the binding: the STUN server may not "
    "support RESPONSE-PORT (RFC 5780), or this network gives each socket another public address"
)

Socket = Callable[[int], socket.socket]  # address family -> an unbound UDP socket


class _State(enum.Enum):
    BINDING = "binding"  # A's first Binding, until answered or BIND_WAIT
    SILENT = "silent"  # A says nothing until fire_at
    ASKING = "asking"  # B's RESPONSE-PORT request, until A hears the answer or the window ends
    REASKING = "reasking"  # A's second Binding: has its public address changed?
    DONE = "done"


@dataclass
class _Probe:
    """One wait: socket A's first Binding, B's RESPONSE-PORT request, A's second Binding."""

    after: float
    sock: socket.socket | None
    bind: Transaction
    state: _State = _State.BINDING
    ask: Transaction | None = None
    reask: Transaction | None = None
    fire_at: float = 0.0  # when B asks (the end of A's silence)
    until: float = 0.0  # end of the current exchange's window
    answered: bool | None = None  # None: not measured (lost binding, deadline, stop)
    error: str | None = None
    bind_rtt: float = 0.0

    def record(self) -> dict[str, Any]:
        first, again = self.bind.mapped, self.reask.mapped if self.reask else None
        return {
            "after": self.after,
            "answered": self.answered,
            "mapped": address_text(first),
            "mapped_after": address_text(again),
            "mapping_changed": None if first is None or again is None else first != again,
        }


@dataclass
class _Run:
    server: Address
    probes: list[_Probe]
    control: _Probe
    clock: Callable[[], float]
    asker: socket.socket | None = None  # B: one socket asks for every probe
    by_id: dict[bytes, tuple[_Probe, str]] = field(default_factory=dict)
    error: str | None = None

    def track(self, probe: _Probe, kind: str, t: Transaction) -> Transaction:
        self.by_id[t.request.transaction_id] = (probe, kind)
        return t

    @property
    def all_probes(self) -> list[_Probe]:
        return [self.control, *self.probes]


def ladder(periods: Iterable[float], budget: float, most: int = MAX_PROBES) -> list[float]:
    """The user's ``periods`` that fit ``budget`` (seconds from now), plus points between them
    (the gap with the largest ratio split at its geometric mean, in tenths of a second) up to
    ``most`` waits. The waits run in parallel, so the added points cost sockets, not time."""
    points = sorted({float(p) for p in periods if 0 < p and p + OVERHEAD <= budget})[:most]
    while len(points) < most:
        gaps = [(hi / lo, i) for i, (lo, hi) in enumerate(zip(points, points[1:], strict=False))]
        gaps = [(r, i) for r, i in gaps if r >= MIN_RATIO and points[i + 1] - points[i] >= MIN_GAP]
        if not gaps:
            break
        _, i = max(gaps)
        middle = round(math.sqrt(points[i] * points[i + 1]), 1)
        if middle in points:
            break
        points.insert(i + 1, middle)
    return points


def mapping_lifetime(
    server: Address,
    waits: Iterable[float],
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    make_socket: Socket | None = None,
) -> dict[str, Any]:
    """Measure how long the NAT keeps a silent UDP mapping towards ``server`` (an RFC 5780 STUN
    server's primary (IP address, port)), once per wait, all in parallel, never past
    ``deadline`` (on ``clock``). Waits that cannot finish by then are not run (answered None).
    ``stop`` ends every wait early; the result then holds what is known (``stopped``).

    lifetime_at_least: the longest wait answered (0 when only the control was);
    lifetime_at_most: the shortest longer wait not answered (None when all were)."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    new_socket = make_socket or (lambda fam: socket.socket(fam, socket.SOCK_DGRAM))
    start = clock()
    wanted = sorted({float(w) for w in waits if w > 0})
    probes = [_Probe(after, None, Transaction(server)) for after in [0.0, *wanted]]
    run = _Run(server, probes[1:], probes[0], clock)
    if not any(start + w + OVERHEAD <= deadline for w in wanted):
        run.error = NO_TIME.format(overhead=OVERHEAD)
        return _result(run, False)
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        run.asker = new_socket(family)
        sockets.append(run.asker)
        for probe in run.all_probes:
            run.track(probe, "bind", probe.bind)
            if start + probe.after + OVERHEAD > deadline and probe is not run.control:
                probe.state = _State.DONE  # cannot finish in time: not run
                continue
            probe.sock = new_socket(family)
            sockets.append(probe.sock)
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, sock)
        stopped = _loop(run, selector, deadline, stop)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return _result(run, stopped)


def _loop(
    run: _Run, selector: selectors.BaseSelector, deadline: float, stop: threading.Event | None
) -> bool:
    """Drive every probe until all are done, an error ends the run, ``deadline`` or ``stop``;
    True when stopped."""
    bind_until = run.clock() + BIND_WAIT
    while run.error is None:
        now = run.clock()
        if stop is not None and stop.is_set():
            return True
        if now >= deadline:
            return False
        for probe in run.all_probes:
            _advance(run, probe, now, deadline)
        if now >= bind_until and all(p.bind.response is None for p in run.all_probes):
            run.error = NO_ANSWER
        if run.control.answered is False and run.error is None:
            run.error = CONTROL_LOST
        active = [p for p in run.all_probes if p.state != _State.DONE]
        if not active or run.error is not None:
            return False
        wake = min([deadline, *(_next_event(p) for p in active)])
        if stop is not None:
            wake = min(wake, now + POLL)
        for key, _ in selector.select(max(0.001, wake - run.clock())):
            _read(run, key.data)
    return False


def _next_event(probe: _Probe) -> float:
    """When ``probe`` next needs the loop: the end of its silence, a retransmission, or the
    end of its window (0 before its first turn)."""
    if probe.state == _State.SILENT:
        return probe.fire_at
    current = {_State.BINDING: probe.bind, _State.ASKING: probe.ask, _State.REASKING: probe.reask}
    t = current.get(probe.state)
    if t is not None and t.sent < MAX_SENDS:
        return min(probe.until, t.next_send)
    return probe.until


def _window(probe: _Probe) -> float:
    return min(MAX_WINDOW, max(MIN_WINDOW, 4 * probe.bind_rtt))


def _advance(run: _Run, probe: _Probe, now: float, deadline: float) -> None:
    """Timers: send what is due, close windows, start the next exchange."""
    if probe.state == _State.BINDING:
        probe.until = probe.until or now + BIND_WAIT
        if now >= probe.until:
            probe.state = _State.DONE  # lost binding: this wait is not measured
        else:
            _send_due(probe, probe.sock, probe.bind, now)
    elif probe.state == _State.SILENT and now >= probe.fire_at:
        mapped = probe.bind.mapped
        assert mapped is not None  # SILENT starts with a mapped address
        if now + _window(probe) > deadline:
            probe.state = _State.DONE  # no time left to hear the answer: not measured
            return
        probe.ask = run.track(probe, "ask", Transaction(run.server, response_port=mapped[1]))
        probe.state, probe.until = _State.ASKING, now + _window(probe)
        _send_due(probe, run.asker, probe.ask, now)
    elif probe.state == _State.ASKING:
        if now >= probe.until:
            probe.answered = False
            _start_reask(run, probe, now)
        elif probe.ask is not None:
            _send_due(probe, run.asker, probe.ask, now)
    elif probe.state == _State.REASKING and probe.reask is not None:
        if now >= probe.until:
            probe.state = _State.DONE
        else:
            _send_due(probe, probe.sock, probe.reask, now)
    if probe.error is not None:
        probe.state = _State.DONE


def _start_reask(run: _Run, probe: _Probe, now: float) -> None:
    probe.reask = run.track(probe, "reask", Transaction(run.server))
    probe.state, probe.until = _State.REASKING, now + _window(probe)
    _send_due(probe, probe.sock, probe.reask, now)


def _send_due(probe: _Probe, sock: socket.socket | None, t: Transaction, now: float) -> None:
    """(Re)transmit ``t`` when due (RFC 5389 §7.2.1 doubling); a local error ends the probe."""
    if sock is None or t.response is not None or t.sent >= MAX_SENDS or now < t.next_send:
        return
    try:
        sock.sendto(bytes(t.request), t.target)
    except PermissionError:
        probe.error = FIREWALL_ERROR
        return
    except OSError as exc:
        probe.error = exc.strerror or str(exc)
        return
    t.first_sent = t.first_sent if t.sent else now
    t.sent += 1
    t.next_send = now + INITIAL_RTO * 2 ** (t.sent - 1)


def _read(run: _Run, sock: socket.socket) -> None:
    """Every datagram waiting on ``sock``, matched to its probe by transaction id."""
    while True:
        try:
            data, source = sock.recvfrom(65535)
        except OSError:  # BlockingIOError: drained; anything else is no answer either
            return
        now = run.clock()
        answer = parse_message(data)
        found = run.by_id.get(answer.transaction_id) if answer is not None else None
        if found is None or answer is None or answer.message_class.name not in ANSWERS:
            continue
        probe, kind = found
        if kind == "ask":
            _asked(run, probe, sock, answer, now)
        elif sock is probe.sock:
            _answered(probe, kind, answer, (str(source[0]), int(source[1])), now)


def _answered(probe: _Probe, kind: str, answer: Any, source: Address, now: float) -> None:
    """An answer at A to its own first Binding ("bind") or its second ("reask")."""
    if kind == "bind" and probe.state == _State.SILENT:
        probe.fire_at = now + probe.after  # a late duplicate passed the NAT: silence restarts
        return
    expected = _State.BINDING if kind == "bind" else _State.REASKING
    t = probe.bind if kind == "bind" else probe.reask
    if probe.state != expected or t is None:
        return
    t.response, t.source = answer, source
    t.rtt_ms = round((now - t.first_sent) * 1000)
    if kind == "reask":
        probe.state = _State.DONE
    elif t.mapped is None:
        code, reason = answer.attributes.get("ERROR-CODE", (None, "no mapped address"))
        probe.error = f"the STUN server answered {code or ''} {reason}".replace("  ", " ")
        probe.state = _State.DONE
    else:
        probe.bind_rtt = now - t.first_sent
        probe.state, probe.fire_at = _State.SILENT, now + probe.after


def _asked(run: _Run, probe: _Probe, sock: socket.socket, answer: Any, now: float) -> None:
    """An answer to B's RESPONSE-PORT request: at A it proves the mapping alive; at B the
    server ignored (success) or refused (error) RESPONSE-PORT, for every probe alike."""
    if sock is run.asker:
        if answer.message_class.name == "ERROR":
            code, reason = answer.attributes.get("ERROR-CODE", (None, ""))
            run.error = REJECTS_RESPONSE_PORT.format(code=code, reason=reason).rstrip()
        else:
            other = run.control.bind.attribute("OTHER-ADDRESS") or next(
                (p.bind.attribute("OTHER-ADDRESS") for p in run.probes if p.bind.success), None
            )
            run.error = IGNORES_RESPONSE_PORT + ("" if other else NO_OTHER_ADDRESS)
        return
    if sock is probe.sock and probe.state == _State.ASKING:
        probe.answered = True
        _start_reask(run, probe, now)


def _result(run: _Run, stopped: bool) -> dict[str, Any]:
    other = next(
        (p.bind.attribute("OTHER-ADDRESS") for p in run.all_probes if p.bind.success), None
    )
    probes = [p.record() for p in run.probes]
    answered = [p["after"] for p in probes if p["answered"]]
    at_least = max(answered, default=0.0 if run.control.answered else None)
    lost = [p["after"] for p in probes if p["answered"] is False]
    at_most = min((a for a in lost if at_least is None or a > at_least), default=None)
    changes = [p["mapping_changed"] for p in probes if p["mapping_changed"] is not None]
    errors = [p.error for p in run.all_probes if p.error]
    error = run.error or (errors[0] if errors and not answered else None)
    return {
        "server": address_text(run.server),
        "other": address_text((str(other[0]), int(other[1]))) if other else None,
        "control": run.control.answered,
        "probes": probes,
        "lifetime_at_least": at_least,
        "lifetime_at_most": at_most,
        "mapping_changed": any(changes) if changes else None,
        "stopped": stopped,
        "error": error,
    }
