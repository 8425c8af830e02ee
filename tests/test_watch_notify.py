"""The network change notifier (diag/watch_notify.py): a child process inside a network
namespace of the test's own opens it, the test changes links, addresses and routes there with
`ip`, and the child must report each change within a second, without spending CPU while it
waits. The psutil polling fallback is forced the same way. The netlink parser and the snapshot
comparison are pure and tested on bytes and dicts."""

from __future__ import annotations

import json
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.netns import delete_namespaces

from diag.watch_notify import (
    DEBOUNCE_S,
    POLL_INTERVAL_S,
    STOP_CHECK_S,
    PollNotifier,
    Snapshot,
    changes,
    differences,
    open_notifier,
)

REPO = Path(__file__).resolve().parent.parent
REPORTED_WITHIN_S = 1.0
IDLE_CPU_S = 0.05  # CPU a wait may use in a whole second of waiting (a busy loop uses ~1 s)

# Reads commands on stdin: "wait T" or "stop T S" (wait T s; another thread sets stop after S).
CHILD = """
import json, sys, threading, time
from diag.watch_notify import open_notifier
notifier = open_notifier(force_poll=sys.argv[1] == "poll", poll_interval=0.2)
print(json.dumps({"kind": notifier.kind}), flush=True)
for line in sys.stdin:
    command, *args = line.split()
    stop = threading.Event()
    if command == "stop":
        threading.Timer(float(args[1]), stop.set).start()
    cpu, started = time.process_time(), time.monotonic()
    seen = notifier.wait(float(args[0]), stop)
    print(json.dumps({"changes": seen, "waited": time.monotonic() - started,
                      "cpu": time.process_time() - cpu}), flush=True)
notifier.close()
"""


