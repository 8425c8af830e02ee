"""coturn as a STUN-only server on 127.0.0.1 + 127.0.0.2 (so CHANGE-REQUEST has somewhere to go)."""

from __future__ import annotations

import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from .process import Daemon, ReadyCheck, all_of, free_port

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
MAPPED_ADDRESS = 0x0001
XOR_MAPPED_ADDRESS = 0x0020
HEADER = struct.Struct("!HHI12s")


def binding_request_message(transaction_id: bytes) -> bytes:
    """A 20-byte Binding Request with no attributes."""
    return HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction_id)


def parse_binding_success(data: bytes, transaction_id: bytes) -> tuple[str, int]:
    """The (XOR-)MAPPED-ADDRESS of a Binding Success answering ``transaction_id``."""
    if len(data) < HEADER.size:
        raise ValueError(f"STUN message too short: {len(data)} bytes")
    kind, length, cookie, tid = HEADER.unpack_from(data)
    if kind != BINDING_SUCCESS or cookie != MAGIC_COOKIE or tid != transaction_id:
        raise ValueError(f"not our Binding Success: type {kind:#06x}, transaction {tid.hex()}")
    mapped: tuple[str, int] | None = None
    offset, end = HEADER.size, min(len(data), HEADER.size + length)
    while offset + 4 <= end:
        attr, size = struct.unpack_from("!HH", data, offset)
        value = data[offset + 4 : offset + 4 + size]
        offset += 4 + (size + 3) // 4 * 4  # attributes are padded to 4 bytes
        if attr not in (XOR_MAPPED_ADDRESS, MAPPED_ADDRESS) or len(value) < 8 or value[1] != 1:
            continue  # IPv4 only
        port, address = struct.unpack_from("!HI", value, 2)
        if attr == XOR_MAPPED_ADDRESS:
            return socket.inet_ntoa(struct.pack("!I", address ^ MAGIC_COOKIE)), port ^ (
                MAGIC_COOKIE >> 16
            )
        mapped = socket.inet_ntoa(struct.pack("!I", address)), port
    if mapped is None:
        raise ValueError("Binding Success without a (XOR-)MAPPED-ADDRESS")
    return mapped


def binding_request(host: str, port: int, timeout: float = 1.0) -> tuple[str, int]:
    """Send one Binding Request over UDP; return the address the server saw us as."""
    transaction_id = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(binding_request_message(transaction_id))
        return parse_binding_success(sock.recv(2048), transaction_id)


@dataclass
class Stun:
    """Primary ``host:port``; RFC 5780 alternates ``alt_host`` and ``port + 1``."""

    host: str
    alt_host: str
    port: int
    daemon: Daemon

    @classmethod
    def start(
        cls,
        work_dir: Path,
        host: str = "127.0.0.1",
        alt_host: str = "127.0.0.2",
        timeout: float = 10.0,
    ) -> Stun:
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port([host, alt_host], ("udp", "tcp"), span=2)
        argv = [
            "turnserver", "-n", f"--listening-ip={host}", f"--listening-ip={alt_host}",
            f"--listening-port={port}", f"--alt-listening-port={port + 1}",
            "--stun-only", "--no-cli", "--no-tls", "--no-dtls",
            "--log-file=stdout", "--simple-log", "--no-software-attribute",
            f"--pidfile={work_dir / 'turnserver.pid'}", f"--db={work_dir / 'turndb'}",
        ]  # fmt: skip
        daemon = Daemon("turnserver", argv, work_dir, cwd=work_dir)
        daemon.start(all_of(*(_binding_check(h, port) for h in (host, alt_host))), timeout)
        return cls(host, alt_host, port, daemon)

    @property
    def alt_port(self) -> int:
        return self.port + 1

    @property
    def server(self) -> str:
        """``host:port``, as pjsua2's ``uaConfig.stunServer`` wants it."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def binding_request(
        self, host: str | None = None, port: int | None = None, timeout: float = 1.0
    ) -> tuple[str, int]:
        """XOR-MAPPED-ADDRESS (ip, port) from this server (primary address by default)."""
        return binding_request(host or self.host, port or self.port, timeout)

    def stop(self) -> int | None:
        return self.daemon.stop()


def _binding_check(host: str, port: int) -> ReadyCheck:
    def check() -> bool:
        try:
            binding_request(host, port, timeout=0.3)
        except (OSError, ValueError):  # timeouts included
            return False
        return True

    return check
