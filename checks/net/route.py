"""net.route: which interface carries traffic to the registrar, its MTU, and whether it is a VPN."""

from __future__ import annotations

import socket
from typing import Any

from checks.host.interfaces import list_interfaces
from checks.net.dns import targets_for
from checks.sip.stack import source_address_for
from diag.context import Context
from diag.model import CheckResult, passed, skipped, warned

SIP_SAFE_MTU = 1300 + 28  # RFC 3261 §18.1.1: a 1300-byte message plus IP/UDP headers


def route_to(host: str) -> dict[str, Any] | None:
    """The local address and interface the OS routes to `host` through (nothing is sent)."""
    found = source_address_for(host)
    if found is None:
        return None
    _, local = found
    for iface in list_interfaces():
        if local in iface["addresses"]:
            return {
                "local_address": local,
                "interface": iface["name"],
                "mtu": iface["mtu"],
                "is_vpn": iface["is_vpn"],
            }
    return {"local_address": local, "interface": None, "mtu": None, "is_vpn": False}


def check_route(ctx: Context) -> CheckResult:
    target = ctx.settings.target
    assert target is not None  # requires=("registrar",)
    resolved = targets_for(ctx)
    host = resolved[0].address if resolved else target.host
    try:
        route = route_to(host)
    except (OSError, socket.gaierror):
        route = None
    if route is None:
        return skipped(
            f"no route to {host} could be determined",
            "check the network connection; net.dns and net.sip-options say more",
        )
    details = {"destination": host, **route}
    where = f"{route['interface'] or 'an unknown interface'} ({route['local_address']})"
    mtu = route["mtu"]
    small = (
        f", MTU {mtu} (SIP over UDP above {mtu - 28} bytes will fragment)"
        if (mtu and mtu < SIP_SAFE_MTU)
        else (f", MTU {mtu}" if mtu else "")
    )
    if route["is_vpn"]:
        return warned(
            f"traffic to {host} goes through the VPN interface {where}{small}",
            "if calls fail, check with IT that the platform may be reached through the "
            "VPN, or ask for a split tunnel that sends it outside",
            **details,
        )
    return passed(f"traffic to {host} leaves through {where}{small}", **details)
