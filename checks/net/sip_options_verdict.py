"""net.sip-options' verdict: every probe's result -> status, summary, hint and details (pure).

checks/net/sip_options.py plans the probes (up to three targets per transport, in DNS
preference order) and runs them; this module only reads their results. Each transport is
summed up by one target's result: the first that answered, else the first one, so diagnosis
rules read ``details["transports"][t]`` as "what a softphone gets over t"; every target's own
result is in ``details["transports"][t]["targets"]`` and why the transport was probed in
``details["transports"][t]["why_probed"]``.

A transport that is configured and does not work fails the check; one that DNS publishes (so a
softphone may be sent there) and does not work warns; one probed only because
--probe-all-transports asked is information, whatever its result. Connection refused (TCP RST,
ICMP port unreachable) means nothing listens there: the server's side, not a firewall's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from checks.net.dns import DNS_SERVER_HINT
from diag.model import CheckResult, Status
from diag.outcomes import (
    ANSWERED,
    NOT_FINISHED,
    REFUSED,
    TIMEOUT,
    TLS_FAILED,
    TLS_UNTRUSTED,
    UNREACHABLE,
)
from diag.target import Registrar

ALL_TRANSPORTS = ("udp", "tcp", "tls")
# Why a transport was probed (details["transports"][t]["why_probed"]).
WHY_CONFIGURED = "configured"  # --transport, the profile, or the registrar URI
WHY_DNS = "dns"  # not configured, but DNS publishes a NAPTR/SRV target for it
WHY_ALL_TRANSPORTS = "all_transports"  # only --probe-all-transports asked for it
Result = Mapping[str, Any]  # one probe's result (optionsprobe.Probe.out)


def answered(r: Result) -> bool:
    """The registrar's SIP answered at this target (over TLS perhaps only unverified)."""
    return r["outcome"] == ANSWERED or (r["outcome"] == TLS_UNTRUSTED and r["code"] is not None)


def representative(targets: Sequence[Result]) -> int:
    """Which target sums up its transport: the first that answered, else the first."""
    return next((i for i, r in enumerate(targets) if answered(r)), 0)


def failed_over(targets: Sequence[Result]) -> list[Result]:
    """The preferred targets that gave no answer while a less preferred one did (a target whose
    probe ran out of budget is no evidence against it)."""
    return [r for r in targets[: representative(targets)] if r["outcome"] != NOT_FINISHED]


def verdict(
    per_target: Mapping[str, Sequence[dict[str, Any]]],
    configured: tuple[str, ...],
    registrar: Registrar,
    ca_given: bool = False,
    dns_error: str | None = None,
    host_lookups: list[dict[str, Any]] | None = None,
    why_probed: Mapping[str, str] | None = None,
) -> CheckResult:
    """Status, summary, hint and details from every target's result, per transport, each
    transport's targets in preference order. ``why_probed``: WHY_* per transport (default:
    configured ones WHY_CONFIGURED, the others WHY_DNS)."""
    order = [t for t in ALL_TRANSPORTS if per_target.get(t)]
    why = {
        t: (why_probed or {}).get(t) or (WHY_CONFIGURED if t in configured else WHY_DNS)
        for t in order
    }
    results = {t: per_target[t][representative(per_target[t])] for t in order}
    probes = [r for t in order for r in per_target[t]]
    local_ips = [_local_ip(r) for r in probes]
    public = sorted(
        {
            r["received"]
            for r, ip in zip(probes, local_ips, strict=True)
            if r.get("received") and not _same_ip(r["received"], ip)
        }
    )
    details: dict[str, Any] = {
        "registrar": registrar.host,
        "configured_transports": list(configured),
        "probed_transports": order,
        "transports": {
            t: {**results[t], "why_probed": why[t], "targets": [dict(r) for r in per_target[t]]}
            for t in order
        },
        "public_addresses": public,
        "local_address": next((ip for ip in local_ips if ip), None),
        "call_ids": [r["call_id"] for r in probes if r.get("call_id")],
    }
    if dns_error:
        details["dns_error"] = dns_error
    if host_lookups:  # the registrar host's A/AAAA, asked for the derived targets
        details["host_lookups"] = host_lookups
    summary = "; ".join(_summary_part(t, per_target[t], why[t]) for t in order)
    bad = [t for t in configured if t in results and not _usable(results[t])]
    evidence = [t for t in bad if results[t]["outcome"] != NOT_FINISHED]
    if evidence:
        hint = _hint(evidence[0], results, registrar, ca_given, suggest_switch=True)
        return CheckResult(Status.FAIL, summary, details, hint)
    if bad:
        return CheckResult(Status.ERROR, summary, details, "re-run with a larger --timeout")
    hints = []
    # A transport only --probe-all-transports asked for is information, never a warning.
    spare = [
        t
        for t in order
        if why[t] == WHY_DNS and results[t]["outcome"] != NOT_FINISHED and not _usable(results[t])
    ]
    if spare:
        hint = _hint(spare[0], results, registrar, ca_given, suggest_switch=False)
        works = "/".join(t.upper() for t in configured)
        hints.append(f"{works} works; {spare[0].upper()} would not: {hint}")
    slow = [t for t in configured if t in results and failed_over(per_target[t])]
    if slow:
        hints.append(_failover_hint(slow[0], per_target[slow[0]], registrar))
    if hints:
        return CheckResult(Status.WARN, summary, details, "; also ".join(hints))
    return CheckResult(Status.PASS, summary, details)


