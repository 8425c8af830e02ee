"""Sending one OPTIONS, or one REGISTER query (no Contact), over one transport (UDP, TCP or
TLS) and recording what came back.

OPTIONS: net.sip-options (checks/net/sip_options.py). REGISTER without Contact (register_probe): the
binding query of sip.register (answering the registrar's digest challenge when a password is
given), its control probe and --no-register. The wire format is checks/wire/sip.py.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from checks.wire import sip as sipwire
from checks.wire.budget import MIN_CONCLUSIVE_WAIT, T1, UNREACHABLE_ERRNOS
from checks.wire.sip import Password, SipMessage, parse_bindings, parse_challenge, via_received
from checks.wire.tls import certificate_details, chain_details, peer_chain
from diag.outcomes import (
    ANSWERED,
    CHALLENGED,
    ERROR,
    NOT_FINISHED,
    OK,
    REFUSED,
    REJECTED,
    TIMEOUT,
    TLS_FAILED,
    TLS_UNTRUSTED,
    UNREACHABLE,
)

MAX_IGNORED = 10  # stray datagrams listed in details (a flood must not bloat the report)


class CaFileError(Exception):
    """The --ca file cannot be loaded: the user's input, not the network, is at fault."""


@dataclass(frozen=True)
class Plan:
    """Where one transport's probe goes and how its TLS identity is checked."""

    transport: str
    host: str  # name the target came from (for the R-URI)
    port: int
    address: str | None  # None: resolve host in the probe thread
    source: str  # "dns" (net.dns / targets_for) or "derived" (registrar + default port)
    server_hostname: str  # the registrar host: SNI and the certificate name check
    ca: str | None
    probe_id: str
    user_agent: str
    method: str = "OPTIONS"  # or "REGISTER": a binding query for user@domain (no Contact)
    user: str = ""
    domain: str = ""
    auth_user: str = ""  # REGISTER with a password: the digest user (default: user)
    password: Password | None = None  # REGISTER: answer the registrar's digest challenge


