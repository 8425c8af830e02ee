"""Cheap notice that the network changed (issue 18), so a watch samples at once instead of at
its next interval.

On Linux a NETLINK_ROUTE socket subscribed to link, address and route changes (stdlib socket):
the kernel tells us, and waiting costs nothing but a blocked select(). Only the message type and
the interface are read, for the evidence ("newaddr eth0"). Elsewhere, or where netlink cannot be
opened, psutil's interface list is polled every POLL_INTERVAL_S and compared.

Both notifiers have one API: ``wait(timeout, stop)`` returns the changes seen (a burst drained
for DEBOUNCE_S of quiet) or None on timeout or when ``stop`` is set; ``fileno()``; ``close()``;
``kind`` ("netlink" or "poll").
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

DEBOUNCE_S = 0.3  # a change comes in bursts (link up: link, addresses, routes): wait for quiet
BURST_MAX_S = 1.0  # ... but a flapping link must not hold the caller longer than this
STOP_CHECK_S = 0.25  # select() wakes this often to see the caller's stop event
POLL_INTERVAL_S = 2.0  # the fallback's look at the interface list

# <linux/rtnetlink.h>
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
MESSAGE_KINDS = {
    16: "newlink",  # RTM_NEWLINK: also a link going up or down
    17: "dellink",
    20: "newaddr",
    21: "deladdr",
    24: "newroute",
    25: "delroute",
}
OVERRUN = "overrun"  # the kernel dropped messages (ENOBUFS): something changed, we lost what
IFLA_IFNAME = 3
RTA_OIF = 4
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG_SIZE = 12
_RTATTR = struct.Struct("=HH")  # length, type


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attribute(data: bytes, start: int, end: int, wanted: int) -> bytes | None:
    """The payload of the first rtattr of type ``wanted`` in data[start:end]."""
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size or start + length > end:
            return None
        if kind == wanted:
            return data[start + _RTATTR.size : start + length]
        start += _align(length)
    return None


def _index_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:  # already gone
        return None


def changes(data: bytes, index_name: Callable[[int], str | None] = _index_name) -> list[str]:
    """Netlink route messages in ``data`` -> "newaddr eth0", "newroute", … (each once, in
    order). Only the header's type is needed; the interface is read where it is cheap: a
    link's name attribute, an address's index, a route's output interface."""
    found: list[str] = []
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, at)
        if length < _NLMSGHDR.size or at + length > len(data):
            break  # truncated: what came before still counts
        body, end = at + _NLMSGHDR.size, at + length
        name: str | None = None
        word = MESSAGE_KINDS.get(kind)
        if word in ("newlink", "dellink") and end - body >= _IFINFOMSG.size:
            raw = _attribute(data, body + _IFINFOMSG.size, end, IFLA_IFNAME)
            if raw is not None:
                name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            else:
                name = index_name(_IFINFOMSG.unpack_from(data, body)[2])
        elif word in ("newaddr", "deladdr") and end - body >= _IFADDRMSG.size:
            name = index_name(_IFADDRMSG.unpack_from(data, body)[4])
        elif word in ("newroute", "delroute") and end - body >= _RTMSG_SIZE:
            oif = _attribute(data, body + _RTMSG_SIZE, end, RTA_OIF)
            if oif is not None and len(oif) >= 4:
                name = index_name(struct.unpack_from("=i", oif)[0])
        if word is not None:
            text = f"{word} {name}" if name else word
            if text not in found:
                found.append(text)
        at += _align(length)
    return found


class NetworkNotifier:
    """Tells that the network changed. ``kind``: how ("netlink" or "poll")."""

    kind = "none"

    def fileno(self) -> int:
        """A descriptor that becomes readable on a change, or -1 (the poll fallback)."""
        return -1

    def wait(self, timeout: float, stop: threading.Event) -> list[str] | None:
        """Block up to ``timeout`` s for a change; the changes of the burst, or None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the descriptor; wait() must not be called after."""

    def __enter__(self) -> NetworkNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NetlinkNotifier(NetworkNotifier):
    kind = "netlink"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            self.sock.bind((0, GROUPS))
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.clock = clock

    def fileno(self) -> int:
        return self.sock.fileno()

    def _drain(self, found: list[str]) -> bool:
        """Read every queued message into ``found``; whether there was any."""
        got = False
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return got
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                data = b""  # the queue overflowed: changes were lost, but there were some
                if OVERRUN not in found:
                    found.append(OVERRUN)
            got = True
            found.extend(c for c in changes(data) if c not in found)

    def _readable(self, until: float, stop: threading.Event) -> bool:
        while not stop.is_set():
            left = until - self.clock()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], min(left, STOP_CHECK_S))
            if ready:
                return True
        return False

    def wait(self, timeout: float, stop: threading.Event) -> list[str] | None:
        found: list[str] = []
        if not self._readable(self.clock() + timeout, stop) or not self._drain(found):
            return None
        burst_end = self.clock() + BURST_MAX_S
        while self._readable(min(burst_end, self.clock() + DEBOUNCE_S), stop):
            self._drain(found)
        return found

    def close(self) -> None:
        self.sock.close()


Snapshot = dict[str, tuple[bool, frozenset[str]]]  # interface -> (up, addresses)


def snapshot() -> Snapshot:
    import psutil

    stats = psutil.net_if_stats()
    return {
        name: (
            bool(stats[name].isup) if name in stats else False,
            frozenset(
                a.address.split("%", 1)[0]
                for a in addrs
                if a.family in (socket.AF_INET, socket.AF_INET6)
            ),
        )
        for name, addrs in psutil.net_if_addrs().items()
    }


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What a netlink socket would have said, from two looks at the interfaces (no routes)."""
    found = [f"newlink {n}" for n in sorted(set(after) - set(before))]
    found += [f"dellink {n}" for n in sorted(set(before) - set(after))]
    for name in sorted(set(before) & set(after)):
        (up_a, addrs_a), (up_b, addrs_b) = before[name], after[name]
        if up_a != up_b:
            found.append(f"newlink {name}")
        if addrs_b - addrs_a:
            found.append(f"newaddr {name}")
        if addrs_a - addrs_b:
            found.append(f"deladdr {name}")
    return found


class PollNotifier(NetworkNotifier):
    """The fallback: compare psutil's interface list every ``interval`` s."""

    kind = "poll"

    def __init__(
        self,
        interval: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        look: Callable[[], Snapshot] = snapshot,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.look = look
        self.last = look()
        # Kept across calls: a caller that waits in short steps still gets a look per interval.
        self.next_look = clock() + interval

    def wait(self, timeout: float, stop: threading.Event) -> list[str] | None:
        until = self.clock() + timeout
        while True:
            now = self.clock()
            if now >= self.next_look:
                self.next_look = now + self.interval
                current = self.look()
                found = differences(self.last, current)
                self.last = current
                if found:
                    return found
                continue
            left = min(until, self.next_look) - now
            if until <= now or stop.wait(left):  # blocks; stop wakes it at once
                return None


def open_notifier(
    *, force_poll: bool = False, poll_interval: float = POLL_INTERVAL_S
) -> NetworkNotifier:
    """A netlink notifier on Linux, else (or with ``force_poll``) the polling fallback."""
    if not force_poll and hasattr(socket, "AF_NETLINK"):
        try:
            return NetlinkNotifier()
        except OSError:  # a sandbox without netlink: poll instead
            pass
    return PollNotifier(poll_interval)
