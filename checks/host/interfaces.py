"""host.interfaces: a network interface is up (psutil); also how interfaces are listed and
which of them look like VPNs."""

from __future__ import annotations

import socket
from typing import Any

from diag.context import Context
from diag.model import CheckResult, failed, passed

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
