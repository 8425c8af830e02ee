"""Host checks: OS, interfaces and VPNs (psutil), proxy settings, clock offset."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import platform
import socket
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from checks.sipmsg import parse_date
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped, warned

# Interface names VPN clients create: Linux/BSD (tun, tap, ppp, wg, ipsec), macOS (utun, ipsec,
# ppp), and the adapter names Windows clients register.
VPN_NAME_PREFIXES = (
    "tun",
    "tap",
    "ppp",
    "wg",
    "utun",
    "ipsec",
    "gpd",
    "cscotun",
    "nordlynx",
    "tailscale",
    "zt",
)
VPN_NAME_WORDS = (
    "vpn",
    "wireguard",
    "anyconnect",
    "globalprotect",
    "fortinet",
    "forticlient",
    "openvpn",
    "tap-windows",
    "zerotier",
    "pangp",
    "juniper",
    "pulse secure",
)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CLOCK_SKEW_WARN_MS = 5000  # Date has 1 s resolution; 5 s is well past rounding + round trip


def is_vpn_interface(name: str, flags: str) -> bool:
    lowered = name.lower()
    return (
        lowered.startswith(VPN_NAME_PREFIXES)
        or any(word in lowered for word in VPN_NAME_WORDS)
        or "pointopoint" in flags.split(",")
    )


def list_interfaces() -> list[dict[str, Any]]:
    import psutil

    stats = psutil.net_if_stats()
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        st = stats.get(name)
        flags = str(getattr(st, "flags", "") or "")
        addresses = [
            a.address.split("%", 1)[0]
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
        ]
        out.append(
            {
                "name": name,
                "addresses": addresses,
                "is_up": bool(st and st.isup),
                "is_vpn": is_vpn_interface(name, flags),
                "is_loopback": "loopback" in flags.split(",")
                or name == "lo"
                or name.startswith("lo0"),
                "mtu": st.mtu if st else None,
            }
        )
    return out


def _redact_url(value: str) -> str:
    """Proxy URLs may carry user:password@; keep the host, drop the credentials."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "[unparseable]"
    if parts.username is None and parts.password is None:
        return value
    host = parts.hostname or ""
    netloc = f"[redacted]@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def proxies(environ: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for var in PROXY_VARS:
        value = environ.get(var) or environ.get(var.lower())
        if value:
            found[var.lower()] = value if var == "NO_PROXY" else _redact_url(value)
    return found


def describe_host_minimal(environ: Mapping[str, str]) -> dict[str, Any]:
    """The report's `host` section without interfaces (needs nothing beyond the stdlib)."""
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    version = platform.version()
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_version": platform.release() + (f" ({version})" if version else ""),
        "python": sys.version.split()[0],
        "user": user,
        "interfaces": [],
        "proxies": proxies(environ),
    }


def describe_host(environ: Mapping[str, str]) -> dict[str, Any]:
    """The report's `host` section."""
    host = describe_host_minimal(environ)
    host["interfaces"] = [
        {k: i[k] for k in ("name", "addresses", "is_up", "is_vpn")} for i in list_interfaces()
    ]
    return host


def check_os(ctx: Context) -> CheckResult:
    system, release = platform.system(), platform.release()
    details = {
        "os": system,
        "os_version": release,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    if system not in ("Linux", "Darwin", "Windows"):
        return warned(
            f"{system} {release} is not a platform sipdiag knows",
            "run sipdiag on the agent's Windows, macOS or Linux desktop",
            **details,
        )
    return passed(f"{system} {release} on {platform.machine()}", **details)


def check_interfaces(ctx: Context) -> CheckResult:
    interfaces = list_interfaces()
    usable = [i for i in interfaces if i["is_up"] and not i["is_loopback"] and i["addresses"]]
    names = ", ".join(f"{i['name']} ({', '.join(i['addresses'])})" for i in usable)
    if not usable:
        return failed(
            "no network interface is up with an address",
            "connect this machine to the network (cable or Wi-Fi) and re-run",
            interfaces=interfaces,
        )
    return passed(f"{len(usable)} interface(s) up: {names}", interfaces=interfaces)


def check_vpn(ctx: Context) -> CheckResult:
    active = [i for i in list_interfaces() if i["is_vpn"] and i["is_up"]]
    if not active:
        return passed("no VPN interface is up")
    names = ", ".join(i["name"] for i in active)
    return warned(
        f"VPN interface(s) up: {names}",
        f"if calls fail, re-run with the VPN ({names}) disconnected, or ask IT for a split "
        "tunnel that sends the contact-centre platform outside it",
        vpn_interfaces=[
            {"name": i["name"], "addresses": i["addresses"], "mtu": i["mtu"]} for i in active
        ],
    )


def check_proxy(ctx: Context) -> CheckResult:
    found = proxies(ctx.environ)
    if not found:
        return passed("no proxy configured in the environment", proxies={})
    shown = ", ".join(f"{k}={v}" for k, v in found.items())
    # SIP over UDP/TCP/TLS ignores HTTP proxies; only browser (WebRTC) softphones go through them.
    return passed(f"proxy settings found: {shown} (native SIP does not use them)", proxies=found)


def clock_offset_ms(server_date: str, local_at_response: str) -> int | None:
    """Local minus server time in ms (positive: this machine is ahead)."""
    server = parse_date(server_date)
    try:
        local = dt.datetime.fromisoformat(local_at_response.replace("Z", "+00:00"))
    except ValueError:
        return None
    if server is None:
        return None
    # The Date header is truncated to whole seconds: compare against the local second too.
    local = local.replace(microsecond=0)
    return int((local - server).total_seconds() * 1000)


def check_clock(ctx: Context) -> CheckResult:
    register = ctx.results.get("sip.register")
    if register is None:
        return skipped(
            "no registrar Date header to compare against",
            "run it together with sip.register (--registrar, --user) to read the registrar's clock",
        )
    dated = [
        a
        for a in register.details.get("attempts", [])
        if a.get("server_date") and a.get("local_time")
    ]
    if not dated:
        return skipped(
            "no registrar Date header to compare against",
            "the registrar sent no Date header; check that NTP is enabled instead",
        )
    sample = dated[0]
    offset = clock_offset_ms(sample["server_date"], sample["local_time"])
    if offset is None:
        return skipped(f"the registrar's Date header is unreadable: {sample['server_date']!r}")
    details = {
        "clock_offset_ms": offset,
        "server_date": sample["server_date"],
        "local_time": sample["local_time"],
        "threshold_ms": CLOCK_SKEW_WARN_MS,
    }
    direction = "ahead of" if offset > 0 else "behind"
    if abs(offset) > CLOCK_SKEW_WARN_MS:
        return warned(
            f"clock is {abs(offset) / 1000:.1f} s {direction} the registrar's",
            "enable time synchronisation (NTP) on this machine",
            **details,
        )
    return passed(
        f"clock within {CLOCK_SKEW_WARN_MS // 1000} s of the registrar's ({offset:+d} ms)",
        **details,
    )
