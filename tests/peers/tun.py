"""A real tun device held open by a process inside a namespace, as a VPN client does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

HOLDER = """
import fcntl, struct, sys, time
fd = open("/dev/net/tun", "r+b", buffering=0)
# TUNSETIFF with IFF_TUN | IFF_NO_PI
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x0001 | 0x1000))
print("ready", flush=True)
time.sleep(120)
"""


@contextmanager
def held_tun(netns: str, name: str, address: str, peer: str) -> Iterator[None]:
    """`name` exists, has `address` with point-to-point `peer`, and is up (a tun without a
    process attached has no carrier)."""
    holder = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", HOLDER, name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        subprocess.run(
            ["ip", "-n", netns, "addr", "add", address, "peer", peer, "dev", name], check=True
        )
        subprocess.run(["ip", "-n", netns, "link", "set", name, "up"], check=True)
        yield
    finally:
        holder.kill()
        holder.wait()
