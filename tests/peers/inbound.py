"""Requests from the platform to the agent: three namespaces, Kamailio, baresip (tests/README.md
§Inbound).

    agent 10.95.0.1 ── 10.95.0.254  router  10.94.0.254 ── platform 10.94.0.2 + 10.94.0.3

The agent namespace runs the softphones (baresip) and sipdiag (``run_sipdiag``); the router
forwards and, with ``nat=True``, masquerades everything it sends to the platform (the platform
sees the agent as 10.94.0.254), with its conntrack UDP timeouts optionally lowered
(``udp_timeout``) so the NAT forgets a silent mapping; the platform runs Kamailio on 10.94.0.2
with requests to users routed to their bindings (``route_users``) and the NAT fix-up
(``nat_fixup``), and with ``send_from=True`` relays them from 10.94.0.3 instead. ``ask`` sends
an authenticated OPTIONS or INVITE to a user from the platform side, as a call offer would.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from clihelp import CliResult, cli_process

from .baresip import Baresip
from .kamailio import FR_TIMER_MS, Kamailio
from .natrouter import nat_rules, wire_chain
from .netns import delete_namespaces, run_checked
from .process import netns_prefix, socket_in_netns
from .sip import digest_response, header_values, status_code

AGENT_IP = "10.95.0.1"
ROUTER_INSIDE_IP = "10.95.0.254"
ROUTER_OUTSIDE_IP = "10.94.0.254"
PLATFORM_IP = "10.94.0.2"
PLATFORM_SEND_IP = "10.94.0.3"  # Kamailio's second socket with send_from=True
USER, PASSWORD = "alice", "alice-secret"
AGENT_TABLE = "inet tb_agent"
# Conntrack runs in a namespace only once a rule there uses it: without this table a firewall
# added after the softphone registered would take its flow for a new one.
TRACK_RULES = (
    "table inet tb_track {\n  chain pre {\n"
    "    type filter hook prerouting priority -150; policy accept;\n"
    "    ct state new counter\n  }\n}\n"
)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@dataclass
class Exchange:
    """One request sent by ``ask`` and every response it got (the challenge included)."""

    method: str
    request_uri: str
    call_id: str
    responses: list[str] = field(default_factory=list)
    final: str | None = None  # the authenticated request's final answer; None: silence
    elapsed: float | None = None  # s from sending the authenticated request to ``final``
    cancelled: bool = False  # a CANCEL was sent after the first 18x
    cancel_answer: str | None = None  # the answer to that CANCEL

    @property
    def code(self) -> int | None:
        return None if self.final is None else status_code(self.final)

    @property
    def codes(self) -> list[int]:
        """Status codes in arrival order, e.g. ``[407, 100, 200]``."""
        return [status_code(r) for r in self.responses]

    @property
    def provisional(self) -> list[int]:
        return [c for c in self.codes if c < 200]

    def header(self, name: str) -> str | None:
        """The first ``name`` header of the final answer."""
        values = [] if self.final is None else header_values(self.final, name)
        return values[0] if values else None


@dataclass
class BindingReply:
    """A reply Kamailio got from a binding for a relayed request (its ``RPL`` log line)."""

    code: int
    reason: str
    source: str  # ip:port the reply came from (the router's address behind the NAT)
    transport: str
    received_on: str  # Kamailio's ip:port that got it (the socket the request left from)
    user_agent: str | None  # its User-Agent header (baresip sends none in answers)
    server: str | None  # its Server header (baresip: "baresip v1.0.0 (x86_64/linux)")


def _null(logged: str) -> str | None:
    return None if logged == "<null>" else logged


def binding_replies(kamailio: Kamailio, call_id: str) -> list[BindingReply]:
    """Replies from bindings to the requests of ``call_id``, as Kamailio logged them."""
    pattern = re.compile(
        rf" {re.escape(call_id)}}} .*?RPL (\d+) (.*?) from (\S+)/(\w+) to (\S+) "
        r"ua=<(.*)> server=<(.*)>$"
    )
    return [
        BindingReply(int(m[1]), m[2], m[3], m[4], m[5], _null(m[6]), _null(m[7]))
        for line in kamailio.log_text().splitlines()
        if (m := pattern.search(line))
    ]


def _message(
    method: str,
    uri: str,
    local: tuple[str, int],
    transport: str,
    *,
    user: str,
    domain: str,
    call_id: str,
    cseq: int,
    branch: str,
    from_tag: str,
    to_tag: str | None = None,
    headers: Sequence[str] = (),
    body: str = "",
) -> bytes:
    host, port = local
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag={from_tag}",
        f"To: <sip:{user}@{domain}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *headers,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class _Channel:
    """A UDP or TCP socket to the registrar that yields whole SIP messages."""

    def __init__(self, host: str, port: int, transport: str, netns: str | None) -> None:
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        self.transport = transport
        self.sock = socket_in_netns(netns, socket.AF_INET, kind)
        self.buffer = b""
        try:
            self.sock.settimeout(2.0)
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, deadline: float) -> str | None:
        """The next message, or None once ``deadline`` (monotonic) passed."""
        while True:
            if self.transport == "tcp" and (whole := self._framed()) is not None:
                return whole
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65535)
            except TimeoutError:
                return None
            except ConnectionRefusedError:  # ICMP port unreachable on the connected socket
                continue
            if self.transport != "tcp":
                return chunk.decode(errors="replace")
            if not chunk:
                return None
            self.buffer += chunk

    def _framed(self) -> str | None:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
        size = int(length.group(1)) if length else 0
        if len(rest) < size:
            return None
        self.buffer = rest[size:]
        return (head + sep + rest[:size]).decode(errors="replace")

    def close(self) -> None:
        self.sock.close()


def _to_tag(message: str) -> str | None:
    values = header_values(message, "To") or header_values(message, "t")
    found = re.search(r";\s*tag=([^;>\s]+)", values[0]) if values else None
    return found.group(1) if found else None


def _is_response_to(message: str, call_id: str, cseq: int, method: str) -> bool:
    if not message.startswith("SIP/2.0 "):
        return False
    ids = header_values(message, "Call-ID") or header_values(message, "i")
    cseqs = header_values(message, "CSeq")
    return bool(ids and ids[0] == call_id and cseqs and cseqs[0].split() == [str(cseq), method])


def ask(
    host: str,
    port: int,
    method: str = "OPTIONS",
    user: str = USER,
    password: str = PASSWORD,
    *,
    netns: str | None = None,
    transport: str = "udp",
    timeout: float = FR_TIMER_MS / 1000 + 3,
    cancel_on_ringing: bool = False,
    headers: Sequence[str] = (),
    domain: str | None = None,
) -> Exchange:
    """Send ``method`` (OPTIONS or INVITE) for ``user`` to the registrar at host:port, from
    inside ``netns``, as ``user`` (From/To/auth user all ``user``): answer one 401/407 digest
    challenge, then wait up to ``timeout`` s for the final answer. INVITE carries a PCMU offer;
    ``cancel_on_ringing`` CANCELs it at the first 18x (then waits for the 487 and ACKs it). A
    2xx to an INVITE is ACKed (to its Contact, through its Record-Route) and the call is left
    up: use ``cancel_on_ringing`` with softphones that answer."""
    uac = _Uac(host, port, method, user, domain or host, transport.lower(), netns, headers)
    try:
        return uac.run(password, timeout, cancel_on_ringing)
    finally:
        uac.channel.close()


class _Uac:
    """The client side of one ``ask``: one socket, one Call-ID, From tag and CSeq series."""

    def __init__(
        self,
        host: str,
        port: int,
        method: str,
        user: str,
        domain: str,
        transport: str,
        netns: str | None,
        headers: Sequence[str],
    ) -> None:
        self.method, self.user, self.domain, self.transport = method, user, domain, transport
        self.uri = f"sip:{user}@{host}:{port};transport={transport}"
        self.call_id = f"{secrets.token_hex(8)}@inbound.test"
        self.from_tag = secrets.token_hex(4)
        self.headers = list(headers)
        self.channel = _Channel(host, port, transport, netns)
        self.local = self.channel.local
        self.exchange = Exchange(method, self.uri, self.call_id)

    def build(
        self,
        method: str,
        cseq: int,
        branch: str,
        *,
        to_tag: str | None = None,
        uri: str | None = None,
        headers: Sequence[str] = (),
        body: str = "",
    ) -> bytes:
        return _message(
            method, uri or self.uri, self.local, self.transport, user=self.user,
            domain=self.domain, call_id=self.call_id, cseq=cseq, branch=branch,
            from_tag=self.from_tag, to_tag=to_tag, headers=headers, body=body,
        )  # fmt: skip

    def run(self, password: str, timeout: float, cancel_on_ringing: bool) -> Exchange:
        method, local = self.method, self.local
        body = SDP.format(ip=local[0]) if method == "INVITE" else ""
        contact = f"Contact: <sip:{self.user}@{local[0]}:{local[1]};transport={self.transport}>"
        credentials: list[str] = []
        for cseq in (1, 2):
            branch = f"z9hG4bK{secrets.token_hex(6)}"
            request = self.build(
                method, cseq, branch, headers=[contact, *self.headers, *credentials], body=body
            )
            sent_at = time.monotonic()
            self.channel.send(request)
            final = self.collect(cseq, branch, time.monotonic() + timeout, cancel_on_ringing)
            if final is None:
                return self.exchange
            code = status_code(final)
            if method == "INVITE" and code >= 300:  # ACK for a non-2xx: same branch
                self.channel.send(self.build("ACK", cseq, branch, to_tag=_to_tag(final)))
            if code in (401, 407) and cseq == 1:
                challenge = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
                answer = "Authorization" if code == 401 else "Proxy-Authorization"
                digest = digest_response(
                    header_values(final, challenge)[0], method, self.uri, self.user, password
                )
                credentials = [f"{answer}: {digest}"]
                continue
            self.exchange.final, self.exchange.elapsed = final, time.monotonic() - sent_at
            if method == "INVITE" and code < 300:
                self.ack_2xx(cseq, final)
            break
        return self.exchange

    def collect(
        self, cseq: int, branch: str, deadline: float, cancel_on_ringing: bool
    ) -> str | None:
        """Responses to this CSeq until a final one; a CANCEL at the first 18x if asked."""
        while (message := self.channel.receive(deadline)) is not None:
            if _is_response_to(message, self.call_id, cseq, "CANCEL"):
                self.exchange.cancel_answer = message
                continue
            if not _is_response_to(message, self.call_id, cseq, self.method):
                continue
            self.exchange.responses.append(message)
            code = status_code(message)
            if code >= 200:
                return message
            ringing = self.method == "INVITE" and code >= 180
            if cancel_on_ringing and ringing and not self.exchange.cancelled:
                self.exchange.cancelled = True
                self.channel.send(self.build("CANCEL", cseq, branch))
        return None

    def ack_2xx(self, cseq: int, final: str) -> None:
        """The ACK of a 2xx is a request of the dialog: to its Contact, via its route set."""
        contacts = header_values(final, "Contact") or header_values(final, "m")
        target = re.search(r"<([^>]+)>", contacts[0]) if contacts else None
        routes = [r.strip() for v in header_values(final, "Record-Route") for r in v.split(",")]
        self.channel.send(
            self.build(
                "ACK", cseq, f"z9hG4bK{secrets.token_hex(6)}", to_tag=_to_tag(final),
                uri=target.group(1) if target else None,
                headers=[f"Route: {r}" for r in reversed(routes)],
            )
        )  # fmt: skip


def agent_rules(*rules: str) -> str:
    """nft script replacing table ``inet tb_agent`` with an input chain of ``rules`` (none:
    the table is only deleted)."""
    reset = f"table {AGENT_TABLE}\ndelete table {AGENT_TABLE}\n"
    if not rules:
        return reset
    body = "".join(f"    {rule}\n" for rule in rules)
    return (
        f"{reset}table {AGENT_TABLE} {{\n  chain input {{\n"
        f"    type filter hook input priority 0; policy accept;\n{body}  }}\n}}\n"
    )


@dataclass
class InboundBed:
    """The three namespaces, the platform's Kamailio and the agent's softphones."""

    agent: str
    router: str
    platform: str
    work_dir: Path
    nat: bool
    kamailio: Kamailio | None = None
    phones: list[Baresip] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        work_dir: Path,
        *,
        nat: bool = True,
        udp_timeout: int | None = None,
        softphones: int = 1,
        user: str = USER,
        password: str = PASSWORD,
        transport: str = "udp",
        regint: int = 600,
        route_users: bool = True,
        nat_fixup: bool = True,
        options_self: bool = False,
        send_from: bool = False,
        one_binding: bool = False,
        fr_timer_ms: int = FR_TIMER_MS,
        timeout: float = 10.0,
        **kamailio_options: Any,
    ) -> InboundBed:
        """Namespaces, routes and the router's NAT, Kamailio in ``platform`` on PLATFORM_IP
        (``send_from``: relaying from PLATFORM_SEND_IP; the other Kamailio.start options as
        named, or in ``kamailio_options``), then ``softphones`` baresip instances in ``agent``
        registered as ``user`` over ``transport``. ``nat=False`` routes without NAT;
        ``udp_timeout`` sets the router's conntrack UDP timeouts (s). Everything made is
        removed again if a step fails."""
        token = secrets.token_hex(3)
        bed = cls(f"sdIA{token}", f"sdIR{token}", f"sdIP{token}", work_dir, nat)
        try:
            bed._create_network(token)
            if udp_timeout is not None:
                bed.set_udp_timeout(udp_timeout)
            bed.kamailio = Kamailio.start(
                work_dir / "kamailio",
                host=PLATFORM_IP,
                netns=bed.platform,
                timeout=timeout,
                route_users=route_users,
                nat_fixup=nat_fixup,
                options_self=options_self,
                send_from=PLATFORM_SEND_IP if send_from else None,
                one_binding=one_binding,
                fr_timer_ms=fr_timer_ms,
                **kamailio_options,
            )
            for _ in range(softphones):
                bed.start_softphone(
                    user, password, transport=transport, regint=regint, timeout=timeout
                )
        except BaseException:
            bed.stop()
            raise
        return bed

    def _create_network(self, token: str) -> None:
        router_out = f"vIRo{token}"
        wire_chain(
            self.namespaces,
            (f"vIA{token}", f"vIRi{token}", router_out, f"vIP{token}"),
            (AGENT_IP,),
            (ROUTER_INSIDE_IP, ROUTER_OUTSIDE_IP),
            (PLATFORM_IP, PLATFORM_SEND_IP),
            # Without NAT the platform must route its requests back to the agent's subnet. With
            # NAT it has no route there, as on the internet: a private contact is unreachable.
            outside_route=not self.nat,
        )
        self.nft(self.agent, TRACK_RULES)
        if self.nat:
            self.nft(self.router, nat_rules(router_out))

    # --- topology -----------------------------------------------------------------------

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return self.agent, self.router, self.platform

    @property
    def seen_from(self) -> str:
        """The address the platform sees the agent's packets come from."""
        return ROUTER_OUTSIDE_IP if self.nat else AGENT_IP

    @property
    def agent_prefix(self) -> list[str]:
        """argv prefix running a command in the agent namespace (``cli_process(prefix=...)``)."""
        return netns_prefix(self.agent)

    @property
    def pbx(self) -> Kamailio:
        if self.kamailio is None:
            raise RuntimeError("Kamailio is not running")
        return self.kamailio

    def registrar(self, transport: str = "udp") -> str:
        """``sip:10.94.0.2:PORT;transport=...``: what sipdiag in the agent namespace uses."""
        return self.pbx.registrar_uri(transport)

    def nft(self, netns: str, script: str) -> None:
        run_checked([*netns_prefix(netns), "nft", "-f", "-"], stdin=script)

    def set_udp_timeout(self, seconds: int) -> None:
        """The router's conntrack UDP timeouts, unreplied and stream (per namespace)."""
        run_checked(
            [*netns_prefix(self.router), "sysctl", "-qw",
             f"net.netfilter.nf_conntrack_udp_timeout={seconds}",
             f"net.netfilter.nf_conntrack_udp_timeout_stream={seconds}"]
        )  # fmt: skip

    def agent_firewall(self, *rules: str) -> None:
        """Replace the agent's input firewall (table ``inet tb_agent``) with ``rules`` in order
        (policy accept); no rules removes it."""
        self.nft(self.agent, agent_rules(*rules))

    def stateful_firewall(self, allow_from: Iterable[str] = ()) -> None:
        """The agent admits only established/related flows (and new ones from ``allow_from``):
        a request from an address it never sent to is dropped."""
        self.agent_firewall(
            'iifname "lo" accept',
            "ct state established,related accept",
            *(f"ip saddr {address} accept" for address in allow_from),
            "drop",
        )

    # --- the agent side -----------------------------------------------------------------

    def start_softphone(
        self,
        user: str = USER,
        password: str = PASSWORD,
        *,
        transport: str = "udp",
        regint: int = 600,
        timeout: float = 10.0,
    ) -> Baresip:
        """One more baresip in the agent namespace, registered (waits for its 200 OK)."""
        phone = Baresip.start(
            self.work_dir / f"baresip{len(self.phones)}",
            f"{PLATFORM_IP}:{self.pbx.port}",
            user,
            password,
            transport=transport,
            host=AGENT_IP,
            netns=self.agent,
            regint=regint,
            timeout=timeout,
        )
        self.phones.append(phone)
        return phone

    @property
    def softphone(self) -> Baresip:
        return self.phones[0]

    def run_in_agent(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the agent namespace (``env`` adds to this process's environment)."""
        return subprocess.run(
            [*self.agent_prefix, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )

    def run_sipdiag(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> CliResult:
        """``python -m diag ARGS`` in the agent namespace: code, stdout, stderr (and .json)."""
        return cli_process(*args, env=env, timeout=timeout, prefix=self.agent_prefix)

    # --- the platform side --------------------------------------------------------------

    def ask(self, method: str = "OPTIONS", user: str = USER, **options: Any) -> Exchange:
        """``ask`` Kamailio from the platform namespace (options as for ``ask``)."""
        options.setdefault("netns", self.platform)
        return ask(self.pbx.host, self.pbx.port, method, user, **options)

    def binding_replies(
        self, exchange: Exchange, at_least: int = 0, wait: float = 2.0
    ) -> list[BindingReply]:
        """What Kamailio got back from bindings for ``exchange`` (every reply of every branch,
        in arrival order). Only the first final answer is relayed and the others can come
        later: with ``at_least``, poll the log up to ``wait`` s until that many are there."""
        deadline = time.monotonic() + wait
        while True:
            replies = binding_replies(self.pbx, exchange.call_id)
            if len(replies) >= at_least or time.monotonic() >= deadline:
                return replies
            time.sleep(0.02)

    def bindings(self, user: str = USER) -> list[dict[str, str]]:
        return self.pbx.bindings(user)

    # --- teardown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the softphones and Kamailio, kill what is left in the namespaces, delete them."""
        try:
            for phone in self.phones:
                phone.stop()
            if self.kamailio is not None:
                self.kamailio.stop()
        finally:
            delete_namespaces(self.namespaces)

    def __enter__(self) -> InboundBed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_paths(self) -> list[Path]:
        """Kamailio's and every softphone's log, for failure reports."""
        daemons = [p.daemon for p in self.phones]
        return [d.log_path for d in ([self.kamailio.daemon] if self.kamailio else []) + daemons]
