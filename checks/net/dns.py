"""net.dns: the registrar's name resolves, as RFC 3263 and the OS resolver see it.

The resolution itself (NAPTR -> SRV -> A/AAAA with dnspython, and the OS resolver) is
checks/wire/dns.py; this module turns it into the check's verdict and hands its targets to the
checks that send SIP (targets_for)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from checks.wire.dns import DEADLINE_REACHED, DNS, OS, Target, hostport, resolve, tried_summary
from diag.context import Context
from diag.evidence import DnsDetails, DnsTarget, dns_details
from diag.model import CheckResult, Status, failed, passed, warned
from diag.target import is_ip

if TYPE_CHECKING:
    pass


# net.dns ends this long before its deadline at the latest, so its evidence beats the runner's
# cutoff, and takes at most half of what is left (but at least DNS_MIN_SHARE_S), so the checks
# that wait for it (sip.register, net.sip-options) keep the other half.
RESULT_MARGIN_S = 0.5
DNS_MIN_SHARE_S = 1.0
DNS_SERVER_HINT = (
    "check the registrar name and the DNS servers this machine uses (or pass --dns-server)"
)
OS_RESOLVER_KINDS = "hosts file, mDNS or VPN DNS"


# net.dns's details["outcome"] when nothing resolves, and how the summary says it.
FAILURE_WORDING = {
    "nxdomain": "the name does not exist",
    "no_answer": "the DNS server {servers} did not answer",
    "server_failure": "the DNS server {servers} refused or failed the queries (SERVFAIL/REFUSED)",
    "unfinished": "the deadline passed before every query was made",
    "no_records": "DNS has no usable records for it",
    "no_dns_server": "no DNS server is configured",
    "not_unicast": "it resolves only to addresses that are no one server's ({refused})",
}
FAILURE_HINTS = {"unfinished": "re-run with a larger --timeout"}
NO_ANSWER_HINT = (
    "check that this machine reaches {servers} on UDP and TCP port 53 (firewall, VPN), "
    "or pass --dns-server with a server that answers"
)


# What DNS said about a name only the OS resolver knows (an info remark, not a problem).
DNS_SAID = {
    "NXDOMAIN": "says the name does not exist",
    "NoAnswer": "has no address records for it",
    "Timeout": "did not answer",
    "NoNameservers": "failed (SERVFAIL/REFUSED)",
    DEADLINE_REACHED: "was not asked before the deadline",
}


def target_record(t: Target) -> DnsTarget:
    """A target as net.dns' details carry it to the checks that send SIP (targets_for)."""
    return {
        "transport": t.transport,
        "host": t.host,
        "port": t.port,
        "address": t.address,
        "source": t.source,
    }


def targets_for(ctx: Context) -> list[Target]:
    """net.dns's targets when it ran in this run, else resolve now."""
    dns = ctx.results.get("net.dns")
    if dns is not None and "targets" in dns.details:
        return [
            Target(t["transport"], t["host"], t["port"], t["address"], t["source"])
            for t in dns_details(dns.details)["targets"]
        ]
    target = ctx.settings.target
    if target is None:
        return []
    return resolve(
        target, ctx.settings.effective_transports, ctx.settings.dns_server, ctx.deadline
    ).targets


def dns_deadline(ctx: Context) -> float:
    """When net.dns must be done: half of what is left (at least DNS_MIN_SHARE_S), and never
    later than RESULT_MARGIN_S before its own deadline."""
    share = max(DNS_MIN_SHARE_S, ctx.remaining() / 2)
    return min(ctx.deadline - RESULT_MARGIN_S, ctx.monotonic() + share)


