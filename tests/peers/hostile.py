"""A hostile SIP server for tests: answers every request the way a broken or hostile peer might.

One small threaded server on loopback: UDP and TCP on ``port``, TLS on ``tls_port`` (a
certificate of its own, made once per process; ``ca`` is the file that trusts it). ``mode``
picks the behaviour (see MODES). A request is answered in its own Via, From, To, Call-ID and
CSeq, so the client takes the answer as its own, unless the mode corrupts exactly that:

- ``polite``: the control: 401 Digest challenge, then 200 (Contact echoed) to any credentials;
  OPTIONS 200
- ``status-999`` / ``status-000``: a status code outside SIP's 100-699
- ``escapes``: terminal escapes (OSC title, ESC[2J, C1 CSI), CR, NUL and a bidi override in
  every text field: reason phrase, realm, Server, Warning, Contact, Allow (401, then 403)
- ``garbage``: bytes that are not SIP at all
- ``truncated``: the first half of the polite answer (over TCP/TLS, then the connection closes)
- ``huge-headers``: the polite answer with 60 KB of extra headers
- ``flood``: hundreds of stray answers (other branch, Call-ID) and unrelated datagrams around
  each polite answer
- ``wrong-callid`` / ``wrong-cseq`` / ``wrong-branch``: the polite answer with that field altered
- ``challenge-basic`` / ``challenge-algorithm`` / ``challenge-auth-int`` / ``challenge-stale``
  / ``challenge-huge-nonce``: a REGISTER is always challenged, with Basic, an unknown digest
  algorithm, qop=auth-int only, stale=true every time, or a 60 KB nonce
- ``stall``: TCP/TLS accept and never answer (no TLS handshake either); UDP: silence
- ``reset``: TCP/TLS: RST as soon as the connection is accepted
- ``slowloris``: the polite answer at one byte per second
- ``bad-cert-expired`` / ``bad-cert-name``: polite, over TLS with an expired certificate or
  one for another name (``ca`` still trusts it, so only the date or the name is wrong)
- ``silence``: never answers
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .process import free_port

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\r\x00\x9b31m\u202eevil"
HUGE = 60 * 1024
FLOOD_STRAYS = 300
MODES = (
    "polite", "status-999", "status-000", "escapes", "garbage", "truncated", "huge-headers",
    "flood", "wrong-callid", "wrong-cseq", "wrong-branch", "challenge-basic",
    "challenge-algorithm", "challenge-auth-int", "challenge-stale", "challenge-huge-nonce",
    "stall", "reset", "slowloris", "bad-cert-expired", "bad-cert-name", "silence",
)  # fmt: skip
STREAM_ONLY = frozenset({"reset", "slowloris"})  # a datagram cannot be reset or dribbled
TLS_ONLY = frozenset({"bad-cert-expired", "bad-cert-name"})
GARBAGE = b"\x00\xffHTTP/1.1 200 OK\r\n\r\n\x1b[2J garbage"
CHALLENGES = {
    "challenge-basic": 'Basic realm="hostile"',
    "challenge-algorithm": 'Digest realm="hostile", nonce="n0", algorithm=ROT13, qop="auth"',
    "challenge-auth-int": 'Digest realm="hostile", nonce="n0", algorithm=MD5, qop="auth-int"',
    "challenge-stale": 'Digest realm="hostile", nonce="n{n}", algorithm=MD5, stale=true',
    "challenge-huge-nonce": f'Digest realm="hostile", nonce="{"a" * HUGE}", algorithm=MD5',
}
_ECHO = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")


def applies(mode: str, transport: str) -> bool:
    """Whether ``mode`` means anything over ``transport``."""
    if mode in TLS_ONLY:
        return transport == "tls"
    return not (mode in STREAM_ONLY and transport == "udp")


@dataclass(frozen=True)
class Request:
    method: str
    headers: list[tuple[str, str]]  # (lower-case name, value) in order, echoed ones only
    contact: str | None
    authorized: bool

    @classmethod
    def parse(cls, raw: bytes) -> Request:
        lines = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
        headers: list[tuple[str, str]] = []
        contact, authorized = None, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in _ECHO:
                headers.append((name, value.strip()))
            elif name in ("contact", "m"):
                contact = value.strip()
            elif name in ("authorization", "proxy-authorization"):
                authorized = True
        return cls(lines[0].split(" ", 1)[0], headers, contact, authorized)

    def value(self, *names: str) -> str:
        return next((v for n, v in self.headers if n in names), "")


def _head(req: Request, mode: str, code: int) -> list[str]:
    """The request's own Via/From/To/Call-ID/CSeq, altered where ``mode`` says so."""
    out = []
    for name, value in req.headers:
        if name in ("to", "t") and code >= 200 and ";tag=" not in value:
            value += ";tag=hostile"
        if name in ("call-id", "i") and mode == "wrong-callid":
            value = "someone-else@192.0.2.9"
        if name in ("cseq",) and mode == "wrong-cseq":
            number, _, method = value.partition(" ")
            other = "OPTIONS" if method.strip() == "REGISTER" else "REGISTER"
            value = f"{int(number or 0) + 7} {other}"
        if name in ("via", "v") and mode == "wrong-branch":
            value = re.sub(r"branch=[^;,\s]+", "branch=z9hG4bK-not-yours", value)
        out.append(f"{name.title() if len(name) > 1 else name}: {value}")
    return out


