"""net.sip-options: one raw OPTIONS to each of the registrar's targets, per transport, side by
side.

Probed are the transports the softphone is configured to use, and those DNS publishes a
NAPTR/SRV target for (a softphone may be sent there); never a guessed port for any other
transport, which would only find what does not listen there, or a local service. With
--probe-all-transports the other transports are probed too, for information only. Within a
transport every target DNS gave is probed (the first MAX_TARGETS_PER_TRANSPORT, in preference
order), so a preferred SRV target that is down shows next to the one a softphone would fail
over to. The wire format lives in checks/wire/sip.py, one probe's sockets in
checks/wire/sipclient.py, the certificate evidence in checks/wire/tls.py and the verdict in
checks/net/sip_options_verdict.py; this module plans the probes and runs them side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from checks.net.dns import targets_for
from checks.net.sip_options_verdict import (
    ALL_TRANSPORTS,
    WHY_ALL_TRANSPORTS,
    WHY_CONFIGURED,
    WHY_DNS,
    verdict,
)
from checks.wire import sip as sipwire
from checks.wire.budget import PROBE_TIMEOUT, RESERVE
from checks.wire.dns import (
    DEADLINE_REACHED,
    DEFAULT_PORTS,
    Target,
    lookup_addresses,
    resolve,
    tried_summary,
)
from checks.wire.sipclient import ERROR, NOT_FINISHED, Plan, Probe
from diag.config import Settings
from diag.context import Context
from diag.model import CheckResult
from diag.target import Registrar, is_ip

# A softphone rarely gets further down the list; more targets would only add sockets and noise.
MAX_TARGETS_PER_TRANSPORT = 3
DNS_UNFINISHED = "name resolution did not finish in time"
DNS_JOIN_SLACK = 0.05  # the resolver's own deadline is this much before we stop waiting for it
# How net.dns says DNS itself published a transport's targets (else: the host's A/AAAA at the
# default port, which is a guess, not a publication).
PUBLISHED_VIA = ("NAPTR+SRV", "SRV")
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


def probe_reasons(settings: Settings, discovered: Collection[str]) -> dict[str, str]:
    """The transports to probe, in ALL_TRANSPORTS order, each with why: configured, published
    by DNS (``discovered``), or only asked for by --probe-all-transports."""
    configured = settings.effective_transports
    why = {}
    for transport in ALL_TRANSPORTS:
        if transport in configured:
            why[transport] = WHY_CONFIGURED
        elif transport in discovered:
            why[transport] = WHY_DNS
        elif settings.probe_all_transports:
            why[transport] = WHY_ALL_TRANSPORTS
    return why


def find_targets(ctx: Context) -> tuple[list[Target], tuple[str, ...]]:
    """targets_for(ctx), plus RFC 3263 targets for the transports the user did not configure:
    (the targets to probe, the unconfigured transports DNS published a NAPTR/SRV target for).

    Without --probe-all-transports, an unconfigured transport DNS published nothing for gets no
    target (the A/AAAA fallback at its default port is a guess). With an explicit port or an IP
    address RFC 3263 does no SRV lookup, so DNS publishes nothing more: plan_probes() derives
    the targets --probe-all-transports asks for instead.
    """
    found = targets_for(ctx)
    registrar = ctx.settings.target
    assert registrar is not None
    configured = ctx.settings.effective_transports
    dns = ctx.results.get("net.dns")
    via: dict[str, str] = dict(dns.details.get("via") or {}) if dns is not None else {}
    have = {t.transport for t in found}
    missing = tuple(t for t in ALL_TRANSPORTS if t not in configured and t not in have)
    if missing and registrar.port is None and not is_ip(registrar.host):
        more = resolve(registrar, missing, ctx.settings.dns_server, ctx.deadline)
        via.update({t: route.via for t, route in more.routes.items()})
        found = [*found, *more.targets]
    discovered = tuple(
        t
        for t in ALL_TRANSPORTS
        if t not in configured
        and via.get(t) in PUBLISHED_VIA
        and any(x.transport == t for x in found)
    )
    wanted = probe_reasons(ctx.settings, discovered)
    return [t for t in found if t.transport in wanted], discovered


@dataclass
class Found:
    """What name resolution gave net.sip-options."""

    targets: list[Target]
    discovered: tuple[str, ...] = ()  # unconfigured transports DNS published a target for
    host_address: str | None = None  # the registrar host's address, for derived targets
    unresolved: str | None = None  # why the registrar host has no address
    lookups: list[dict[str, Any]] = field(default_factory=list)  # the queries for that address


def find_probe_targets(ctx: Context) -> Found:
    """find_targets(ctx), plus the registrar host's address for the transports to probe that DNS
    gave no target for: asked of the resolver net.dns uses (so --dns-server counts), by
    ctx.deadline. One address is enough for those: failover is judged among the targets DNS
    gave."""
    targets, discovered = find_targets(ctx)
    registrar = ctx.settings.target
    assert registrar is not None
    host = registrar.host
    if is_ip(host):
        return Found(targets, discovered, host)
    known = next((t.address for t in targets if t.host == host), None)
    wanted = set(probe_reasons(ctx.settings, discovered))
    if known is not None or {t.transport for t in targets} >= wanted:
        return Found(targets, discovered, known)
    addresses, lookups = lookup_addresses(host, ctx.settings.dns_server, ctx.deadline)
    if addresses:
        return Found(targets, discovered, addresses[0], lookups=lookups)
    unresolved = f"cannot resolve {host}: {tried_summary(lookups)}"
    return Found(targets, discovered, None, unresolved, lookups)


def plan_probes(
    ctx: Context,
    dns_targets: list[Target],
    host_address: str | None = None,
    discovered: Collection[str] = (),
) -> list[Plan]:
    """Per transport to probe (probe_reasons()), in preference order: DNS's first
    MAX_TARGETS_PER_TRANSPORT targets for it, else one derived from the registrar (at
    ``host_address``, when DNS gave no target for the registrar host itself).

    The first probe of a transport has the probe id ``<run_id>-<transport>``, the next ones
    ``<run_id>-<transport>-2`` and ``-3``: every request of the run can be found by its id.
    """
    registrar = ctx.settings.target
    assert registrar is not None  # requires=("registrar",)
    configured = tuple(ctx.settings.effective_transports)
    plans = []
    for transport in probe_reasons(ctx.settings, discovered):
        found = [t for t in dns_targets if t.transport == transport]
        places: list[tuple[str, int, str | None, str]] = [
            (t.host, t.port, t.address, "dns") for t in found[:MAX_TARGETS_PER_TRANSPORT]
        ]
        if not places:
            # Reuse an address DNS already gave for the registrar host (no second lookup).
            address = next((t.address for t in dns_targets if t.host == registrar.host), None)
            if address is None and is_ip(registrar.host):
                address = registrar.host
            port = derived_port(registrar, transport, configured)
            places = [(registrar.host, port, address or host_address, "derived")]
        for rank, (host, port, address, source) in enumerate(places, start=1):
            label = transport if rank == 1 else f"{transport}-{rank}"
            plans.append(
                Plan(
                    transport=transport,
                    host=host,
                    port=port,
                    address=address,
                    source=source,
                    server_hostname=registrar.host,
                    ca=ctx.settings.ca,
                    probe_id=sipwire.probe_id(ctx.run_id, label),
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
    # Every probe of every transport at once, each under the same per-probe deadline.
    plans = plan_probes(ctx, found.targets, found.host_address, found.discovered)
    probes = [Probe(plan, probe_deadline, clock, lambda: now + clock()) for plan in plans]
    # A derived target without an address has nowhere to go: no fallback to the OS resolver,
    # which may not know what --dns-server knows.
    threads = {
        i: threading.Thread(
            target=probe.run, daemon=True, name=f"sipdiag-options-{probe.plan.transport}-{i}"
        )
        for i, probe in enumerate(probes)
        if probe.plan.address is not None
    }
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, end - clock()))
    per_target: dict[str, list[dict[str, Any]]] = {}
    for i, probe in enumerate(probes):
        out = dict(probe.out)
        if i not in threads:
            out.update(outcome=_unresolved_outcome(found), error=found.unresolved)
        elif threads[i].is_alive():  # its sockets time out soon
            out.update(outcome=NOT_FINISHED, error="still running at the deadline")
        per_target.setdefault(probe.plan.transport, []).append(out)
    configured = tuple(settings.effective_transports)
    why = probe_reasons(settings, found.discovered)
    return verdict(
        per_target, configured, registrar, bool(settings.ca), dns_error, found.lookups, why
    )


def _unresolved_outcome(found: Found) -> str:
    """No address because time ran out is no evidence; an answer without one is."""
    if found.unresolved == DNS_UNFINISHED:
        return NOT_FINISHED
    if found.lookups and all(q["error"] == DEADLINE_REACHED for q in found.lookups):
        return NOT_FINISHED
    return ERROR
