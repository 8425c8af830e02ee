"""host.vpn: no VPN interface is active (a VPN re-routes SIP and media)."""

from __future__ import annotations

from checks.host.interfaces import list_interfaces
from diag.context import Context
from diag.model import CheckResult, passed, warned


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
