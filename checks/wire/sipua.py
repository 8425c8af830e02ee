"""A small SIP user agent over one transport, for the inbound leg: a binding of our own
(REGISTER with a Contact, later Expires: 0), one request to an address-of-record through the
registrar (OPTIONS, or INVITE with --inbound-call, answering the proxy's digest challenge), and
the requests the platform routes to our binding (answered 200, or 603 Decline for an INVITE).

sip.inbound and net.idle use it (checks/sip/inbound.py, checks/net/idle.py). pjsua2 does not
fit here: it answers OPTIONS inside the library without telling the application, cannot say on
which socket or connection a request arrived, and refreshes its registration and keep-alives on
its own, while net.idle must stay silent for exactly the idle period. The wire format is the
one codec, checks/wire/sip.py.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checks.wire import sip as sipwire
from checks.wire.budget import T1
from checks.wire.sip import Password, SipMessage

T2 = 4.0  # RFC 3261 T2: the longest gap between retransmissions of a non-INVITE request
TOKEN_HEADER = "X-Sipdiag-Token"  # our request carries it, so we know it when it arrives
RUN_HEADER = "X-Sipdiag-Run"  # the run id, for the platform's logs (and `sipdiag match`)
MAX_STREAM = 256 * 1024  # bytes buffered from a stream before we give up on framing it


class Closed(Exception):
    """The stream was closed by the other side (or by the network) while we waited."""


@dataclass(frozen=True)
class Server:
    """Where requests go: the registrar (also the outbound proxy) over one transport."""

    transport: str  # udp, tcp or tls
    host: str  # the name the user configured: R-URI host of a REGISTER, TLS server name
    port: int
    address: str  # the resolved IP the socket talks to
    ca: str | None = None  # PEM bundle besides the system store (TLS)


@dataclass(frozen=True)
class Account:
    user: str
    domain: str
    auth_user: str
    password: Password
    user_agent: str

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{sipwire.host_literal(self.domain)}"


@dataclass
class Received:
    """A SIP message that reached one of our sockets, and from where."""

    msg: SipMessage
    source: str  # ip:port it came from
    at: float  # clock() when it arrived
    raw: bytes = b""


def _hostport(host: str, port: int) -> str:
    return f"{sipwire.host_literal(host)}:{port}"


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class Channel:
    """One socket to the server. UDP: an unconnected socket, so requests the platform sends us
    from any address arrive here too; TCP/TLS: the connection, as a softphone keeps it."""

    def __init__(
        self, server: Server, clock: Callable[[], float] = time.monotonic, timeout: float = 2.0
    ) -> None:
        self.server = server
        self.clock = clock
        self.closed_by_peer = False
        family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
        kind = socket.SOCK_DGRAM if server.transport == "udp" else socket.SOCK_STREAM
        self.sock: socket.socket = socket.socket(family, kind)
        self._buffer = b""
        try:
            if server.transport == "udp":
                self.sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
                # The address a route to the server leaves from: what a softphone puts in Contact.
                probe = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    probe.connect((server.address, server.port))
                    self.local_ip = str(probe.getsockname()[0])
                finally:
                    probe.close()
                self.local_port = int(self.sock.getsockname()[1])
            else:
                self.sock.settimeout(max(0.05, timeout))
                # So that open_listener() can listen on the very port of this connection.
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.sock.connect((server.address, server.port))
                if server.transport == "tls":
                    context = ssl.create_default_context()
                    if server.ca:
                        context.load_verify_locations(cafile=server.ca)
                    self.sock = context.wrap_socket(self.sock, server_hostname=server.host)
                local = self.sock.getsockname()
                self.local_ip, self.local_port = str(local[0]), int(local[1])
        except BaseException:
            self.sock.close()
            raise

        self.peer = _hostport(server.address, server.port)

    @classmethod
    def adopt(cls, server: Server, sock: socket.socket, clock: Callable[[], float]) -> Channel:
        """A connection the other side opened to us (accepted on open_listener's socket)."""
        ch = cls.__new__(cls)
        ch.server, ch.clock, ch.closed_by_peer, ch.sock, ch._buffer = (
            server,
            clock,
            False,
            sock,
            b"",
        )
        local, peer = sock.getsockname(), sock.getpeername()
        ch.local_ip, ch.local_port = str(local[0]), int(local[1])
        ch.peer = _hostport(str(peer[0]), int(peer[1]))
        return ch

    def open_listener(self) -> socket.socket | None:
        """TCP: a listening socket on this connection's own address and port, so a platform
        that opens a new connection to our Contact (instead of using ours, RFC 5923/5626) is
        seen too. None for UDP, TLS (we hold no certificate) or when the OS refuses."""
        if self.server.transport != "tcp":
            return None
        listener = socket.socket(self.sock.family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.local_ip, self.local_port))
            listener.listen(4)
            listener.setblocking(False)
        except OSError:
            listener.close()
            return None
        return listener

    @property
    def local(self) -> str:
        return _hostport(self.local_ip, self.local_port)

    @property
    def proto(self) -> str:
        return sipwire.TRANSPORTS[self.server.transport]

    def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        if self.server.transport == "udp":
            self.sock.sendto(data, to or (self.server.address, self.server.port))
        else:
            self.sock.sendall(data)

    def receive(self, until: float) -> Received | None:
        """The next SIP message, or None when ``until`` passes first. Raises Closed when a
        stream ends; stray bytes that are no SIP message are skipped."""
        while True:
            if self.server.transport != "udp":
                framed = self._framed()
                if framed is not None:
                    return framed
            wait = until - self.clock()
            if wait <= 0:
                return None
            self.sock.settimeout(max(wait, 0.001))
            try:
                if self.server.transport == "udp":
                    data, source = self.sock.recvfrom(65535)
                    received = self._parse(data, _hostport(str(source[0]), int(source[1])))
                    if received is not None:
                        return received
                    continue
                chunk = self.sock.recv(65535)
            except TimeoutError:
                return None
            except ssl.SSLWantReadError:
                continue
            except ConnectionError as exc:
                if self.server.transport == "udp":
                    # An ICMP error for an earlier datagram (Windows reports it on recvfrom of
                    # an unconnected socket): not a closed path; keep listening.
                    continue
                self.closed_by_peer = True
                raise Closed(str(exc) or type(exc).__name__) from None
            if not chunk:
                self.closed_by_peer = True
                raise Closed("the connection was closed")
            self._buffer += chunk
            if len(self._buffer) > MAX_STREAM:
                raise Closed(f"more than {MAX_STREAM} bytes without a whole SIP message")

    def _framed(self) -> Received | None:
        self._buffer = self._buffer.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 4.4.1)
        try:
            size = sipwire.message_length(self._buffer)
        except ValueError as exc:
            raise Closed(f"the stream cannot be framed: {exc}") from None
        if size is None:
            return None
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return self._parse(data, self.peer)

    def _parse(self, data: bytes, source: str) -> Received | None:
        if not data.strip():
            return None
        text = data.decode("utf-8", errors="replace")
        msg = sipwire.parse(text)
        if msg is None:
            return None
        return Received(msg, source, self.clock(), data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# ---- building messages


def build_request(
    method: str,
    ruri: str,
    ch: Channel,
    *,
    branch: str,
    from_uri: str,
    from_tag: str,
    to_uri: str,
    call_id: str,
    cseq: int,
    user_agent: str,
    to_tag: str | None = None,
    contact: str | None = None,
    headers: list[str] | None = None,
    body: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    """One request as sent from ``ch`` (its Via names ``ch``'s address, with rport)."""
    for value in (ruri, from_uri, to_uri, call_id, user_agent, *(headers or [])):
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"a header value is not on one line: {value!r}")
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{ch.proto} {ch.local};branch={sipwire.MAGIC_COOKIE}{branch};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={from_tag}",
        f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"User-Agent: {user_agent}",
    ]
    return _message(lines, contact, headers, body, content_type)