def _hostport(host: str, port: int) -> str:
    return f"{sipwire.host_literal(host)}:{port}"


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class Probe:
    """One transport's probe; fills ``self.out`` step by step, so a late result still says
    how far it got."""

    def __init__(
        self, plan: Plan, deadline: float, clock: Callable[[], float], now: Callable[[], float]
    ) -> None:
        self.plan = plan
        self.deadline = deadline
        self.clock = clock
        self.now = now  # wall clock (epoch seconds) for the certificate's days_left
        self.wait = deadline - clock()
        self.local_ip = ""
        self.verify_error: str | None = None
        self.answer: SipMessage | None = None  # the last answer recorded (final if any)
        self.challenges: list[SipMessage] = []  # 401/407 answers to this query, in order
        self.authorized = 0  # requests sent with credentials
        self.answers = 0  # SIP answers of ours received, provisional ones included
        self.foreign = 0  # messages from the server that were not an answer to this request
        self.partial = 0  # bytes of an unfinished message in the stream when time ran out
        self.uri, self.local_port = "", 0
        self.path_outcome = NOT_FINISHED  # the outcome before an untrusted certificate wins
        self.out: dict[str, Any] = {
            "target": _hostport(plan.host, plan.port),
            "target_source": plan.source,
            "address": plan.address,
            "local": None,
            "outcome": NOT_FINISHED,
            "code": None,
            "reason": None,
            "rtt_ms": None,
            "connect_ms": None,
            "server": None,
            "allow": [],
            "received": None,
            "rport": None,
            "call_id": None,
            "error": None,
            "ignored": [],  # datagrams/messages that were not our answer, and why
        }
        if plan.transport == "udp":
            self.out["retransmitted"] = False
        if plan.transport == "tls":
            self.out.update(handshake_ms=None, tls_version=None, certificate=None)

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def _arm(self, sock: socket.socket, until: float | None = None) -> None:
        """Time the next socket call out at ``until`` (default: the probe's deadline)."""
        if self.clock() >= self.deadline:
            raise TimeoutError
        wait = min(self.deadline, until or self.deadline) - self.clock()
        sock.settimeout(max(wait, 0.001))  # never 0: that would make the socket non-blocking

    def run(self) -> None:
        try:
            address = self.plan.address or self._resolve()
            self.out["address"] = address
            if self.plan.transport == "udp":
                self._udp(address)
            else:
                self._stream(address)
        except TimeoutError:
            if self.out["code"] is not None:  # a provisional answer, then no final one
                self.out["error"] = f"no final answer after {self.out['code']}"
            elif self.partial or self.foreign:  # the server spoke, just not an answer to us
                self._unusable(self._not_an_answer())
            elif self.wait < MIN_CONCLUSIVE_WAIT:
                self._end(NOT_FINISHED, f"only {self.wait:.1f} s of the budget was left to wait")
            else:
                self._end(TIMEOUT, f"no answer within {self.wait:.1f} s")
        except ConnectionRefusedError as exc:
            self._end(REFUSED, exc)
        except ssl.SSLError as exc:
            self._end(TLS_FAILED, exc)
        except OSError as exc:
            self._end(UNREACHABLE if exc.errno in UNREACHABLE_ERRNOS else ERROR, exc)
        except sipwire.UnusableAnswer as exc:  # e.g. an absurd Content-Length over TCP
            self._unusable(str(exc))
        except (ValueError, CaFileError) as exc:  # a stream we cannot frame; a bad --ca file
            self._end(ERROR, exc)
        self.path_outcome = self.out["outcome"]
        if self.verify_error is not None:
            # The certificate is the evidence, whatever the unverified retry then did.
            self.out["outcome"] = TLS_UNTRUSTED
            if self.out["certificate"] is None:
                self.out["certificate"] = certificate_details(
                    None, verified=False, verify_error=self.verify_error, now=self.now()
                )

    def _resolve(self) -> str:
        kind = socket.SOCK_DGRAM if self.plan.transport == "udp" else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(self.plan.host, self.plan.port, type=kind)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {self.plan.host}: {exc.strerror}") from None
        return str(infos[0][4][0])

    def _end(self, outcome: str, exc: BaseException | str) -> None:
        self.out["outcome"] = outcome
        self.out["error"] = exc if isinstance(exc, str) else _describe_error(exc)

    def _socket(self, address: str, kind: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return socket.socket(family, kind)

    def _request(self, sock: socket.socket) -> bytes:
        local = sock.getsockname()
        self.out["local"] = _hostport(str(local[0]), int(local[1]))
        self.local_ip = str(local[0])
        uri = f"sip:{_hostport(self.plan.host, self.plan.port)}"
        if self.plan.transport != "udp":
            uri += f";transport={self.plan.transport}"
        self.uri, self.local_port = uri, int(local[1])
        self.out["call_id"] = f"{self.plan.probe_id}@{sipwire.host_literal(self.local_ip)}"
        plan = self.plan
        head = (uri, plan.transport, self.local_ip, self.local_port, plan.probe_id)
        if plan.method == "REGISTER":
            return sipwire.register_request(*head, plan.user, plan.domain, plan.user_agent)
        return sipwire.options_request(*head, plan.user_agent)

    def _branch_id(self) -> str:
        """The probe id of the request now in flight: each authorized retry is a new
        transaction (new branch) on the same Call-ID (RFC 3261 10.2, 22.2)."""
        return self.plan.probe_id + (f"-a{self.authorized}" if self.authorized else "")

    def _next_request(self) -> bytes | None:
        """The REGISTER answering the challenge just received, or None when the query is over.

        Credentials go only where the query was asked to send them, only over a path whose TLS
        certificate verified (a digest response is an offline dictionary attack's material), and
        a second time only for a stale nonce (RFC 7616 3.3): a repeated challenge otherwise
        means the credentials were refused, as PJSIP reads it too."""
        plan, msg = self.plan, self.answer
        if plan.method != "REGISTER" or plan.password is None or msg is None:
            return None
        code = sipwire.status_code(msg)
        if code not in (401, 407) or self.verify_error is not None:
            return None
        challenge = msg.first("proxy-authenticate" if code == 407 else "www-authenticate")
        if challenge is None or not sipwire.answers_again(challenge, self.authorized):
            return None
        if len(challenge) > sipwire.MAX_CHALLENGE:  # PJSIP drops such a challenge too
            self.out["auth_error"] = f"a {len(challenge)}-byte challenge (nonce) is not answered"
            return None
        try:
            value = sipwire.digest_authorization(
                challenge,
                method="REGISTER",
                uri=self.uri,
                username=plan.auth_user or plan.user,
                password=plan.password.reveal(),
                cnonce=uuid.uuid4().hex[:16],
            )
        except ValueError as exc:  # a scheme or algorithm we cannot answer: say so
            self.out["auth_error"] = str(exc)
            return None
        self.authorized += 1
        return sipwire.register_request(
            self.uri,
            plan.transport,
            self.local_ip,
            self.local_port,
            self._branch_id(),
            plan.user,
            plan.domain,
            plan.user_agent,
            authorization=value,
            authorization_header="Proxy-Authorization" if code == 407 else "Authorization",
            call_id=self.out["call_id"],
            cseq=1 + self.authorized,
        )

    def _udp(self, address: str) -> None:
        with self._socket(address, socket.SOCK_DGRAM) as sock:
            # Connected, so an ICMP port unreachable comes back as ConnectionRefusedError.
            sock.connect((address, self.plan.port))
            request = self._request(sock)
            sent = self.clock()
            sock.send(request)
            retransmit_at: float | None = sent + T1
            while True:
                if retransmit_at is not None and self.clock() >= retransmit_at:
                    sock.send(request)  # the same bytes: same branch, same transaction
                    self.out["retransmitted"] = True
                    retransmit_at = None
                    continue
                wake = self.deadline if retransmit_at is None else min(retransmit_at, self.deadline)
                self._arm(sock, wake)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                if self._accept(data, sent):
                    request = self._next_request() or b""
                    if not request:
                        return
                    sent = self.clock()
                    sock.send(request)
                    retransmit_at = sent + T1

    def _accept(self, data: bytes, sent: float) -> bool:
        """Record ``data`` if it is our final answer; stray or provisional ones are skipped."""
        call_id = self.out["call_id"] if self.authorized else None
        try:
            msg = sipwire.match_response(data, self._branch_id(), self.plan.method, call_id)
        except sipwire.UnusableAnswer as exc:  # ours, but nothing a softphone can work with
            self._unusable(str(exc))
            return True
        except ValueError as exc:
            self._ignore(str(exc))
            self.foreign += bool(data.strip())  # a keep-alive CRLF is not an answer
            return False
        if msg is None:
            self._ignore("an answer to another request")
            self.foreign += 1
            return False
        self._record(msg, sent)
        self.answers += 1
        code = sipwire.status_code(msg)
        if code in (401, 407):
            self.challenges.append(msg)
        return code >= 200

    def _unusable(self, why: str) -> None:
        """The server answered, unusably: a final answer for REGISTER (the registrar's fault,
        never the path's); for OPTIONS an error of the probe, with the same words."""
        self.answers += 1
        self.answer = None
        if self.plan.method == "REGISTER":
            self.out.update(outcome=ANSWERED, code=None, reason=None, error=why, unusable=why)
        else:
            self._end(ERROR, f"unusable answer: {why}")

    def _not_an_answer(self) -> str:
        if self.partial:
            return f"{self.partial} bytes of an answer, then nothing more within {self.wait:.1f} s"
        return (
            f"{self.foreign} message(s) came back within {self.wait:.1f} s, none an answer to "
            f"this request ({self.out['ignored'][0]})"
        )

    def _ignore(self, why: str) -> None:
        if len(self.out["ignored"]) < MAX_IGNORED:
            self.out["ignored"].append(why)

    def _record(self, msg: SipMessage, sent: float) -> None:
        self.answer = msg
        self.out["outcome"] = ANSWERED
        self.out["error"] = None
        self.out["code"] = sipwire.status_code(msg)
        self.out["reason"] = sipwire.reason_phrase(msg)
        self.out["rtt_ms"] = _ms(self.clock() - sent)
        self.out["server"] = msg.first("server") or msg.first("user-agent")
        self.out["allow"] = sipwire.header_list(msg, "allow")
        via = sipwire.top_via(msg)
        if via:
            self.out["received"], self.out["rport"] = via_received(via)

    def _connect(self, address: str) -> socket.socket:
        sock = self._socket(address, socket.SOCK_STREAM)
        try:
            self._arm(sock)
            t0 = self.clock()
            sock.connect((address, self.plan.port))
            self.out["connect_ms"] = _ms(self.clock() - t0)
        except BaseException:
            sock.close()
            raise
        return sock

    def _stream(self, address: str) -> None:
        sock = self._connect(address)
        try:
            if self.plan.transport == "tls":
                tls = self._handshake(sock, verify=True)
                if tls is None:  # untrusted: look at the certificate without verifying
                    sock.close()
                    sock = self._connect(address)
                    tls = self._handshake(sock, verify=False)
                if tls is None:  # pragma: no cover - nothing is verified on the retry
                    raise ssl.SSLError("handshake without verification failed")
                sock = tls
            self._exchange(sock)
        finally:
            sock.close()

    def _handshake(self, sock: socket.socket, verify: bool) -> ssl.SSLSocket | None:
        context = ssl.create_default_context()  # the system store ...
        if self.plan.ca:
            try:
                context.load_verify_locations(cafile=self.plan.ca)  # ... plus --ca
            except (ssl.SSLError, OSError) as exc:
                raise CaFileError(f"cannot load the --ca file {self.plan.ca}: {exc}") from None
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._arm(sock)
        t0 = self.clock()
        try:
            tls = context.wrap_socket(sock, server_hostname=self.plan.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            self.verify_error = exc.verify_message or str(exc)
            return None
        self.out["handshake_ms"] = _ms(self.clock() - t0)
        self.out["tls_version"] = tls.version()
        self.out["certificate"] = certificate_details(
            tls.getpeercert(binary_form=True),
            verified=verify,
            verify_error=self.verify_error,
            now=self.now(),
        )
        self.out["certificate"]["chain"] = chain_details(peer_chain(tls))
        return tls

    def _exchange(self, sock: socket.socket) -> None:
        request = self._request(sock)
        sent = self.clock()
        self._arm(sock)
        sock.sendall(request)
        buffer = b""
        while True:
            buffer = buffer.lstrip(b"\r\n")  # keep-alives before a start line (RFC 3261 7.5)
            self.partial = len(buffer)
            size = sipwire.message_length(buffer)
            if size is not None:
                message, buffer = buffer[:size], buffer[size:]
                if self._accept(message, sent):
                    request = self._next_request() or b""
                    if not request:
                        break
                    sent = self.clock()
                    self._arm(sock)
                    sock.sendall(request)
                continue
            self._arm(sock)
            chunk = sock.recv(65535)
            if not chunk:
                raise OSError("the server closed the connection without answering")
            buffer += chunk


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.errno:
        return exc.strerror
    return str(exc) or type(exc).__name__


def register_probe(
    *,
    transport: str,
    host: str,
    port: int,
    address: str | None,
    user: str,
    domain: str,
    probe_id: str,
    user_agent: str,
    ca: str | None,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
    auth_user: str = "",
    password: Password | None = None,
) -> dict[str, Any]:
    """One REGISTER without Contact for ``user@domain`` (sipwire.register_request), run in the
    calling thread until ``deadline`` (a ``clock`` time): what the registrar says to an account
    it is asked about, without ever touching its bindings (RFC 3261 10.2.3).

    With a ``password`` the registrar's digest challenge is answered (as ``auth_user``), so the
    answer says whether the credentials are accepted and, on 200, lists the account's current
    bindings (``bindings``); without one it stops at the challenge.

    ``address`` None: the OS resolver finds ``host`` (not bounded by ``deadline``). Over TLS the
    certificate is verified as for OPTIONS (system store + ``ca``); if it fails, the probe goes
    on unverified so the registrar's answer is still seen, with ``tls_verified`` False, and no
    credentials are sent over it.
    """
    plan = Plan(
        transport=transport,
        host=host,
        port=port,
        address=address,
        source="caller",
        server_hostname=host,
        ca=ca,
        probe_id=probe_id,
        user_agent=user_agent,
        method="REGISTER",
        user=user,
        domain=domain,
        auth_user=auth_user,
        password=password,
    )
    probe = Probe(plan, deadline, clock, now)
    probe.run()
    out, msg = probe.out, probe.answer
    code: int | None = out["code"]
    outcome, error = probe.path_outcome, out["error"]
    # Our credentials went out after the last challenge and no final answer came back.
    auth_unanswered = 0 < probe.authorized >= len(probe.challenges)
    if outcome == ANSWERED and out.get("unusable"):
        outcome, code, msg = REJECTED, 0, None  # the registrar did answer, unusably
    elif (
        outcome == ANSWERED
        and code is not None
        and (code < 200 or (code in (401, 407) and auth_unanswered))
    ):
        outcome, code, msg = TIMEOUT, None, None  # provisional, or a challenge, then nothing
    elif outcome == ANSWERED and code is not None:
        outcome = OK if code < 300 else CHALLENGED if code in (401, 407) else REJECTED
        if outcome == CHALLENGED and password is not None:
            # With credentials to offer, a final challenge is a refusal: repeated after our
            # answer, or one we could not answer (auth_error says why).
            outcome = REJECTED
    first = probe.challenges[0] if probe.challenges else None
    challenge = None
    if first is not None:
        code_first = sipwire.status_code(first)
        challenge = first.first("proxy-authenticate" if code_first == 407 else "www-authenticate")
    tls_verified: bool | None = None
    if transport == "tls" and (probe.verify_error is not None or out["certificate"]):
        tls_verified = probe.verify_error is None
    result: dict[str, Any] = {
        "transport": transport,
        "target": out["target"],
        "user": user,
        "outcome": outcome,
        "code": code,
        "reason": out["reason"] if msg is not None else None,
        # With a password: whether the registrar challenged us (as PJSIP's attempts say);
        # without: whether its final answer is the challenge (the query's healthy answer).
        "challenged": bool(probe.challenges) if password is not None else outcome == CHALLENGED,
        "challenge": parse_challenge(challenge) if challenge else None,
        "challenges": len(probe.challenges),
        "credentials": password is not None,
        "registrar_answered": probe.answers > 0,
        "warning": msg.all("warning") if msg is not None else [],
        "server": out["server"] if msg is not None else None,
        "call_id": out["call_id"],
        "received": out["received"],
        "rport": out["rport"],
        "local": out["local"],  # our side of the query: the source when no received= came back
        "rtt_ms": out["rtt_ms"] if msg is not None else None,
        "error": error,
        "tls_verified": tls_verified,
    }
    if probe.verify_error is not None:
        result["tls_error"] = probe.verify_error
    if out.get("unusable"):
        result["unusable"] = out["unusable"]
        result["reason"] = f"unusable answer: {out['unusable']}"
    if out.get("auth_error"):
        result["auth_error"] = out["auth_error"]
    if msg is not None and msg.undecodable:
        result["undecodable_characters"] = msg.undecodable
    if msg is not None:
        result["server_date"] = msg.first("date")
        result["reason_header"] = msg.all("reason")
    if msg is not None and outcome == OK:
        result["bindings"] = [asdict(b) for b in parse_bindings(msg.all("contact"))]
    return result
