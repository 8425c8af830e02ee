"""net.sip-options: one raw OPTIONS to the registrar over UDP, TCP and TLS, side by side.

All three transports are always probed, in parallel, whatever the softphone is configured to
use: a blocked transport only means something next to one that works. The wire format lives
in checks/sipwire.py, one probe's sockets in checks/optionsprobe.py and the certificate evidence
in checks/tlscert.py; this module plans the probes, runs them side by side and gives the verdict.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from checks import sipwire
from checks.dns import (
    DEADLINE_REACHED,
    DEFAULT_PORTS,
    DNS_SERVER_HINT,
    Target,
    lookup_addresses,
    targets_for,
    tried_summary,
)
from checks.optionsprobe import (
    ANSWERED,
    ERROR,
    NOT_FINISHED,
    PROBE_TIMEOUT,
    REFUSED,
    RESERVE,
    TIMEOUT,
    TLS_FAILED,
    TLS_UNTRUSTED,
    UNREACHABLE,
    Plan,
    Probe,
)
from diag.context import Context
from diag.model import CheckResult, Status
from diag.target import Registrar, is_ip

ALL_TRANSPORTS = ("udp", "tcp", "tls")
DNS_UNFINISHED = "name resolution did not finish in time"
DNS_JOIN_SLACK = 0.05  # the resolver's own deadline is this much before we stop waiting for it
T = TypeVar("T")


def derived_port(registrar: Registrar, transport: str, configured: tuple[str, ...]) -> int:
    """The port to use for ``transport`` when DNS gave no target for it.

    An explicit URI port belongs to the configured transports, and to the one sharing its
    port class (UDP and TCP share 5060; TLS has 5061): ``sip:pbx:5080`` probes UDP and TCP
    on 5080 and TLS on 5061; ``sips:pbx:5071`` probes TLS on 5071 and UDP/TCP on 5060.
    """
    if registrar.port is None:
        return DEFAULT_PORTS[transport]
    if transport in configured:
        return registrar.port
    tls_class = transport == "tls"
    if any((t == "tls") == tls_class for t in configured):
        return registrar.port
    return DEFAULT_PORTS[transport]


def find_targets(ctx: Context) -> list[Target]:
    """targets_for(ctx), plus RFC 3263 targets for the transports the user did not configure.

    With an explicit port or an IP address RFC 3263 does no SRV lookup, so there is nothing
    more to ask DNS: plan_probes() derives those targets instead.
    """
    found = targets_for(ctx)
    registrar = ctx.settings.target
    assert registrar is not None
    configured = ctx.settings.effective_transports
    have = {t.transport for t in found}
    missing = tuple(t for t in ALL_TRANSPORTS if t not in configured and t not in have)
    if missing and registrar.port is None and not is_ip(registrar.host):
        others = {k: v for k, v in ctx.results.items() if k != "net.dns"}
        more = replace(ctx, settings=replace(ctx.settings, transports=missing), results=others)
        found = [*found, *targets_for(more)]
    return found


@dataclass
class Found:
    """What name resolution gave net.sip-options."""

    targets: list[Target]
    host_address: str | None = None  # the registrar host's address, for derived targets
    unresolved: str | None = None  # why the registrar host has no address
    lookups: list[dict[str, Any]] = field(default_factory=list)  # the queries for that address


def find_probe_targets(ctx: Context) -> Found:
    """find_targets(ctx), plus the registrar host's address for the transports DNS gave no
    target for: asked of the resolver net.dns uses (so --dns-server counts), by ctx.deadline.
    One address is enough: the probe shows whether the transport works, not failover."""
    targets = find_targets(ctx)
    registrar = ctx.settings.target
    assert registrar is not None
    host = registrar.host
    if is_ip(host):
        return Found(targets, host)
    known = next((t.address for t in targets if t.host == host), None)
    if known is not None or {t.transport for t in targets} >= set(ALL_TRANSPORTS):
        return Found(targets, known)
    addresses, lookups = lookup_addresses(host, ctx.settings.dns_server, ctx.deadline)
    if addresses:
        return Found(targets, addresses[0], lookups=lookups)
    return Found(targets, None, f"cannot resolve {host}: {tried_summary(lookups)}", lookups)


def plan_probes(
    ctx: Context, dns_targets: list[Target], host_address: str | None = None
) -> list[Plan]:
    """One probe per transport: DNS's first target for it, else one derived from the registrar
    (at ``host_address``, when DNS gave no target for the registrar host itself)."""
    registrar = ctx.settings.target
    assert registrar is not None  # requires=("registrar",)
    configured = tuple(ctx.settings.effective_transports)
    plans = []
    for transport in ALL_TRANSPORTS:
        found = next((t for t in dns_targets if t.transport == transport), None)
        address: str | None
        if found is not None:
            host, port, address, source = found.host, found.port, found.address, "dns"
        else:
            # Reuse an address DNS already gave for the registrar host (no second lookup).
            address = next((t.address for t in dns_targets if t.host == registrar.host), None)
            if address is None and is_ip(registrar.host):
                address = registrar.host
            address = address or host_address
            host, port, source = (
                registrar.host,
                derived_port(registrar, transport, configured),
                "derived",
            )
        plans.append(
            Plan(
                transport=transport,
                host=host,
                port=port,
                address=address,
                source=source,
                server_hostname=registrar.host,
                ca=ctx.settings.ca,
                probe_id=sipwire.probe_id(ctx.run_id, transport),
                user_agent=ctx.user_agent,
            )
        )
    return plans


def _run_with_deadline(
    fn: Callable[[], T], deadline: float, clock: Callable[[], float]
) -> tuple[T | None, str | None]:
    """fn() in a daemon thread, given until ``deadline``: (its value, what went wrong)."""
    box: list[T] = []
    failure: list[str] = []

    def call() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # noqa: BLE001 - a DNS bug must not hide the transport evidence
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=call, daemon=True, name="sipdiag-options-dns")
    thread.start()
    thread.join(max(0.0, deadline - clock()))
    if box:
        return box[0], None
    return None, failure[0] if failure else DNS_UNFINISHED


def check_options(ctx: Context) -> CheckResult:
    settings = ctx.settings
    registrar = settings.target
    assert registrar is not None  # requires=("registrar",)
    clock = ctx.monotonic
    end = ctx.deadline - RESERVE
    # DNS may take half of a probe's time at most; a probe then still gets the other half.
    dns_deadline = min(end - PROBE_TIMEOUT / 2, clock() + PROBE_TIMEOUT)
    dns_end = min(end, max(dns_deadline, clock() + 0.2))
    dns_ctx = replace(ctx, deadline=dns_end - DNS_JOIN_SLACK)  # the resolver ends by itself
    found, dns_error = _run_with_deadline(lambda: find_probe_targets(dns_ctx), dns_end, clock)
    if found is None:
        found = Found([], unresolved=dns_error)
    probe_deadline = clock() + min(PROBE_TIMEOUT, max(0.0, end - clock()))
    now = ctx.now().timestamp() - clock()  # wall clock = monotonic + this offset
    probes = {
        plan.transport: Probe(plan, probe_deadline, clock, lambda: now + clock())
        for plan in plan_probes(ctx, found.targets, found.host_address)
    }
    # A derived target without an address has nowhere to go: no fallback to the OS resolver,
    # which may not know what --dns-server knows.
    threads = {
        t: threading.Thread(target=probe.run, daemon=True, name=f"sipdiag-options-{t}")
        for t, probe in probes.items()
        if probe.plan.address is not None
    }
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, end - clock()))
    results = {}
    for t, probe in probes.items():
        results[t] = dict(probe.out)
        if t not in threads:
            results[t].update(outcome=_unresolved_outcome(found), error=found.unresolved)
        elif threads[t].is_alive():  # its sockets time out soon
            results[t].update(outcome=NOT_FINISHED, error="still running at the deadline")
    configured = tuple(settings.effective_transports)
    return verdict(results, configured, registrar, bool(settings.ca), dns_error, found.lookups)


def _unresolved_outcome(found: Found) -> str:
    """No address because time ran out is no evidence; an answer without one is."""
    if found.unresolved == DNS_UNFINISHED:
        return NOT_FINISHED
    if found.lookups and all(q["error"] == DEADLINE_REACHED for q in found.lookups):
        return NOT_FINISHED
    return ERROR


def verdict(
    results: Mapping[str, dict[str, Any]],
    configured: tuple[str, ...],
    registrar: Registrar,
    ca_given: bool = False,
    dns_error: str | None = None,
    host_lookups: list[dict[str, Any]] | None = None,
) -> CheckResult:
    """Status, summary, hint and details from the three transports' results (pure)."""
    local_ips = {t: _local_ip(r) for t, r in results.items()}
    public = sorted(
        {
            r["received"]
            for t, r in results.items()
            if r.get("received") and not _same_ip(r["received"], local_ips[t])
        }
    )
    details: dict[str, Any] = {
        "registrar": registrar.host,
        "configured_transports": list(configured),
        "transports": {t: results[t] for t in ALL_TRANSPORTS if t in results},
        "public_addresses": public,
        "local_address": next((ip for ip in local_ips.values() if ip), None),
        "call_ids": [r["call_id"] for r in results.values() if r.get("call_id")],
    }
    if dns_error:
        details["dns_error"] = dns_error
    if host_lookups:  # the registrar host's A/AAAA, asked for the derived targets
        details["host_lookups"] = host_lookups
    summary = "; ".join(_summary_part(t, results[t]) for t in ALL_TRANSPORTS if t in results)
    bad = [t for t in configured if t in results and not _usable(results[t])]
    evidence = [t for t in bad if results[t]["outcome"] != NOT_FINISHED]
    if evidence:
        hint = _hint(evidence[0], results, registrar, ca_given, suggest_switch=True)
        return CheckResult(Status.FAIL, summary, details, hint)
    if bad:
        return CheckResult(Status.ERROR, summary, details, "re-run with a larger --timeout")
    spare = [
        t
        for t in ALL_TRANSPORTS
        if t not in configured
        and t in results
        and results[t]["outcome"] != NOT_FINISHED
        and not _usable(results[t])
    ]
    if spare:
        hint = _hint(spare[0], results, registrar, ca_given, suggest_switch=False)
        works = "/".join(t.upper() for t in configured)
        return CheckResult(
            Status.WARN, summary, details, f"{works} works; {spare[0].upper()} would not: {hint}"
        )
    return CheckResult(Status.PASS, summary, details)


