"""A tiny UDP STUN server in a thread (aioice's codec), scripted to misbehave the ways real paths
do: a generic ALG that rewrites MAPPED-ADDRESS (but cannot touch XOR-MAPPED-ADDRESS), lost
requests, stray datagrams, error responses, or silence (a black hole that sends no ICMP)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

from aioice import stun

from .process import free_port

Address = tuple[str, int]


@dataclass
class FakeStun:
    """``host:port`` over UDP only (nothing listens on the TCP port)."""

    host: str = "127.0.0.1"
    rewrite_mapped: Address | None = None  # MAPPED-ADDRESS as an ALG would rewrite it
    error: tuple[int, str] | None = None  # answer with this ERROR-CODE instead
    ignore_first: int = 0  # requests dropped before answering (lost on the way)
    silent: bool = False  # never answer
    junk_first: bool = False  # send garbage and a foreign transaction before the answer
    other_address: Address | None = None
    rfc3489: bool = False  # MAPPED-ADDRESS and CHANGED-ADDRESS only, as pre-RFC 5389 servers
    software: str = "fake-stun/1.0"
    port: int = 0
    received: list[stun.Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port([self.host], ("udp", "tcp"))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self.port))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-stun")
        self._thread.start()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            request = stun.parse_message(data)
            self.received.append(request)
            if self.silent or len(self.received) <= self.ignore_first:
                continue
            if self.junk_first:
                self._sock.sendto(b"not stun at all", client)
                self._sock.sendto(bytes(self._answer(stun.Message(request.message_method,
                                  stun.Class.REQUEST), client)), client)  # fmt: skip
            self._sock.sendto(bytes(self._answer(request, client)), client)

    def _answer(self, request: stun.Message, client: Address) -> stun.Message:
        if self.error is not None:
            attributes: dict[str, object] = {"ERROR-CODE": self.error}
            return stun.Message(
                stun.Method.BINDING, stun.Class.ERROR, request.transaction_id, attributes
            )
        attributes = {"MAPPED-ADDRESS": self.rewrite_mapped or client, "SOFTWARE": self.software}
        if not self.rfc3489:
            attributes["XOR-MAPPED-ADDRESS"] = client
        if self.other_address is not None:
            attributes["CHANGED-ADDRESS" if self.rfc3489 else "OTHER-ADDRESS"] = self.other_address
        return stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id, attributes
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def __enter__(self) -> FakeStun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