def _local_ip(r: Result) -> str | None:
    local = r.get("local")
    return str(local).rsplit(":", 1)[0].strip("[]") if local else None


def _same_ip(a: str, b: str | None) -> bool:
    if b is None:
        return False
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _usable(r: Result) -> bool:
    """Answered, and for TLS over a verified certificate: what a softphone could use."""
    return bool(r["outcome"] == ANSWERED)


def _label(r: Result, targets: Sequence[Result]) -> str:
    """``host:port``, with the address when another target has the same host and port."""
    if sum(x["target"] == r["target"] for x in targets) > 1:
        return f"{r['target']} at {r['address']}"
    return str(r["target"])


_IN_SHORT = {
    TIMEOUT: "timed out",
    REFUSED: "refused",
    UNREACHABLE: "unreachable",
    TLS_FAILED: "TLS handshake failed",
    TLS_UNTRUSTED: "untrusted, no answer",
    NOT_FINISHED: "not finished",
}


def _summary_part(transport: str, targets: Sequence[Result], why: str = WHY_CONFIGURED) -> str:
    """The representative target's result, and how the other targets bear on it."""
    chosen = representative(targets)
    text = _outcome_text(transport, targets[chosen])
    if why == WHY_ALL_TRANSPORTS and not _usable(targets[chosen]):
        text += " (informational: neither configured nor published in DNS)"
    if chosen > 0:
        missed = ", ".join(
            f"{_label(r, targets)} {_IN_SHORT.get(r['outcome'], 'failed')}"
            for r in targets[:chosen]
        )
        return f"{text} via {_label(targets[chosen], targets)} ({missed})"
    if len(targets) > 1 and not answered(targets[0]):
        others = len(targets) - 1
        return f"{text} (+{others} other target{'s' if others > 1 else ''}, none answered)"
    return text


def _outcome_text(transport: str, r: Result) -> str:
    outcome = r["outcome"]
    answer = f"{r['code']} {r['reason'] or ''}".strip() + f" {r['rtt_ms']} ms"
    if outcome == ANSWERED:
        return f"{transport} {answer}"
    if outcome == TLS_UNTRUSTED:
        why = (r.get("certificate") or {}).get("verify_error")
        if r["code"] is not None:
            return f"{transport} untrusted ({why}), unverified: {answer}"
        return f"{transport} untrusted ({why})"
    if outcome == TIMEOUT:
        connected = " (connected, then silence)" if r.get("connect_ms") is not None else ""
        return f"{transport} no answer{connected}"
    if outcome == REFUSED:  # a TCP RST or an ICMP port unreachable: the server's side
        return f"{transport} refused: nothing listens on {r['target']} over {_PROTO[transport]}"
    label = {
        UNREACHABLE: "unreachable",
        TLS_FAILED: "handshake failed",
        NOT_FINISHED: "not finished",
    }
    return f"{transport} {label.get(outcome, 'error')} ({r['error']})"