def _local_ip(r: Mapping[str, Any]) -> str | None:
    local = r.get("local")
    return str(local).rsplit(":", 1)[0].strip("[]") if local else None


def _same_ip(a: str, b: str | None) -> bool:
    if b is None:
        return False
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _usable(r: Mapping[str, Any]) -> bool:
    """Answered, and for TLS over a verified certificate: what a softphone could use."""
    return bool(r["outcome"] == ANSWERED)


def _summary_part(transport: str, r: Mapping[str, Any]) -> str:
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
    label = {
        REFUSED: "refused",
        UNREACHABLE: "unreachable",
        TLS_FAILED: "handshake failed",
        NOT_FINISHED: "not finished",
    }
    return f"{transport} {label.get(outcome, 'error')} ({r['error']})"


_PROTO = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


def _hint(
    transport: str,
    results: Mapping[str, dict[str, Any]],
    registrar: Registrar,
    ca_given: bool,
    suggest_switch: bool,
) -> str:
    """The next concrete action for ``transport``'s problem."""
    r = results[transport]
    host = registrar.host_literal  # IPv6 in brackets
    port = r["target"].rsplit(":", 1)[1]
    proto = "TCP" if transport == "tls" else _PROTO[transport]
    where = f"{proto} {port}{' (SIP over TLS)' if transport == 'tls' else ''} to {host}"
    working = [t for t in ALL_TRANSPORTS if t != transport and _usable(results[t])]
    switch = f", or re-run with --transport {working[0]}" if working and suggest_switch else ""
    outcome = r["outcome"]
    if outcome == TLS_UNTRUSTED:
        return _tls_hint(r, host, ca_given)
    if outcome == TIMEOUT and all(x["code"] is None for x in results.values()):
        return (
            f"nothing answers at {host}: allow outbound SIP (UDP 5060, TCP 5060, TLS 5061) to "
            "it in the firewall/VPN, and check that it is the right registrar"
        )
    if outcome == TIMEOUT:
        return f"allow outbound {where} in the firewall{switch}"
    if outcome == REFUSED:
        return (
            f"{host} refused {_PROTO[transport]} {port}: check the registrar's port and allow "
            f"outbound {where} in the firewall{switch}"
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


def _tls_hint(r: Mapping[str, Any], host: str, ca_given: bool) -> str:
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
