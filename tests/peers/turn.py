"""coturn as a TURN server with a long-term credential, on loopback or in a netns.

It answers STUN Binding requests too, so it also stands in for a STUN server inside a namespace.
tests/README.md §coturn has the flags and what coturn 4.6.1 does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .process import Daemon, all_of, free_port, tcp_accepts, udp_answers
from .stun import binding_request_message, parse_binding_success

USER = "turnuser"
PASSWORD = "turnpass"
REALM = "turn.test"
RELAY_PORTS = 40  # relayed addresses come from this many ports


@dataclass
class Turn:
    """TURN on ``host:port`` (UDP and TCP), relaying from ``host:relay_ports``."""

    host: str
    port: int
    relay_ports: tuple[int, int]
    user: str
    password: str
    realm: str
    daemon: Daemon

    @classmethod
    def start(
        cls,
        work_dir: Path,
        host: str = "127.0.0.1",
        netns: str | None = None,
        user: str = USER,
        password: str = PASSWORD,
        realm: str = REALM,
        timeout: float = 10.0,
    ) -> Turn:
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port([host], ("udp", "tcp"), netns=netns)
        low = free_port([host], ("udp",), span=RELAY_PORTS, netns=netns)
        high = low + RELAY_PORTS - 1
        argv = [
            "turnserver", "-n", f"--listening-ip={host}", f"--listening-port={port}",
            f"--relay-ip={host}", f"--min-port={low}", f"--max-port={high}",
            "--lt-cred-mech", f"--user={user}:{password}", f"--realm={realm}",
            "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--simple-log",
            "--no-software-attribute", "--allow-loopback-peers",
            f"--pidfile={work_dir / 'turnserver.pid'}", f"--db={work_dir / 'turndb'}",
        ]  # fmt: skip
        daemon = Daemon("turnserver", argv, work_dir, netns=netns, cwd=work_dir)
        tid = b"sipdiag-turn"  # 12 bytes: the readiness probe's transaction id

        def answered(data: bytes) -> bool:
            try:
                parse_binding_success(data, tid)
            except ValueError:
                return False
            return True

        stun_ready = udp_answers(
            host, port, lambda _: binding_request_message(tid), answered, netns
        )
        daemon.start(all_of(stun_ready, tcp_accepts(host, port, netns)), timeout)
        return cls(host, port, (low, high), user, password, realm, daemon)

    @property
    def server(self) -> str:
        """``host:port`` as --turn and --stun take it."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def stop(self) -> int | None:
        return self.daemon.stop()
