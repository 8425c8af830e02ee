"""The account's bindings as a REGISTER query's 200 lists them, and the one rule that keeps
sipdiag from harming the agent's registration: a binding of our own only where it cannot replace
another (or with --register-binding); a binding the query listed that our 200 OK no longer lists
was replaced.

Also the check sip.bindings, which reads sip.register's query (it sends nothing itself): is a
softphone registered for the agent at all (sip.not_registered), is more than one device
(sip.extra_bindings), and can the platform route back to each (sip.binding_unroutable)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import cast

from diag import outcomes as o
from diag.context import Context
from diag.evidence import (
    Binding,
    BindingPlan,
    BindingView,
    RegisterAttempt,
    SeenFrom,
)
from diag.model import CheckResult, failed, passed, skipped, warned


def other_bindings(queries: list[RegisterAttempt]) -> list[Binding]:
    """The account's bindings as the registrar listed them (each contact once), ours left out."""
    seen: dict[str, Binding] = {}
    for q in queries:
        for b in cast(list[Binding], q.get("bindings") or []):  # a query's: parsed records
            if not b["ours"]:
                seen.setdefault(b["contact"], b)
    return list(seen.values())


def binding_plan(
    queries: Sequence[RegisterAttempt], bindings: list[Binding], opted_in: bool
) -> BindingPlan:
    """Whether sip.register may make a binding of its own, and why (details["binding"])."""
    if not any(q["outcome"] == o.OK for q in queries):
        return {"create": False, "reason": "the registrar did not accept the query"}
    if opted_in:
        return {"create": True, "reason": "--register-binding"}
    if bindings:
        return {
            "create": False,
            "reason": f"the account has {len(bindings)} other binding(s); a registration of "
            "ours could replace them (--register-binding opts in)",
        }
    return {"create": True, "reason": "the account has no other binding"}


def missing_from(before: list[Binding], listed: list[str], over: str) -> list[Binding]:
    """Bindings of ``before`` that a 200 OK's Contact values (``listed``) no longer name."""
    from checks.wire.sip import parse_bindings

    now = {b.contact for b in parse_bindings(listed)}
    return [{**b, "replaced_over": over} for b in before if b["contact"] not in now]


def replaced_bindings(before: list[Binding], attempts: Sequence[RegisterAttempt]) -> list[Binding]:
    """Bindings the query listed that the 200 OK to our own REGISTER no longer lists: the
    registrar keeps one binding per account and ours replaced them."""
    from checks.wire.sip import parse_bindings

    gone: dict[str, Binding] = {}
    for a in attempts:
        if a.get("outcome") != o.OK or "bindings" not in a:
            continue
        contacts = cast(list[str], a["bindings"])  # our REGISTER's 200 OK: Contact values
        listed = {b.contact for b in parse_bindings(list(contacts))}
        for b in before:
            if b["contact"] not in listed:
                gone.setdefault(b["contact"], {**b, "replaced_over": a["transport"]})
    return list(gone.values())


REPLACED_ACTION = (
    "re-register the softphone now (log out and in, or restart it): its registration will only "
    "be back at its next refresh; run sipdiag without --register-binding on this registrar"
)


def contacts_text(bindings: list[Binding]) -> str:
    return ", ".join(f"<{b['contact']}>" for b in bindings)


# ---- sip.bindings: "The platform holds a reachable registration for this agent"

# Parameters a registrar or a softphone adds so that requests find a NATed device again:
# received (RFC 3327-era Kamailio/OpenSIPS), alias (RFC 5923 / Kamailio set_contact_alias),
# path (RFC 3327), reg-id/+sip.instance (RFC 5626 outbound: the flow is kept open).
NAT_FIXUP_PARAMS = ("received", "alias", "path", "reg-id", "ob")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598: Python's is_private leaves it out