def _message(
    lines: list[str],
    contact: str | None,
    headers: list[str] | None,
    body: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    """A request's or response's first lines, then Contact, the extra headers and the body."""
    if contact:
        lines.append(f"Contact: {contact}")
    lines += headers or []
    data = body.encode()
    if data:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def build_response(
    request: SipMessage,
    code: int,
    reason: str,
    *,
    to_tag: str,
    user_agent: str,
    contact: str | None = None,
    headers: list[str] | None = None,
) -> bytes:
    """The answer to ``request``: its Vias, From, Call-ID and CSeq echoed (RFC 3261 8.2.6)."""
    to = request.first("to") or ""
    if ";tag=" not in to.replace(" ", ""):
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {code} {reason}"]
    lines += [f"Via: {v}" for v in request.all("via")]
    lines += [
        f"From: {request.first('from') or ''}",
        f"To: {to}",
        f"Call-ID: {request.first('call-id') or ''}",
        f"CSeq: {request.first('cseq') or ''}",
        f"User-Agent: {user_agent}",
    ]
    return _message(lines, contact, headers)


def method_of(msg: SipMessage) -> str | None:
    """The method of a request, None for a response."""
    first = msg.start_line.split(" ", 1)[0]
    return None if first.startswith("SIP/") else first.upper()


def _cseq_method(msg: SipMessage) -> str:
    return (msg.first("cseq") or "").split()[-1:][0].upper() if msg.first("cseq") else ""


def _tag(header: str | None) -> str | None:
    if not header:
        return None
    _, _, rest = header.partition(">")
    for p in (rest or header).split(";"):
        name, _, value = p.partition("=")
        if name.strip().lower() == "tag":
            return value.strip()
    return None


# ---- client transactions


@dataclass
class Outcome:
    """What became of one request (after any digest retry)."""

    method: str
    call_id: str
    sent_at: float = 0.0  # clock() of the first send
    code: int | None = None
    reason: str | None = None
    answer: SipMessage | None = None
    provisional: list[int] = field(default_factory=list)
    rtt_ms: int | None = None
    challenged: bool = False
    error: str | None = None
    received: str | None = None  # the source address the server saw (Via received)
    rport: int | None = None
    cancelled: bool = False  # we sent CANCEL (INVITE)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "call_id": self.call_id,
            "code": self.code,
            "reason": self.reason,
            "provisional": self.provisional,
            "rtt_ms": self.rtt_ms,
            "challenged": self.challenged,
            "error": self.error,
        }
        if self.answer is not None:
            out["server"] = self.answer.first("server")
            out["user_agent"] = self.answer.first("user-agent")
            out["contact"] = self.answer.first("contact")
        if self.cancelled:
            out["cancelled"] = True
        return out