def check_dns(ctx: Context) -> CheckResult:
    """net.dns: every requested transport has at least one target."""
    registrar = ctx.settings.target
    assert registrar is not None  # the runner skips this check without a registrar
    transports = list(ctx.settings.effective_transports)
    res = resolve(registrar, transports, ctx.settings.dns_server, dns_deadline(ctx))
    details: DnsDetails = {
        "registrar": registrar.host,
        "nameserver": ctx.settings.dns_server,
        "dns_servers": res.dns_servers,
        "os_resolver": res.os_resolver,
        "naptr_transports": res.naptr_transports,
        "via": {t: route.via for t, route in res.routes.items()},
        "lookups": res.lookups,
        "targets": [target_record(t) for t in res.targets],
        "outcome": "resolved",
        "remarks": remarks(res.lookups, res.dns_servers),
    }
    if res.refused:  # never targets: nothing is sent to a multicast or broadcast address
        details["refused_addresses"] = res.refused
        details["remarks"].append(
            "not used: " + ", ".join(f"{r['address']} ({r['why']})" for r in res.refused)
        )
    if is_ip(registrar.host):
        details["outcome"] = "ip_address"
        return passed(f"{registrar.host} is an IP address; no DNS needed", **details)
    found = {t: [x for x in res.targets if x.transport == t] for t in transports}
    working = [t for t in transports if found[t]]
    missing = [t for t in transports if not found[t]]
    # The OS resolver may have been started in time and still be running: DNS decides.
    if not working and all(
        q["error"] == DEADLINE_REACHED for q in res.lookups if q["source"] == DNS
    ):
        details["outcome"] = "deadline"
        return CheckResult(
            Status.ERROR,
            "the deadline passed before any DNS query could be made",
            details,
            "re-run with a larger --timeout",
        )
    if not working:
        outcome = failure_outcome(res.lookups, registrar.host.rstrip("."), res.dns_servers)
        if res.refused and outcome == "no_records":
            outcome = "not_unicast"
        servers = ", ".join(res.dns_servers)
        refused = ", ".join(f"{r['address']}: {r['why']}" for r in res.refused)
        details["outcome"] = outcome
        hints = {**FAILURE_HINTS, "no_answer": NO_ANSWER_HINT.format(servers=servers)}
        return failed(
            f"{registrar.host} does not resolve: "
            f"{FAILURE_WORDING[outcome].format(servers=servers, refused=refused)}; "
            f"{tried_summary(res.lookups)}",
            hints.get(outcome, DNS_SERVER_HINT),
            **details,
        )
    summary = f"{registrar.host}: " + ", ".join(
        _transport_summary(t, found[t], res.routes[t].via) for t in working
    )
    if details["remarks"]:
        summary += "; note: " + "; ".join(details["remarks"])
    if not missing:
        return passed(summary, **details)
    records = " and ".join(res.routes[t].records for t in missing)
    use = " ".join(f"--transport {t}" for t in working)
    return warned(
        f"{summary}; no target for {', '.join(missing)}",
        f"publish {records} or use {use}",
        **details,
    )


def failure_outcome(lookups: Sequence[dict[str, Any]], host: str, dns_servers: list[str]) -> str:
    """Why nothing resolved, as a key of FAILURE_WORDING: a silent server is not a missing name.

    The name itself NXDOMAIN wins (the server answered, definitively); then any query the DNS
    server left unanswered; then SERVFAIL/REFUSED; then queries the deadline left unmade; else
    the answers held nothing usable.
    """
    dns = [q for q in lookups if q.get("source", DNS) == DNS]
    errors = {q["error"] for q in dns}
    if not dns_servers:
        return "no_dns_server"
    if any(q["error"] == "NXDOMAIN" and q["name"] == host for q in dns):
        return "nxdomain"
    if "Timeout" in errors:
        return "no_answer"
    if "NoNameservers" in errors:
        return "server_failure"
    if DEADLINE_REACHED in errors:
        return "unfinished"
    return "no_records"


def remarks(lookups: Sequence[dict[str, Any]], dns_servers: list[str]) -> list[str]:
    """Info-level notes on a resolution that worked: DNS queries left unanswered, and names
    whose address only the OS resolver gave or that the OS resolver and DNS disagree on."""
    notes = []
    dns = [q for q in lookups if q.get("source", DNS) == DNS]
    unanswered = [f"{q['type']} {q['name']}" for q in dns if q["error"] == "Timeout"]
    if unanswered:
        servers = ", ".join(dns_servers)
        notes.append(f"the DNS server {servers} did not answer {', '.join(unanswered)}")
    for os_lookup in (q for q in lookups if q.get("source") == OS and q["answers"]):
        name = os_lookup["name"]
        by_dns = [q for q in dns if q["name"] == name and q["type"] in ("A", "AAAA")]
        dns_addresses = [a for q in by_dns for a in q["answers"]]
        if not dns_addresses:
            said = [q["error"] for q in dns if q["name"] == name and q["error"]]
            why = DNS_SAID.get(said[0], f"failed ({said[0]})") if said else "was not asked"
            only_os = f"{name}'s address comes from the OS resolver ({OS_RESOLVER_KINDS}) only"
            notes.append(f"{only_os}: DNS {why}")
        elif set(dns_addresses) != set(os_lookup["answers"]):
            notes.append(
                f"the OS resolver gives {name} {', '.join(os_lookup['answers'])}, DNS gives "
                f"{', '.join(dns_addresses)}: a softphone that uses the OS resolver goes to "
                f"{os_lookup['answers'][0]}"
            )
    return notes


def _transport_summary(transport: str, targets: list[Target], via: str) -> str:
    more = f" +{len(targets) - 1} more" if len(targets) > 1 else ""
    source = " from the OS resolver" if targets[0].source == OS else ""
    return f"{transport} → {hostport(targets[0].address, targets[0].port)}{more} ({via}{source})"