def address_class(host: str) -> str:
    """private (RFC 1918, IPv6 ULA), cgnat (RFC 6598), link-local, loopback, public, or name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "name"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.version == 4 and ip in _CGNAT:
        return "cgnat"
    return "private" if ip.is_private else "public"


def contact_host(contact: str) -> str:
    """The host of a Contact URI: sip:user@HOST:port;params -> HOST."""
    rest = contact.split(":", 1)[-1].split(";", 1)[0]
    hostport = rest.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def nat_fixups(binding: Binding) -> list[str]:
    """The parameters of ``binding`` (header or URI) that let the platform route back to it."""
    uri_params = {p.partition("=")[0].lower() for p in binding["contact"].split(";")[1:]}
    found = [p for p in NAT_FIXUP_PARAMS if p in binding["params"] or p in uri_params]
    if binding.get("reg_id") is not None and "reg-id" not in found:
        found.append("reg-id")
    return found


def describe(binding: Binding) -> BindingView:
    host = contact_host(binding["contact"])
    kind = address_class(host)
    return {
        **binding,
        "host": host,
        "address_class": kind,
        "private": kind in ("private", "cgnat", "link-local"),
        "nat_fixup": nat_fixups(binding),
    }


def seen_from(query: RegisterAttempt) -> SeenFrom | None:
    received, rport = query.get("received"), query.get("rport")
    if not received and not rport:
        return None
    # No received=: the registrar saw the address our Via named, the one we sent from.
    local = str(query.get("local") or "")
    sent_from = local.rsplit(":", 1)[0].strip("[]") if local else ""
    if not received and not sent_from:
        return None
    return {
        "address": received or sent_from,
        "port": rport,
        "transport": query.get("transport", ""),
    }


def unroutable(view: BindingView, seen: SeenFrom | None) -> bool:
    """A private contact, while the registrar sees us from another address, and nothing that
    lets the platform route back to it: it can only reach the phone if it fixes NAT itself."""
    return (
        view["private"]
        and seen is not None
        and bool(seen["address"])
        and seen["address"] != view["host"]
        and not view["nat_fixup"]
    )


def queries_of(register: CheckResult | None) -> list[RegisterAttempt]:
    """sip.register's Contact-less queries: its ``queries`` when it registered a binding of its
    own after them, else its ``attempts`` (which then are the queries)."""
    if register is None:
        return []
    details = register.details
    return list(details.get("queries") or details.get("attempts") or [])


def _softphone_running(ctx: Context) -> bool | None:
    found = ctx.results.get("host.softphone")
    if found is None or found.status.value in ("skip", "error"):
        return None
    return bool(found.details.get("running"))


def check_bindings(ctx: Context) -> CheckResult:
    register = ctx.results.get("sip.register")
    if register is None:
        return skipped(
            "sip.register did not run: the bindings come from its REGISTER query",
            "run sip.register too (it sends the query; do not --skip it)",
        )
    if ctx.settings.no_register:
        return skipped(
            "--no-register: only an authenticated REGISTER query lists the bindings",
            "run without --no-register (the query registers nothing)",
        )
    queries = queries_of(register)
    accepted = next((q for q in queries if q.get("outcome") == o.OK), None)
    if accepted is None:
        answered = next((q for q in queries if q.get("code")), None)
        said = (
            f"{answered['code']} {answered.get('reason') or ''}".strip()
            if answered
            else register.summary
        )
        return skipped(
            f"the registrar did not answer the REGISTER query with its bindings ({said})",
            "see sip.register for why; the bindings are listed once a query is accepted",
            query={
                "transport": answered.get("transport"),
                "code": answered["code"],
                "reason": answered.get("reason"),
            }
            if answered
            else None,
        )
    raw = cast(list[Binding], accepted.get("bindings") or [])
    views = [describe(b) for b in raw]
    for q in queries:  # every transport's listing: each contact once
        for b in cast(list[Binding], q.get("bindings") or []):
            if b["contact"] not in {v["contact"] for v in views}:
                views.append(describe(b))
    others = [v for v in views if not v["ours"]]
    seen = seen_from(accepted)
    running = _softphone_running(ctx)
    user = ctx.settings.user
    problems: list[str] = []
    actions: dict[str, str] = {}
    notes: list[str] = []
    if not others:
        problems.append("sip.not_registered")
        if running:
            notes.append(f"the softphone is running but no device is registered for {user}")
            actions["sip.not_registered"] = (
                "the softphone runs but is not registered: log it in again (or restart it) "
                "and check its account settings; then re-run sipdiag"
            )
        else:
            notes.append(f"no device is registered for {user}")
            actions["sip.not_registered"] = (
                "is the softphone open and logged in? Start it, log in, and re-run sipdiag"
            )
    if len(others) > 1:
        problems.append("sip.extra_bindings")
        listed = "; ".join(_binding_text(v) for v in others)
        notes.append(f"{len(others)} devices are registered for {user}: {listed}")
        actions["sip.extra_bindings"] = (
            f"log {user} out of every device but the agent's softphone (offers ring all "
            f"{len(others)}: {contacts_text(list(others))}); the one that rejects decides "
            "the status"
        )
    bad = [v for v in others if unroutable(v, seen)]
    if bad and seen is not None:
        problems.append("sip.binding_unroutable")
        notes.append(
            f"{contacts_text(list(bad))} names a {bad[0]['address_class']} address while the "
            f"registrar sees this machine as {seen['address']}, with no received/alias/path "
            "parameter"
        )
        actions["sip.binding_unroutable"] = (
            f"enable NAT traversal in the softphone (rport/contact rewrite, STUN, or SIP "
            f"outbound), or ask the platform to apply NAT fix-up (it sees {seen['address']} "
            f"but is told {bad[0]['host']})"
        )
    details = {
        "user": user,
        "bindings": views,
        "seen_from": seen,
        "softphone_running": running,
        "problems": problems,
        "actions": actions,
        "extra": [v["contact"] for v in others] if len(others) > 1 else [],
        "unroutable": [v["contact"] for v in bad],
        "query": {
            "transport": accepted.get("transport"),
            "code": accepted.get("code"),
            "reason": accepted.get("reason"),
        },
    }
    if not problems:
        return passed(
            f"the platform holds one registration for {user}: {_binding_text(others[0])}",
            **details,
        )
    summary = "; ".join(notes)
    action = "; ".join(actions[p] for p in problems)
    if "sip.not_registered" in problems and running:
        return failed(summary, action, **details)
    return warned(summary, action, **details)


def _binding_text(v: BindingView) -> str:
    expires = f", expires in {v['expires']} s" if v.get("expires") is not None else ""
    instance = f", instance {v['instance']}" if v.get("instance") else ""
    return f"<{v['contact']}> ({v['transport'].upper()}{expires}{instance})"