_PROTO = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


def _failover_hint(transport: str, targets: Sequence[Result], registrar: Registrar) -> str:
    """The preferred targets of ``transport`` give no answer, a less preferred one does."""
    failed = failed_over(targets)
    backup = targets[representative(targets)]
    names = " and ".join(_label(r, targets) for r in failed)
    one = len(failed) == 1
    if all(r["target"] == backup["target"] for r in failed):  # the host's other addresses
        what = "address" if one else "addresses"
        records = f"the A/AAAA records of {registrar.host_literal}"
    else:
        what = "SRV target" if one else "SRV targets"
        records = "the SRV records"
    it = "it" if one else "them"
    return (
        f"the preferred {what} {names} {'does' if one else 'do'} not answer over "
        f"{_PROTO[transport]}, so softphones try {it} first and fail over to "
        f"{_label(backup, targets)} slowly: ask the platform to fix {it} or to remove {it} "
        f"from {records}"
    )


def _hint(
    transport: str,
    results: Mapping[str, Result],
    registrar: Registrar,
    ca_given: bool,
    suggest_switch: bool,
) -> str:
    """The next concrete action for ``transport``'s problem (``results``: one per transport)."""
    r = results[transport]
    host = registrar.host_literal  # IPv6 in brackets
    port = r["target"].rsplit(":", 1)[1]
    proto = "TCP" if transport == "tls" else _PROTO[transport]
    where = f"{proto} {port}{' (SIP over TLS)' if transport == 'tls' else ''} to {host}"
    working = [t for t in ALL_TRANSPORTS if t != transport and t in results and _usable(results[t])]
    switch = f", or re-run with --transport {working[0]}" if working and suggest_switch else ""
    outcome = r["outcome"]
    if outcome == TLS_UNTRUSTED:
        return _tls_hint(r, host, ca_given)
    if outcome == TIMEOUT and all(x["code"] is None for x in results.values()):
        return (
            f"nothing answers at {host}: allow outbound {proto} {port}"
            f"{' (SIP over TLS)' if transport == 'tls' else ''} to it in the firewall/VPN, and "
            "check that it is the right registrar"
        )
    if outcome == TIMEOUT:
        return f"allow outbound {where} in the firewall{switch}"
    if outcome == REFUSED:  # nothing listens there: a question for the platform, not a firewall
        name = _PROTO[transport]
        return (
            f"nothing listens on {r['target']} over {name}: check the registrar's {name} port "
            f"with the platform{switch}"
        )
    if outcome == UNREACHABLE:
        return f"there is no route to {host}: check the network connection and VPN"
    if outcome == TLS_FAILED:
        return (
            f"the TLS handshake with {host}:{port} failed: check that this port speaks SIP over "
            f"TLS and that no proxy intercepts it{switch}"
        )
    if str(r["error"]).startswith("cannot resolve "):
        return DNS_SERVER_HINT
    if str(r["error"]).startswith("cannot load the --ca file"):
        return "give --ca a PEM file that holds the platform's CA certificate"
    return f"quote the error ({r['error']}) and the run id to the platform administrator{switch}"


def _tls_hint(r: Result, host: str, ca_given: bool) -> str:
    cert = r.get("certificate") or {}
    why = (cert.get("verify_error") or "").lower()
    if "mismatch" in why:
        names = ", ".join(cert.get("san") or []) or cert.get("subject_cn") or "other names"
        return (
            f"the certificate is not valid for {host} (it names {names}): use a registrar name "
            "the certificate names, or ask the platform to fix its certificate"
        )
    if "expired" in why:
        return (
            f"the registrar's certificate expired ({cert.get('not_after')}): ask the platform "
            "to renew it, and check this machine's clock"
        )
    if "not yet valid" in why:
        return "the registrar's certificate is not valid yet: check this machine's clock (NTP)"
    given = " (the --ca file given does not verify it)" if ca_given else ""
    return (
        f"install the platform's CA certificate or pass --ca FILE{given}; if a TLS-inspecting "
        f"proxy signs it, exempt {host} from inspection"
    )
