"""A UDP relay that delays (and optionally drops) datagrams each way: tc netem is not available
in this kernel (tests/README.md §Delay), so delay is added in user space.

Run as a script: ``python delay_relay.py LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT
--delay-ms 100 [--loss 0.1] [--duration 600]``, or start it with ``DelayRelay.start``. Each
client gets its own upstream socket, so answers find their way back to the right client.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__:  # imported as peers.delay_relay (the script itself needs only the stdlib)
    from .process import Daemon, free_port, udp_answers
    from .stun import binding_request_message, parse_binding_success

SCRIPT = Path(__file__).resolve()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay, client: tuple[str, int]) -> None:
        self.relay, self.client = relay, client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.relay.down is not None:
            self.relay.forward(self.relay.down, data, self.client)


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.down: asyncio.DatagramTransport | None = None
        self.ups: dict[tuple[str, int], asyncio.Future[asyncio.DatagramTransport]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.down = transport  # type: ignore[assignment]

    def forward(
        self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int] | None
    ) -> None:
        if random.random() >= self.args.loss:
            self.loop.call_later(self.args.delay_ms / 1000, transport.sendto, data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.ups.get(addr)
        if up is None:
            self.ups[addr] = up = asyncio.ensure_future(self._open(addr))
        up.add_done_callback(lambda done: self.forward(done.result(), data, None))

    async def _open(self, client: tuple[str, int]) -> asyncio.DatagramTransport:
        target = (self.args.target_ip, self.args.target_port)
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=target
        )
        return transport


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(
        lambda: _Relay(args), local_addr=(args.listen_ip, args.listen_port)
    )
    await asyncio.sleep(args.duration)  # a safety net: the test stops it long before


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("listen_ip")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_ip")
    ap.add_argument("target_port", type=int)
    ap.add_argument("--delay-ms", type=float, default=100.0, help="added each way")
    ap.add_argument("--loss", type=float, default=0.0, help="drop probability each way, 0-1")
    ap.add_argument("--duration", type=float, default=600.0, help="exit after this many seconds")
    asyncio.run(_serve(ap.parse_args(argv)))


@dataclass
class DelayRelay:
    """``host:port`` forwards to ``target`` with ``delay_ms`` added each way."""

    host: str
    port: int
    target: tuple[str, int]
    delay_ms: float
    daemon: Daemon

    @classmethod
    def start(
        cls,
        work_dir: Path,
        target: tuple[str, int],
        delay_ms: float = 100.0,
        host: str = "127.0.0.1",
        netns: str | None = None,
        timeout: float = 10.0,
    ) -> DelayRelay:
        """Relay to the STUN server at ``target``; ready once a Binding through it is answered."""
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port([host], ("udp",), netns=netns)
        argv = [sys.executable, str(SCRIPT), host, str(port), target[0], str(target[1]),
                "--delay-ms", str(delay_ms)]  # fmt: skip
        daemon = Daemon("delay-relay", argv, work_dir, netns=netns)
        tid = b"sipdiag-dly0"  # 12 bytes: the readiness probe's transaction id

        def answered(data: bytes) -> bool:
            try:
                parse_binding_success(data, tid)
            except ValueError:
                return False
            return True

        wait = 2 * delay_ms / 1000 + 0.5
        request = binding_request_message(tid)
        daemon.start(udp_answers(host, port, lambda _: request, answered, netns, wait), timeout)
        return cls(host, port, target, delay_ms, daemon)

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def stop(self) -> int | None:
        return self.daemon.stop()


if __name__ == "__main__":
    main()