class Child:
    """The notifier's process inside ``netns``; its answers arrive on a queue."""

    def __init__(self, netns: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", CHILD, mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.kind = self.answer(10.0)["kind"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def answer(self, timeout: float) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.lines.get(timeout=timeout))
        return loaded

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def change(self, netns: str, *ip_args: str) -> tuple[list[str], float]:
        """Run `ip` in the namespace while the child waits: what it reported, and how long
        after the command started."""
        self.send("wait 10")
        time.sleep(0.1)  # the child is inside wait() (a change before it is queued anyway)
        started = time.monotonic()
        subprocess.run(["ip", "-n", netns, *ip_args], check=True, capture_output=True)
        got = self.answer(5.0)
        return got["changes"], time.monotonic() - started

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(5)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"sdn{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        delete_namespaces([name])  # kills the child too, should a test fail before close()


def test_netlink_reports_links_addresses_and_routes_within_a_second(netns: str) -> None:
    child = Child(netns, "netlink")
    assert child.kind == "netlink"
    child.send("wait 1")
    idle = child.answer(5.0)
    assert idle["changes"] is None and idle["waited"] >= 1.0
    assert idle["cpu"] < IDLE_CPU_S, idle  # blocked in select(), no busy loop

    seen, after = child.change(netns, "link", "add", "wa0", "type", "veth", "peer", "name", "wb0")
    assert {"newlink wa0", "newlink wb0"} <= set(seen) and after < REPORTED_WITHIN_S
    assert after >= DEBOUNCE_S  # the burst was drained before answering
    seen, after = child.change(netns, "addr", "add", "10.77.0.1/24", "dev", "wa0")
    assert "newaddr wa0" in seen and after < REPORTED_WITHIN_S
    subprocess.run(["ip", "-n", netns, "link", "set", "wb0", "up"], check=True)
    child.send("wait 1")  # drain what bringing the peer up said
    child.answer(5.0)
    seen, after = child.change(netns, "link", "set", "wa0", "up")
    # Up with an address: the link, and the prefix route the kernel adds for it.
    assert {"newlink wa0", "newroute wa0"} <= set(seen) and after < REPORTED_WITHIN_S
    seen, after = child.change(netns, "route", "add", "default", "via", "10.77.0.2")
    assert "newroute wa0" in seen and after < REPORTED_WITHIN_S
    seen, after = child.change(netns, "link", "set", "wa0", "down")
    assert {"newlink wa0", "delroute wa0"} <= set(seen) and after < REPORTED_WITHIN_S
    seen, after = child.change(netns, "link", "del", "wa0")
    assert {"dellink wa0", "dellink wb0"} <= set(seen) and after < REPORTED_WITHIN_S
    child.close()


def test_a_set_stop_event_ends_the_wait_without_a_change(netns: str) -> None:
    for mode in ("netlink", "poll"):
        child = Child(netns, mode)
        child.send("stop 30 0.3")
        stopped = child.answer(5.0)
        assert stopped["changes"] is None, (mode, stopped)
        # Not the 30 s asked for: the stop is seen within STOP_CHECK_S (netlink) or at once
        # (poll), plus scheduling on a busy machine.
        assert 0.3 <= stopped["waited"] < 0.3 + STOP_CHECK_S + 0.5, (mode, stopped)
        child.close()


def test_the_poll_fallback_reports_links_and_addresses(netns: str) -> None:
    child = Child(netns, "poll")
    assert child.kind == "poll"
    child.send("wait 1")
    idle = child.answer(5.0)
    assert idle["changes"] is None and idle["cpu"] < IDLE_CPU_S * 2, idle  # 5 looks at psutil
    seen, after = child.change(netns, "link", "add", "wa0", "type", "veth", "peer", "name", "wb0")
    assert seen == ["newlink wa0", "newlink wb0"] and after < REPORTED_WITHIN_S
    seen, after = child.change(netns, "addr", "add", "10.77.0.1/24", "dev", "wa0")
    assert seen == ["newaddr wa0"] and after < REPORTED_WITHIN_S
    seen, after = child.change(netns, "link", "del", "wa0")
    assert seen == ["dellink wa0", "dellink wb0"] and after < REPORTED_WITHIN_S
    child.close()


def test_linux_gets_netlink_and_the_fallback_polls_every_two_seconds() -> None:
    with open_notifier() as notifier:
        assert notifier.kind == "netlink" and notifier.fileno() >= 0
    with open_notifier(force_poll=True) as fallback:
        assert isinstance(fallback, PollNotifier)
        assert fallback.kind == "poll" and fallback.fileno() == -1
        assert fallback.interval == POLL_INTERVAL_S == 2.0


# ---- pure


def message(kind: int, body: bytes) -> bytes:
    length = 16 + len(body)
    padded = body + b"\0" * ((-length) % 4)
    return struct.pack("=IHHII", length, kind, 0, 0, 0) + padded


def attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((-length) % 4)


def test_netlink_messages_parse_to_kinds_and_interfaces() -> None:
    names = {2: "eth0", 7: "wlan0"}.get
    link = message(16, struct.pack("=BxHiII", 0, 1, 2, 0, 0) + attribute(3, b"eth0\0"))
    gone = message(17, struct.pack("=BxHiII", 0, 1, 99, 0, 0))  # no name, index unknown
    addr = message(20, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 7))
    route = message(24, bytes(12) + attribute(1, bytes(4)) + attribute(4, struct.pack("=i", 2)))
    other = message(3, b"")  # NLMSG_DONE: not a change
    data = link + gone + addr + route + other + link
    assert changes(data, names) == ["newlink eth0", "dellink", "newaddr wlan0", "newroute eth0"]
    assert changes(data + message(21, bytes(8))[:-3], names)[-1] == "newroute eth0"  # truncated
    assert changes(b"", names) == []


def test_two_looks_at_the_interfaces_differ_as_netlink_would_say() -> None:
    before = {"eth0": (True, frozenset({"10.0.0.5"})), "wlan0": (False, frozenset())}
    after = {"eth0": (False, frozenset({"10.0.0.9"})), "tun0": (True, frozenset({"10.8.0.1"}))}
    assert differences(before, after) == [
        "newlink tun0", "dellink wlan0", "newlink eth0", "newaddr eth0", "deladdr eth0",
    ]  # fmt: skip
    assert differences(before, dict(before)) == []


def test_the_poll_fallback_looks_every_interval_even_when_waited_on_in_short_steps() -> None:
    up, down = {"eth0": (True, frozenset[str]())}, {"eth0": (False, frozenset[str]())}
    looks: Iterator[Snapshot] = iter([up, up])
    fallback = PollNotifier(interval=0.1, look=lambda: next(looks, down))
    started = time.monotonic()
    steps = [fallback.wait(0.03, threading.Event()) for _ in range(12)]  # as the watch loop
    assert [s for s in steps if s] == [["newlink eth0"]]  # once, at the second look
    assert time.monotonic() - started < 0.5
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert fallback.wait(5.0, stop) is None and time.monotonic() - started < 0.1
