"""A UDP relay that behaves like a consumer router's SIP ALG, for the net.sip-alg tests.

It stands where the router would: clients send to ``listen_ip:port``; each client gets its own
upstream socket on ``public_ip`` (the router's outside address and NAT mapping), connected to the
registrar. Like a router's "SIP helper", it rewrites the client's own address:port in the Via and
Contact lines of every request to that mapping, and its address in the SDP o=/c= lines, so the
registrar sees and stores the public address. On the way back it can restore the Via and/or the
Contact (many ALGs restore the Via, so the phone accepts the response; fewer restore the Contacts
a 200 OK lists) or leave them.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .process import socket_in_netns

VIA, CONTACT = ("via", "v"), ("contact", "m")  # header names, long and compact (RFC 3261 7.3.3)
SELECT_TICK_S = 0.05  # how often the relay thread looks at its stop flag


def alg_rewrite(
    message: bytes, old: tuple[str, int], new: tuple[str, int], headers: Iterable[str]
) -> bytes:
    """``old`` host:port replaced by ``new`` in the named header lines of ``message``'s head.

    The body is untouched, so Content-Length stays right.
    """
    names = {h.lower() for h in headers}
    head, sep, body = message.partition(b"\r\n\r\n")
    before, after = f"{old[0]}:{old[1]}".encode(), f"{new[0]}:{new[1]}".encode()
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines[1:], start=1):
        name, colon, _ = line.partition(b":")
        if colon and name.strip().decode(errors="replace").lower() in names:
            lines[i] = line.replace(before, after)
    return b"\r\n".join(lines) + sep + body


def alg_rewrite_sdp(message: bytes, old_ip: str, new_ip: str) -> bytes:
    """``old_ip`` replaced by ``new_ip`` in the SDP o=/c= lines of ``message``'s body, with the
    Content-Length corrected, as a router's SIP helper does for the media address."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep or not body:
        return message
    lines = body.split(b"\r\n")
    for i, line in enumerate(lines):
        if line[:2] in (b"o=", b"c="):
            lines[i] = line.replace(old_ip.encode(), new_ip.encode())
    new_body = b"\r\n".join(lines)
    heads = head.split(b"\r\n")
    for i, line in enumerate(heads):
        name, colon, _ = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            heads[i] = name + b": " + str(len(new_body)).encode()
    return b"\r\n".join(heads) + sep + new_body


@dataclass
class AlgRelay:
    """Start with ``AlgRelay(...).start()``; ``port`` is where clients send; stop() ends it."""

    listen_ip: str
    upstream: tuple[str, int]
    public_ip: str
    netns: str | None = None
    rewrite: bool = True  # False: a plain NAT, no ALG
    rewrite_headers: bool = True  # with rewrite: the Via/Contact lines
    rewrite_sdp: bool = True  # with rewrite: the SDP o=/c= addresses
    restore_via: bool = False
    restore_contact: bool = False
    port: int = 0
    rewritten: int = 0  # requests whose Via, Contact or SDP the ALG changed
    _listen: socket.socket | None = field(default=None, repr=False)
    _clients: dict[tuple[str, int], socket.socket] = field(default_factory=dict, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def start(self) -> AlgRelay:
        self._listen = socket_in_netns(self.netns)
        self._listen.bind((self.listen_ip, self.port))
        self.port = int(self._listen.getsockname()[1])
        self._selector.register(self._listen, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="alg-relay", daemon=True)
        self._thread.start()
        return self

    def _upstream_for(self, client: tuple[str, int]) -> socket.socket:
        sock = self._clients.get(client)
        if sock is None:
            sock = socket_in_netns(self.netns)
            sock.bind((self.public_ip, 0))
            sock.connect(self.upstream)
            self._clients[client] = sock
            self._selector.register(sock, selectors.EVENT_READ, (sock, client))
        return sock

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(SELECT_TICK_S):
                try:
                    if key.data is None:
                        self._from_client()
                    else:
                        self._from_registrar(*key.data)
                except OSError:
                    continue  # an ICMP error on one path must not stop the relay

    def _from_client(self) -> None:
        """Rewrite the client's address in a request's Via/Contact, send it upstream."""
        assert self._listen is not None
        data, client = self._listen.recvfrom(65535)
        up = self._upstream_for(client)
        if self.rewrite and not data.startswith(b"SIP/2.0 "):
            changed = data
            if self.rewrite_headers:
                changed = alg_rewrite(changed, client, up.getsockname()[:2], (*VIA, *CONTACT))
            if self.rewrite_sdp:
                changed = alg_rewrite_sdp(changed, client[0], up.getsockname()[0])
            self.rewritten += changed != data
            data = changed
        up.send(data)

    def _from_registrar(self, up: socket.socket, client: tuple[str, int]) -> None:
        """Restore what this ALG restores, send the answer back to the client."""
        assert self._listen is not None
        data = up.recv(65535)
        restore = (*(VIA if self.restore_via else ()), *(CONTACT if self.restore_contact else ()))
        if restore:
            data = alg_rewrite(data, up.getsockname()[:2], client, restore)
        self._listen.sendto(data, client)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._selector.close()
        for sock in [*self._clients.values(), *([self._listen] if self._listen else [])]:
            sock.close()

    def __enter__(self) -> AlgRelay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
