"""Finding the registrar (RFC 3263): NAPTR -> SRV -> A/AAAA per transport, with dnspython.

INTERFACE STUB: only IP literals and plain address lookups so far; full RFC 3263 lands next.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from diag.context import Context
from diag.model import CheckResult, failed, passed
from diag.target import Registrar

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True)
class Target:
    """One place to send SIP to, in preference order within its transport."""

    transport: str  # udp | tcp | tls
    host: str  # the name it came from (SRV target, or the registrar host)
    port: int
    address: str  # the IP address to connect to

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Resolution:
    # Every query made: {"type", "name", "answers": [str], "error": str | None, "ms": int}
    lookups: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def resolve(
    registrar: Registrar,
    transports: Sequence[str],
    nameserver: str | None,
    deadline: float,
) -> Resolution:
    """Targets for each of `transports`, ordered as RFC 3263 says."""
    out = Resolution()
    for transport in transports:
        port = registrar.port or DEFAULT_PORTS[transport]
        try:
            infos = socket.getaddrinfo(registrar.host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            out.lookups.append({"type": "A", "name": registrar.host, "answers": [],
                                "error": str(exc), "ms": 0})
            continue
        for info in infos:
            out.targets.append(Target(transport, registrar.host, port, str(info[4][0])))
    return out


def targets_for(ctx: Context) -> list[Target]:
    """net.dns's targets when it ran in this run, else resolve now."""
    dns = ctx.results.get("net.dns")
    if dns is not None and "targets" in dns.details:
        return [Target(**t) for t in dns.details["targets"]]
    target = ctx.settings.target
    if target is None:
        return []
    return resolve(target, ctx.settings.effective_transports, ctx.settings.dns_server,
                   ctx.deadline).targets


def check_dns(ctx: Context) -> CheckResult:
    target = ctx.settings.target
    assert target is not None
    res = resolve(target, ctx.settings.effective_transports, ctx.settings.dns_server,
                  ctx.deadline)
    details = {"registrar": target.host, "lookups": res.lookups,
               "targets": [t.as_dict() for t in res.targets]}
    if not res.targets:
        return failed(f"{target.host} does not resolve", "check DNS", **details)
    return passed(f"{target.host} resolves", **details)