class Dialogless:
    """Requests of one Call-ID from one channel: a REGISTER series, or one OPTIONS/INVITE."""

    def __init__(
        self,
        ch: Channel,
        account: Account,
        probe_id: str,
        headers: list[str] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.ch = ch
        self.stop = stop  # Ctrl-C: end the wait at once (the caller then cleans up)
        self._acks: dict[str, bytes] = {}  # INVITE branch -> its ACK, for a retransmitted final
        self.account = account
        self.call_id = f"{probe_id}@{sipwire.host_literal(ch.local_ip)}"
        self.from_tag = _new_id()
        self.cseq = 0
        self.headers = headers or []
        self.stray: list[Received] = []  # requests that reached this channel meanwhile

    def _build(self, method: str, ruri: str, branch: str, to_uri: str, **fields: Any) -> bytes:
        """A request of this series: its From, Call-ID, CSeq and User-Agent."""
        return build_request(
            method,
            ruri,
            self.ch,
            branch=branch,
            from_uri=self.account.aor,
            from_tag=self.from_tag,
            to_uri=to_uri,
            call_id=self.call_id,
            cseq=self.cseq,
            user_agent=self.account.user_agent,
            **fields,
        )

    def send(
        self,
        method: str,
        ruri: str,
        deadline: float,
        *,
        to_uri: str,
        contact: str | None = None,
        extra: list[str] | None = None,
        body: str = "",
        on_provisional: Callable[[int, SipMessage, Dialogless, str, str], None] | None = None,
        answer_challenge: bool = True,
    ) -> Outcome:
        """Send ``method`` and wait for its final answer until ``deadline``, answering one digest
        challenge (again only for a stale nonce; never with ``answer_challenge`` False). UDP
        retransmits as RFC 3261 17.1 says."""
        outcome = Outcome(method, self.call_id)
        authorization: tuple[str, str] | None = None
        answered = 0
        while True:
            self.cseq += 1
            branch = _new_id()
            headers = [*self.headers, *(extra or [])]
            if authorization is not None:
                headers.append(f"{authorization[0]}: {authorization[1]}")
            request = self._build(
                method,
                ruri,
                branch,
                to_uri,
                contact=contact,
                headers=headers,
                body=body,
            )
            msg = self._transaction(
                request, branch, method, ruri, deadline, outcome, on_provisional
            )
            if msg is None:
                if method == "INVITE" and outcome.provisional:
                    self._give_up(ruri, branch, to_uri, outcome)
                return outcome
            code = sipwire.status_code(msg)
            if method == "INVITE" and code >= 300:
                self._ack(ruri, branch, to_uri, msg)
            if code not in (401, 407):
                return outcome
            outcome.challenged = True
            if not answer_challenge:
                return outcome
            name = "proxy-authenticate" if code == 407 else "www-authenticate"
            challenge = msg.first(name)
            if challenge is None or not sipwire.answers_again(challenge, answered):
                return outcome
            try:
                value = sipwire.digest_authorization(
                    challenge,
                    method=method,
                    uri=ruri,
                    username=self.account.auth_user or self.account.user,
                    password=self.account.password.reveal(),
                    cnonce=_new_id(),
                )
            except ValueError as exc:
                outcome.error = f"cannot answer the challenge: {exc}"
                return outcome
            answered += 1
            authorization = ("Proxy-Authorization" if code == 407 else "Authorization", value)
            # The challenge is no final answer to the request we now retry with credentials.
            outcome.code = outcome.reason = outcome.answer = None

    def _transaction(
        self,
        request: bytes,
        branch: str,
        method: str,
        ruri: str,
        deadline: float,
        outcome: Outcome,
        on_provisional: Callable[[int, SipMessage, Dialogless, str, str], None] | None,
    ) -> SipMessage | None:
        clock = self.ch.clock
        sent = clock()
        if not outcome.sent_at:
            outcome.sent_at = sent
        try:
            self.ch.send(request)
        except OSError as exc:
            outcome.error = str(exc.strerror or exc)
            return None
        interval = T1
        retransmit_at: float | None = sent + interval if self.ch.server.transport == "udp" else None
        while True:
            now = clock()
            if self.stop is not None and self.stop.is_set():
                outcome.error = "interrupted"
                return None
            if now >= deadline:
                outcome.error = outcome.error or "no final answer before the deadline"
                return None
            if retransmit_at is not None and now >= retransmit_at:
                with contextlib.suppress(OSError):
                    self.ch.send(request)
                interval = min(interval * 2, T2)
                retransmit_at = now + interval
            wake = deadline if retransmit_at is None else min(deadline, retransmit_at)
            if self.stop is not None:
                wake = min(wake, clock() + 0.1)
            try:
                got = self.ch.receive(wake)
            except Closed as exc:
                outcome.error = f"the connection closed: {exc}"
                return None
            except OSError as exc:  # e.g. ICMP port unreachable on a later send
                outcome.error = str(exc.strerror or exc)
                return None
            if got is None:
                continue
            if method_of(got.msg) is not None:
                self.stray.append(got)
                continue
            if not self._ours(got.msg, branch, method):
                self._reack(got.msg)
                continue
            code = sipwire.status_code(got.msg)
            via = sipwire.top_via(got.msg)
            if via:
                outcome.received, outcome.rport = sipwire.via_received(via)
            if code < 200:
                outcome.provisional.append(code)
                if method == "INVITE":
                    retransmit_at = None  # a provisional answer stops INVITE retransmissions
                if on_provisional is not None:
                    on_provisional(code, got.msg, self, ruri, branch)
                continue
            outcome.code, outcome.reason = code, sipwire.reason_phrase(got.msg)
            outcome.answer = got.msg
            outcome.rtt_ms = max(0, round((got.at - sent) * 1000))
            return got.msg

    def _reack(self, msg: SipMessage) -> None:
        """A final answer retransmitted to an earlier INVITE of ours: ACK it again."""
        via = (sipwire.top_via(msg) or "").replace(" ", "")
        for branch, ack in self._acks.items():
            if f"branch={sipwire.MAGIC_COOKIE}{branch}" in via:
                with contextlib.suppress(OSError):
                    self.ch.send(ack)

    def _ours(self, msg: SipMessage, branch: str, method: str) -> bool:
        via = sipwire.top_via(msg) or ""
        return (
            f"branch={sipwire.MAGIC_COOKIE}{branch}" in via.replace(" ", "")
            and (msg.first("call-id") or "") == self.call_id
            and _cseq_method(msg) == method
        )

    def _ack(self, ruri: str, branch: str, to_uri: str, answer: SipMessage) -> None:
        """The ACK for a non-2xx final answer to an INVITE: same branch (RFC 3261 17.1.1.3)."""
        ack = self._build(
            "ACK",
            ruri,
            branch,
            to_uri,
            to_tag=_tag(answer.first("to")),
        )
        self._acks[branch] = ack
        with contextlib.suppress(OSError):
            self.ch.send(ack)

    def _give_up(self, ruri: str, branch: str, to_uri: str, outcome: Outcome) -> None:
        """An INVITE with provisional answers but no final one at our deadline (or Ctrl-C): the
        phone may be ringing. CANCEL it, once more after T1 over UDP, and ACK the 487 that
        follows, within about a second."""
        clock = self.ch.clock
        end = clock() + 1.0
        resend_at: float | None = clock() + T1 if self.ch.server.transport == "udp" else None
        self.cancel(ruri, branch, to_uri)
        outcome.cancelled = True
        while clock() < end:
            if resend_at is not None and clock() >= resend_at:
                self.cancel(ruri, branch, to_uri)
                resend_at = None
            try:
                got = self.ch.receive(min(end, resend_at or end))
            except (Closed, OSError):
                return
            if got is None or method_of(got.msg) is not None:
                continue
            if self._ours(got.msg, branch, "INVITE") and sipwire.status_code(got.msg) >= 300:
                self._ack(ruri, branch, to_uri, got.msg)
                return

    def cancel(self, ruri: str, branch: str, to_uri: str) -> None:
        """CANCEL the INVITE in flight (same branch, same CSeq number; RFC 3261 9.1)."""
        cancel = self._build(
            "CANCEL",
            ruri,
            branch,
            to_uri,
        )
        with contextlib.suppress(OSError):
            self.ch.send(cancel)

    def end_answered_call(self, answer: SipMessage, ruri: str, to_uri: str) -> None:
        """A 2xx to our INVITE (a phone that answers on its own): ACK it and hang up at once."""
        target = ruri
        contact = answer.first("contact")
        if contact:
            target = contact.split("<", 1)[-1].split(">", 1)[0] if "<" in contact else contact
        # The route set is the Record-Route list reversed (RFC 3261 12.1.2, UAC side).
        extra = [f"Route: {r}" for r in reversed(sipwire.header_list(answer, "record-route"))]
        if not extra:  # no Record-Route: the proxy is still our outbound proxy (loose routing)
            proxy = _hostport(self.ch.server.host, self.ch.server.port)
            extra = [f"Route: <sip:{proxy};transport={self.ch.server.transport};lr>"]
        to_tag = _tag(answer.first("to"))
        for method in ("ACK", "BYE"):  # the ACK keeps the INVITE's CSeq number, BYE the next
            if method == "BYE":
                self.cseq += 1
            data = self._build(
                method,
                target,
                _new_id(),
                to_uri,
                to_tag=to_tag,
                headers=extra,
            )
            with contextlib.suppress(OSError):
                self.ch.send(data)


# ---- a binding of our own


def our_contact(ch: Channel, user: str, tag: str, host: str | None = None, port: int = 0) -> str:
    """Our Contact: sipdiag's ``;sipdiag=`` tag marks it ours in any registrar's listing."""
    where = _hostport(host or ch.local_ip, port or ch.local_port)
    transport = ch.server.transport
    return f"<sip:{user}@{where};transport={transport};sipdiag={tag}>"


@dataclass
class Registration:
    """Our binding on the registrar, as its 200 OK described it."""

    contact: str = ""
    code: int | None = None
    reason: str | None = None
    expires: int | None = None  # what the registrar granted our Contact
    listed: list[str] = field(default_factory=list)  # every Contact the 200 OK listed
    received: str | None = None
    rport: int | None = None
    rewritten: bool = False  # Contact made from the address the registrar saw (NAT)
    error: str | None = None
    call_id: str = ""
    gruu: str | None = None  # the public GRUU the registrar granted our instance (RFC 5627)

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


class Binder:
    """REGISTERs a Contact on ``ch`` for the account, and removes it again."""

    def __init__(
        self,
        ch: Channel,
        account: Account,
        server: Server,
        probe_id: str,
        tag: str,
        stop: threading.Event | None = None,
    ):
        self.ch = ch
        self.account = account
        self.ruri = f"sip:{_hostport(server.host, server.port)}"
        if server.transport != "udp":
            self.ruri += f";transport={server.transport}"
        self.series = Dialogless(ch, account, probe_id, stop=stop)
        self.tag = tag
        self.registration = Registration(call_id=self.series.call_id)
        self.sent_contact: str | None = None  # a REGISTER with it went out: un-REGISTER it
        self.last_outcome: Outcome | None = None  # the last REGISTER's (Retry-After, for one)

    def register(self, expires: int, deadline: float, instance: str | None = None) -> Registration:
        """Register our Contact for ``expires`` s. Like PJSIP's contact rewrite, when the
        registrar sees another address (NAT: its answer's Via received/rport), that address is
        registered instead: learnt first from the challenge to a REGISTER without Contact, which
        creates nothing. With ``instance`` (a UUID) the Contact carries +sip.instance and the
        REGISTER asks for a GRUU (RFC 5627), an address that reaches this binding alone."""
        reg = self.registration
        self.instance = instance
        contact = our_contact(self.ch, self.account.user, self.tag)
        look = self.series.send(
            "REGISTER", self.ruri, deadline, to_uri=self.account.aor, answer_challenge=False
        )
        public = self._public_contact(look)
        if public is not None:
            contact, reg.rewritten = public, True
        if instance:
            contact += f';+sip.instance="<urn:uuid:{instance}>"'
        outcome = look
        for _ in range(2):  # 423 Interval Too Brief once, then done
            outcome = self._register(contact, expires, deadline)
            reg.code, reg.reason, reg.error = outcome.code, outcome.reason, outcome.error
            reg.received, reg.rport = outcome.received, outcome.rport
            if outcome.code == 423 and outcome.answer is not None:
                least = sipwire.header_list(outcome.answer, "min-expires")
                if least and least[0].isdigit() and int(least[0]) > expires:
                    expires = int(least[0])
                    continue
            break
        reg.contact = contact
        answer = outcome.answer
        if reg.ok and answer is not None:
            reg.listed = answer.all("contact")
            for b in sipwire.parse_bindings(reg.listed):
                if f";sipdiag={self.tag}" in b.contact:
                    reg.expires = b.expires
                    reg.gruu = b.params.get("pub-gruu") or None
            if reg.expires is None:
                header = answer.first("expires")
                reg.expires = int(header) if header and header.isdigit() else expires
        return reg

    def _public_contact(self, outcome: Outcome) -> str | None:
        if not outcome.received and not outcome.rport:
            return None
        host = outcome.received or self.ch.local_ip
        port = outcome.rport or self.ch.local_port
        if (host, port) == (self.ch.local_ip, self.ch.local_port):
            return None
        return our_contact(self.ch, self.account.user, self.tag, host, port)

    def _register(self, contact: str, expires: int, deadline: float) -> Outcome:
        if expires > 0:
            self.sent_contact = contact
        extra = [f"Expires: {expires}"]
        if getattr(self, "instance", None):
            extra.append("Supported: gruu")
        self.last_outcome = self.series.send(
            "REGISTER", self.ruri, deadline, to_uri=self.account.aor, contact=contact, extra=extra
        )
        return self.last_outcome

    def refresh(self, expires: int, deadline: float) -> Registration:
        """Re-REGISTER our Contact for ``expires`` s (what the registrar grants is recorded)."""
        outcome = self._register(self.registration.contact, expires, deadline)
        least = sipwire.header_list(outcome.answer, "min-expires") if outcome.answer else []
        if outcome.code == 423 and least and least[0].isdigit():  # Interval Too Brief
            outcome = self._register(self.registration.contact, int(least[0]), deadline)
        held = Registration(self.registration.contact, outcome.code, outcome.reason)
        if outcome.answer is not None and held.ok:
            for b in sipwire.parse_bindings(outcome.answer.all("contact")):
                if f";sipdiag={self.tag}" in b.contact:
                    held.expires = b.expires
        return held

    def unregister(self, deadline: float) -> bool:
        """Remove our Contact (Expires: 0); True when the registrar confirmed it. Sent whenever a
        REGISTER with it went out, whatever came back: a late 200 still made a binding."""
        contact = self.registration.contact or self.sent_contact
        if not contact:
            return False
        self.series.stop = None  # clean-up runs after Ctrl-C too
        outcome = self._register(contact, 0, deadline)
        if outcome.code is None and self.ch.server.transport != "udp":
            # The connection is gone (a firewall forgot it while idle): a new one, so that
            # nothing stays behind on the registrar.
            try:
                fresh = Channel(
                    self.ch.server, self.ch.clock, max(0.05, deadline - self.ch.clock())
                )
            except OSError:
                return False
            self.ch.close()
            self.ch = self.series.ch = fresh
            outcome = self._register(contact, 0, deadline)
        return outcome.code is not None and 200 <= outcome.code < 300


# ---- the requests the platform routes to our binding


@dataclass
class Arrival:
    """Our request, as it reached our binding."""

    method: str
    source: str
    transport: str
    after_ms: int
    same_connection: bool | None  # TCP/TLS: on the connection we registered from
    via_count: int
    answered: int
    subject: str | None = None  # as relayed: the run id must still be in it
    run_header: str | None = None


class Listener:
    """Answers requests reaching our binding's channel until ``stop`` or the deadline, and
    records the one carrying ``token`` (or ``call_id``): OPTIONS gets 200, an INVITE 603."""

    def __init__(
        self, ch: Channel, token: str, user_agent: str, contact: str, decline: bool = False
    ) -> None:
        # ``decline``: a request that is not ours gets 480 Temporarily Unavailable, as if no
        # device were there (`sipdiag watch`'s long-lived binding: a real offer must not ring
        # into the void until the platform's timer, the agent counted as reachable).
        self.decline = decline
        self.ch = ch
        self.token = token
        self.user_agent = user_agent
        self.contact = contact
        self.call_id: str | None = None  # set by the sender once its request is built
        self.sent_at: float | None = None
        self.arrival: Arrival | None = None
        self.others: list[dict[str, str]] = []  # other requests that reached us (max 10)
        self.closed: str | None = None
        self.arrived = threading.Event()
        self.stop = threading.Event()
        self._to_tag = _new_id()

    def expect(self, token: str, call_id: str, sent_at: float) -> None:
        """Watch for the next request of ours (its own token and Call-ID, so a retransmission
        of the last one does not count): forget the last arrival."""
        self.arrival = None
        self.arrived.clear()
        self.token, self.call_id, self.sent_at = token, call_id, sent_at

    def run(self, deadline: float) -> None:
        clock = self.ch.clock
        server = self.ch.open_listener()
        streams: list[Channel] = []  # connections the platform opened to us
        main_open = True
        try:
            while not self.stop.is_set() and clock() < deadline:
                # Short steps once ours arrived (the caller stops us next) or with a TCP
                # listener to poll; 0.1 s otherwise, e.g. through an idle period.
                fast = server is not None or self.arrival is not None
                step = min(deadline, clock() + (0.02 if fast else 0.1))
                if main_open:
                    try:
                        got = self.ch.receive(step)
                    except (Closed, OSError) as exc:
                        self.closed = str(getattr(exc, "strerror", None) or exc)
                        main_open = False
                        if server is None:
                            return
                        continue
                    if got is not None:
                        self._handle(got, self.ch)
                else:
                    self.stop.wait(max(0.0, step - clock()))
                if server is not None:
                    self._serve_new(server, streams, clock)
        finally:
            for other in streams:
                other.close()
            if server is not None:
                server.close()

    def _serve_new(
        self, server: socket.socket, streams: list[Channel], clock: Callable[[], float]
    ) -> None:
        try:
            sock, _ = server.accept()
            streams.append(Channel.adopt(self.ch.server, sock, clock))
        except (BlockingIOError, OSError):
            pass
        for other in list(streams):
            try:
                got = other.receive(clock() + 0.005)
            except (Closed, OSError):
                streams.remove(other)
                other.close()
                continue
            if got is not None:
                self._handle(got, other)

    def _handle(self, got: Received, ch: Channel) -> None:
        method = method_of(got.msg)
        if method is None or method == "ACK":
            return
        ours = (got.msg.first(TOKEN_HEADER) or "") == self.token or (
            self.call_id is not None and got.msg.first("call-id") == self.call_id
        )
        if method == "INVITE" and ours:
            code, reason = 603, "Decline"
        elif method == "OPTIONS":  # ours, or the platform's NAT keep-alive: as softphones do
            code, reason = 200, "OK"
        elif self.decline and method != "CANCEL":
            code, reason = 480, "Temporarily Unavailable"
            if len(self.others) < 10:
                self.others.append({"method": method, "source": got.source, "answered": "480"})
        else:
            # A real offer (or anything else) reaching our test binding: no answer, so the
            # platform's own timers decide, as if we were not there (never a 486 of ours).
            if len(self.others) < 10:
                self.others.append({"method": method, "source": got.source, "answered": "no"})
            return
        extra = ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"] if method == "OPTIONS" else []
        answer = build_response(
            got.msg,
            code,
            reason,
            to_tag=self._to_tag,
            user_agent=self.user_agent,
            contact=self.contact,
            headers=extra,
        )
        source = got.source.rsplit(":", 1)
        with contextlib.suppress(OSError, ValueError):
            to = (source[0].strip("[]"), int(source[1]))
            ch.send(answer, to if ch.server.transport == "udp" else None)
        if ours and self.arrival is None:
            stream = ch.server.transport != "udp"
            self.arrival = Arrival(
                method=method,
                source=got.source,
                transport=self.ch.server.transport,
                after_ms=max(0, round((got.at - (self.sent_at or got.at)) * 1000)),
                same_connection=(ch is self.ch) if stream else None,
                via_count=len([v for line in got.msg.all("via") for v in line.split(",")]),
                answered=code,
                subject=got.msg.first("subject"),
                run_header=got.msg.first(RUN_HEADER),
            )
            self.arrived.set()
        elif not ours and len(self.others) < 10:
            self.others.append({"method": method, "source": got.source})