def _message(status: str, head: list[str], extra: list[str]) -> bytes:
    return "\r\n".join([status, *head, *extra, "Content-Length: 0", "", ""]).encode()


def _polite(req: Request, mode: str, count: int) -> bytes:
    if req.method == "REGISTER" and not req.authorized:
        nonce = f"nonce{count}"
        challenge = f'Digest realm="hostile", nonce="{nonce}", algorithm=MD5, qop="auth"'
        return _message(
            "SIP/2.0 401 Unauthorized",
            _head(req, mode, 401),
            [f"WWW-Authenticate: {challenge}", "Server: hostile"],
        )
    extra = ["Server: hostile", "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER"]
    if req.method == "REGISTER" and req.contact:
        extra.append(f"Contact: {req.contact};expires=60")
    if mode == "huge-headers":
        line = "X-Filler-{:05d}: " + "x" * 100
        extra += [line.format(i) for i in range(HUGE // 116)]
    return _message("SIP/2.0 200 OK", _head(req, mode, 200), extra)


def _escapes(req: Request) -> bytes:
    text = [f"Server: {ESCAPES}", f'Warning: 399 pbx "{ESCAPES}"', f"Contact: <sip:{ESCAPES}>"]
    if req.method == "REGISTER" and not req.authorized:
        challenge = f'Digest realm="{ESCAPES}", nonce="{ESCAPES}", algorithm=MD5, qop="auth"'
        status = f"SIP/2.0 401 Unauthorized {ESCAPES}"
        return _message(status, _head(req, "", 401), [f"WWW-Authenticate: {challenge}", *text])
    if req.method == "OPTIONS":
        return _message(
            f"SIP/2.0 200 OK {ESCAPES}", _head(req, "", 200), [*text, "Allow: " + ESCAPES]
        )
    return _message(f"SIP/2.0 403 Forbidden {ESCAPES}", _head(req, "", 403), text)


def _strays(req: Request, count: int) -> list[bytes]:
    """Answers to other transactions: another branch and Call-ID, the rest as ``req``'s."""
    out = []
    for i in range(count):
        head = []
        for (name, _), line in zip(req.headers, _head(req, "", 200), strict=True):
            if name in ("via", "v"):
                line = f"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-stray{i}"
            elif name in ("call-id", "i"):
                line = f"Call-ID: stray{i}@192.0.2.9"
            head.append(line)
        out.append(_message("SIP/2.0 200 OK", head, ["Server: stray"]))
    return out


def _junk() -> list[bytes]:
    stun = struct.pack("!HHI12s", 0x0101, 0, 0x2112A442, b"hostile-txid")
    return [b"", b"\r\n\r\n", b"\r\n", stun, b"\xff" * 512, b"NOTIFY sip:a@b SIP/2.0\r\n\r\n"]


class Answerer:
    """What ``mode`` sends for each request; counts requests (nonces, stale loops)."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.count = 0
        self._lock = threading.Lock()

    def replies(self, raw: bytes, stream: bool) -> list[bytes]:
        """The messages (datagrams, or chunks of a stream) that answer ``raw``."""
        with self._lock:
            self.count += 1
            count = self.count
        mode, req = self.mode, Request.parse(raw)
        if mode in ("silence", "stall"):
            return []
        if mode == "garbage":
            return [GARBAGE]
        if mode.startswith("status-"):
            code = mode.split("-", 1)[1]
            return [_message(f"SIP/2.0 {code} Whatever", _head(req, mode, 200), [])]
        if mode == "escapes":
            return [_escapes(req)]
        if mode in CHALLENGES and req.method == "REGISTER":
            challenge = CHALLENGES[mode].replace("{n}", str(count))
            extra = [f"WWW-Authenticate: {challenge}", "Server: hostile"]
            return [_message("SIP/2.0 401 Unauthorized", _head(req, mode, 401), extra)]
        polite = _polite(req, mode, count)
        if mode == "truncated":
            return [polite[: len(polite) // 2]]
        if mode == "flood":
            strays = _strays(req, FLOOD_STRAYS)
            junk = [j for j in _junk() if not stream or j.startswith(b"\r\n")]
            half = len(strays) // 2
            return [*strays[:half], *junk, polite, *strays[half:], *junk]
        return [polite]


@cache
def _certificates() -> dict[str, tuple[Path, Path]]:
    """(certificate, key) per kind: "good" names 127.0.0.1, "expired" ended yesterday,
    "wrong-name" names another host. Each is self-signed, so it is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(tempfile.mkdtemp(prefix="hostile-tls-"))
    now = dt.datetime.now(dt.UTC)
    kinds = {
        "good": ("127.0.0.1", now - dt.timedelta(days=1), now + dt.timedelta(days=2)),
        "expired": ("127.0.0.1", now - dt.timedelta(days=30), now - dt.timedelta(days=1)),
        "wrong-name": ("pbx.wrong.example", now - dt.timedelta(days=1), now + dt.timedelta(days=2)),
    }
    out = {}
    for kind, (name, start, end) in kinds.items():
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        try:
            alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            alt = x509.DNSName(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{kind}.crt", directory / f"{kind}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out[kind] = (cert_path, key_path)
    return out


@dataclass
class HostileSip:
    mode: str
    host: str = "127.0.0.1"
    port: int = 0  # UDP and TCP
    tls_port: int = 0
    ca: str = ""  # the certificate file that trusts the TLS side (self-signed)
    received: list[bytes] = field(default_factory=list)
    _answerer: Answerer | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _tls: ssl.SSLContext | None = None

    def start(self) -> HostileSip:
        self._answerer = Answerer(self.mode)
        kind = {"bad-cert-expired": "expired", "bad-cert-name": "wrong-name"}.get(self.mode, "good")
        cert, key = _certificates()[kind]
        self.ca = str(cert)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self.port = free_port([self.host], ("udp", "tcp"))
        udp = self._bind(socket.SOCK_DGRAM, self.port)
        tcp = self._bind(socket.SOCK_STREAM, self.port)
        while True:
            self.tls_port = free_port([self.host], ("tcp",))
            if self.tls_port != self.port:
                break
        tls = self._bind(socket.SOCK_STREAM, self.tls_port)
        self._thread(self._serve_udp, udp)
        self._thread(self._serve_tcp, tcp, False)
        self._thread(self._serve_tcp, tls, True)
        return self

    def _bind(self, kind: int, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        self._sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.settimeout(0.1)
        return sock

    def _thread(self, target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True, name="hostile-sip").start()

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def uri_for(self, transport: str) -> str:
        port = self.tls_port if transport == "tls" else self.port
        return f"sip:{self.host}:{port};transport={transport}"

    def _serve_udp(self, sock: socket.socket) -> None:
        assert self._answerer is not None
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            if data.strip():  # not a keep-alive
                for reply in self._answerer.replies(data, stream=False):
                    with contextlib.suppress(OSError):  # the client may have gone
                        sock.sendto(reply, peer)

    def _serve_tcp(self, listener: socket.socket, tls: bool) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._thread(self._connection, conn, tls)

    def _connection(self, conn: socket.socket, tls: bool) -> None:
        with contextlib.ExitStack() as stack:
            stack.callback(conn.close)
            if self.mode == "reset":  # SO_LINGER 0: close() sends RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.mode == "stall":
                self._wait(conn, forever=True)
                return
            if tls:
                assert self._tls is not None
                conn.settimeout(5)
                try:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):  # e.g. the client rejected our certificate
                    return
                stack.callback(conn.close)
            self._requests(conn)

    def _wait(self, conn: socket.socket, forever: bool) -> bytes | None:
        """The next bytes from ``conn`` (None: closed, or we are stopping)."""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = conn.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not data or not forever:
                return data or None
        return None

    def _requests(self, conn: socket.socket) -> None:
        assert self._answerer is not None
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                data = self._wait(conn, forever=False)
                if data is None:
                    return
                buffer += data
                continue
            length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", buffer[:end])
            size = end + 4 + (int(length.group(1)) if length else 0)
            if len(buffer) < size:
                data = self._wait(conn, forever=False)
                if data is None:
                    return
                buffer += data
                continue
            request, buffer = buffer[:size], buffer[size:]
            if not request.strip():
                continue
            self.received.append(request)
            for reply in self._answerer.replies(request, stream=True):
                if not self._send(conn, reply):
                    return
            if self.mode == "truncated":
                return

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            if self.mode != "slowloris":
                conn.sendall(data)
                return True
            for i in range(len(data)):
                if self._stop.wait(1.0):
                    return False
                conn.sendall(data[i : i + 1])
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()
