"""A hostile SIP server for tests: answers every request the way a broken or hostile peer might.

One small threaded UDP server on a free loopback port; ``mode`` picks the behaviour:
- ``status-999`` / ``status-000``: a status code outside SIP's 100-699
- ``escapes``: 403 whose reason phrase, Warning and Server carry terminal escapes (OSC title,
  ESC[2J, C1 CSI), CR, NUL and a bidi override
- ``garbage``: bytes that are not SIP at all
- ``silence``: never answers
Requests are answered in the transaction's own Via, From, To, Call-ID and CSeq, so the client
takes the answer as its own.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from .process import free_port

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\r\x00\x9b31m\u202eevil"


def _echo(request: bytes) -> list[bytes]:
    keep = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")
    lines = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [line for line in lines if line.lower().startswith(keep)]


def answer(mode: str, request: bytes) -> bytes | None:
    if mode == "silence":
        return None
    if mode == "garbage":
        return b"\x00\xffHTTP/1.1 200 OK\r\n\r\n\x1b[2J garbage"
    head = _echo(request)
    if mode.startswith("status-"):
        status = f"SIP/2.0 {mode.split('-', 1)[1]} Whatever".encode()
        extra: list[bytes] = []
    elif mode == "escapes":
        status = f"SIP/2.0 403 Forbidden {ESCAPES}".encode()
        extra = [
            f'Warning: 399 pbx "{ESCAPES}"'.encode(),
            f"Server: {ESCAPES}".encode(),
        ]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return b"\r\n".join([status, *head, *extra, b"Content-Length: 0", b"", b""])


@dataclass
class HostileSip:
    mode: str
    host: str = "127.0.0.1"
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> HostileSip:
        self.port = free_port([self.host], ("udp",))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self.port))
        self._sock.settimeout(0.1)
        threading.Thread(target=self._serve, daemon=True, name="hostile-sip").start()
        return self

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            reply = answer(self.mode, data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
