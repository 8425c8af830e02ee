"""Debian's tinyproxy on loopback: an HTTP proxy that CONNECTs only to the ports it is told."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .process import Daemon, free_port, tcp_accepts

CONFIG = """\
User nobody
Group nogroup
Port {port}
Listen 127.0.0.1
Timeout 10
LogLevel Info
MaxClients 20
Allow 127.0.0.1
DisableViaHeader Yes
{connect_ports}
"""


@dataclass
class Tinyproxy:
    """Running tinyproxy at ``url``; CONNECT is allowed only to ``connect_ports`` (tinyproxy's
    ConnectPort rule: any other port gets ``403 Access violation``)."""

    port: int
    connect_ports: tuple[int, ...]
    daemon: Daemon

    @classmethod
    def start(
        cls, work_dir: Path, connect_ports: tuple[int, ...], timeout: float = 10.0
    ) -> Tinyproxy:
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port(["127.0.0.1"], ("tcp",))
        conf = work_dir / "tinyproxy.conf"
        conf.write_text(
            CONFIG.format(
                port=port,
                # An empty ConnectPort list would allow every port: 443 alone stands for "deny".
                connect_ports="\n".join(f"ConnectPort {p}" for p in (connect_ports or (443,))),
            )
        )
        daemon = Daemon("tinyproxy", ["tinyproxy", "-d", "-c", str(conf)], work_dir, cwd=work_dir)
        daemon.start(tcp_accepts("127.0.0.1", port), timeout)
        return cls(port, connect_ports, daemon)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def stop(self) -> int | None:
        return self.daemon.stop()
