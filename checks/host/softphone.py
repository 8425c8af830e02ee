"""host.softphone: is the softphone process running, and who holds the SIP/RTP ports it needs?"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from diag.config import parse_port_range
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped, warned

DEFAULT_PORTS = ("5060", "5061")  # SIP over UDP/TCP and TLS: what softphones bind by default
LINUX_COMM_LEN = 15  # /proc/PID/comm, where psutil's name() comes from, is cut to 15 bytes


def _norm(name: str) -> str:
    name = os.path.basename(name.replace("\\", "/")).lower()
    return name.removesuffix(".exe").removesuffix(".app")


def matches(wanted: Sequence[str], name: str | None, exe: str | None) -> bool:
    """A configured softphone name matches the process name or its executable's file name,
    case-insensitively and without .exe (Linux process names are cut to 15 characters)."""
    seen = {_norm(n) for n in (name, exe) if n}
    for w in wanted:
        target = _norm(w)
        if target in seen or (name and len(name) == LINUX_COMM_LEN and target[:15] == name.lower()):
            return True
    return False


def port_ranges(extra: Iterable[str]) -> list[tuple[int, int]]:
    ranges = [parse_port_range(p) for p in (*DEFAULT_PORTS, *extra)]
    return list(dict.fromkeys(r for r in ranges if r is not None))


def _in_ranges(port: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(low <= port <= high for low, high in ranges)


def find_processes(wanted: Sequence[str]) -> list[dict[str, Any]]:
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "name", "exe", "username"]):
        info = p.info
        if matches(wanted, info.get("name"), info.get("exe")):
            found.append({k: info.get(k) for k in ("pid", "name", "exe", "username")})
    return found


def _inet_sockets() -> tuple[list[tuple[Any, int, str, int | None]], bool]:
    """(laddr, type, status, pid) of every inet socket, and whether the list is complete.
    macOS refuses the system-wide list to non-admins: then each process we may inspect is
    asked instead."""
    import psutil

    try:
        return [
            (c.laddr, c.type, c.status, c.pid) for c in psutil.net_connections(kind="inet")
        ], True
    except psutil.AccessDenied:
        pass
    sockets: list[tuple[Any, int, str, int | None]] = []
    for proc in psutil.process_iter(["pid"]):
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        sockets.extend((c.laddr, c.type, c.status, proc.pid) for c in conns)
    return sockets, False


def port_holders(ranges: Sequence[tuple[int, int]]) -> tuple[list[dict[str, Any]], bool]:
    """Local sockets bound to the ports: UDP sockets and listening TCP sockets, with the owning
    process (pid None when the OS hides other users' processes without admin rights); and
    whether every process could be inspected."""
    import psutil

    sockets, complete = _inet_sockets()
    holders = []
    for laddr, kind, status, pid in sockets:
        if not laddr or not _in_ranges(laddr.port, ranges):
            continue
        udp = kind == socket.SOCK_DGRAM
        if not udp and status != psutil.CONN_LISTEN:
            continue  # an outgoing TCP connection from that port holds nothing
        name = None
        if pid:
            try:
                name = psutil.Process(pid).name()
            except psutil.Error:
                pass
        holders.append(
            {
                "protocol": "udp" if udp else "tcp",
                "address": laddr.ip,
                "port": laddr.port,
                "pid": pid,
                "process": name,
            }
        )
    holders.sort(key=lambda h: (h["port"], h["protocol"], h["address"]))
    return holders, complete


def _holder_text(h: dict[str, Any]) -> str:
    who = f"{h['process']} (pid {h['pid']})" if h["pid"] else "an unidentified process"
    return f"{h['protocol'].upper()} {h['port']} is held by {who}"


def check_softphone(ctx: Context) -> CheckResult:
    wanted = ctx.settings.softphone_processes
    ranges = port_ranges(ctx.settings.softphone_ports)
    holders, complete = port_holders(ranges)
    ports = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    details: dict[str, Any] = {
        "softphone_processes": list(wanted),
        "ports": ports,
        "port_holders": holders,
        # False: only this user's processes could be inspected (macOS without admin rights).
        "port_scan_complete": complete,
    }
    held = (
        "; ".join(_holder_text(h) for h in holders) or f"no local process holds {', '.join(ports)}"
    )
    if not wanted:
        return skipped(
            f"no softphone process configured; {held}",
            "pass --softphone-process NAME (or softphone_processes in the profile)",
            **details,
            running=[],
        )
    running = find_processes(wanted)
    for h in holders:
        h["is_softphone"] = matches(wanted, h["process"], None)
    others = [h for h in holders if h["pid"] and not h["is_softphone"]]
    details.update(running=running, conflicts=others)
    names = " or ".join(f"'{w}'" for w in wanted)
    if not running:
        conflict = f"; {'; '.join(_holder_text(h) for h in others)}" if others else ""
        return failed(
            f"no process named {names} is running{conflict}",
            f"start the softphone ({names}) and log in to the agent console"
            + (", after closing the other program that holds its port" if others else ""),
            problem="not_running",
            **details,
        )
    pids = ", ".join(f"{p['name']} (pid {p['pid']})" for p in running)
    if others:
        return warned(
            f"softphone running: {pids}; but {'; '.join(_holder_text(h) for h in others)}",
            "close the other program holding the softphone's SIP/RTP port (two softphones "
            "cannot share it), or move one of them to another port",
            problem="port_conflict",
            **details,
        )
    return passed(f"softphone running: {pids}; {held}", problem=None, **details)
