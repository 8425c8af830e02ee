"""Just enough raw SIP to probe the peers: build a request, send it, read the final answer.

Standard library only, so a snippet run with ``ip netns exec`` can import it too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .process import socket_in_netns


def request(
    method: str,
    uri: str,
    local: tuple[str, int],
    transport: str = "UDP",
    *,
    user: str = "probe",
    domain: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    extra_headers: Sequence[str] = (),
) -> bytes:
    """A minimal request; From/To are ``sip:user@domain`` (the R-URI's host by default)."""
    host, port = local
    token = secrets.token_hex(4)
    dom = domain or _uri_host(uri)
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {host}:{port};branch=z9hG4bK{token};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{dom}>;tag={token}",
        f"To: <sip:{user}@{dom}>",
        f"Call-ID: {call_id or token}@{host}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}@{host}:{port};transport={transport.lower()}>",
        *extra_headers,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _uri_host(uri: str) -> str:
    """``sip:[user@]host[:port][;params]`` -> host."""
    return uri.split(":", 1)[1].split(";", 1)[0].rpartition("@")[2].split(":", 1)[0]


def status_line(message: str) -> str:
    return message.split("\r\n", 1)[0]


def status_code(message: str) -> int:
    return int(status_line(message).split(" ", 2)[1])


def header_values(message: str, name: str) -> list[str]:
    """Values of every ``name`` header (case-insensitive) in the message head."""
    head = message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    wanted = name.lower()
    return [
        v.strip() for n, _, v in (h.partition(":") for h in head) if n.strip().lower() == wanted
    ]


@dataclass
class SipClient:
    """One UDP or TCP socket to a SIP peer (optionally from inside a network namespace)."""

    host: str
    port: int
    transport: str = "udp"
    netns: str | None = None
    timeout: float = 2.0
    sock: socket.socket = field(init=False)
    _buffer: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        self.sock = socket_in_netns(self.netns, socket.AF_INET, kind)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect((self.host, self.port))
        except OSError:
            self.sock.close()
            raise

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};transport={self.transport}"

    def send(self, data: bytes) -> str:
        """Send a request; return its final (>= 200) response. ``TimeoutError`` if none comes."""
        self.sock.sendall(data)
        while True:
            answer = self._receive()
            if status_code(answer) >= 200:
                return answer

    def _receive(self) -> str:
        if self.transport != "tcp":
            return self.sock.recv(65535).decode(errors="replace")
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
        size = int(length.group(1)) if length else 0
        while len(rest) < size:
            self._fill()
            head, _, rest = self._buffer.partition(b"\r\n\r\n")
        self._buffer = rest[size:]
        return (head + b"\r\n\r\n" + rest[:size]).decode(errors="replace")

    def _fill(self) -> None:
        chunk = self.sock.recv(65535)
        if not chunk:
            raise ConnectionError("peer closed the TCP connection")
        self._buffer += chunk

    def options(self) -> str:
        """A keep-alive OPTIONS with no user part in the R-URI."""
        return self.send(request("OPTIONS", self.uri, self.local, self.transport))

    def register(
        self, user: str, password: str | None = None, expires: int = 60, domain: str | None = None
    ) -> str:
        """REGISTER ``user``; answer one 401/407 digest challenge if a password is given."""
        call_id = secrets.token_hex(6)
        extra = [f"Expires: {expires}"]
        answer = self.send(
            request(
                "REGISTER",
                self.uri,
                self.local,
                self.transport,
                user=user,
                domain=domain,
                call_id=call_id,
                extra_headers=extra,
            )
        )
        code = status_code(answer)
        if password is None or code not in (401, 407):
            return answer
        challenge_name = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
        reply_name = "Authorization" if code == 401 else "Proxy-Authorization"
        credentials = digest_response(
            header_values(answer, challenge_name)[0], "REGISTER", self.uri, user, password
        )
        return self.send(
            request(
                "REGISTER",
                self.uri,
                self.local,
                self.transport,
                user=user,
                domain=domain,
                call_id=call_id,
                cseq=2,
                extra_headers=[*extra, f"{reply_name}: {credentials}"],
            )
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def digest_response(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The credentials (after ``Authorization:``) answering an MD5 digest challenge."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(4), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return f'Digest {fields}, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}"'
    return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
