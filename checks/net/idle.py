"""net.idle: do calls still reach us after the softphone has been quiet? (opt-in: --idle S,...)

For each idle period, one after another: register a fresh binding of our own (UDP, and TCP/TLS
when configured) as a softphone does (Expires 3600: the 200 OK's expires is the platform's
registration interval), send nothing at all for the period (no keep-alive, no re-REGISTER),
then send sip.inbound's OPTIONS to the agent's own address from another socket, so the answer
can only arrive if the NAT or firewall still holds the path; then remove the binding. Under
issue 10's rule: only when the account has no other binding, or with --register-binding.

With --stun naming an RFC 5780 server, the UDP mapping's lifetime is also measured without the
registrar (checks/wire/mapping.py), in parallel, on a ladder of waits within the longest period.

network.nat_binding_short: a request is lost after a period shorter than the registration
interval, so between re-REGISTERs offers are lost.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from dataclasses import dataclass
from typing import Any

from checks.net.stun import configured_servers
from checks.sip.bindings import REPLACED_ACTION, contacts_text, missing_from, queries_of
from checks.sip.inbound import (
    CLEANUP,
    INBOUND_WAIT,
    Plan,
    blocked,
    plan_from_register,
    said,
    who_answered,
)
from checks.wire import sip as sipwire
from checks.wire.sipua import (
    RUN_HEADER,
    TOKEN_HEADER,
    Binder,
    Channel,
    Dialogless,
    Listener,
    Server,
    our_contact,
)
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped, warned

SOFTPHONE_EXPIRES = 3600  # what softphones ask for by default (PJSIP, baresip, Linphone)
HOLD_MARGIN = 30  # s our binding outlives its period (then a refresh shortened it to this)
STEP = 1.0  # s between progress notes during a wait
SETUP = 0.5  # s a registration takes at most on a working path (for the budget check)
KEEPALIVE_HINT = 15  # s: a keep-alive interval below any NAT's UDP timeout seen in the field


@dataclass
class Leg:
    """One transport's binding during one period."""

    transport: str
    channel: Channel
    binder: Binder
    listener: Listener | None = None
    thread: threading.Thread | None = None
    record: dict[str, Any] | None = None


def _servers(ctx: Context, plan: Plan) -> dict[str, Server]:
    """A server per configured transport whose REGISTER query was accepted (UDP, TCP, TLS)."""
    out: dict[str, Server] = {}
    for q in queries_of(ctx.results.get("sip.register")):
        target, transport = q.get("target"), q.get("transport")
        if q.get("outcome") != "ok" or not target or transport not in ("udp", "tcp", "tls"):
            continue
        address = target.get("address") or plan.server.address
        out[transport] = Server(transport, target["host"], target["port"], address, plan.server.ca)
    return out or {plan.server.transport: plan.server}


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _wait(ctx: Context, seconds: float, label: str) -> bool:
    """Stay silent ``seconds``; False when Ctrl-C (ctx.stop) or the deadline ended it early."""
    end = ctx.monotonic() + seconds
    while True:
        left = end - ctx.monotonic()
        if left <= 0:
            return True
        if ctx.monotonic() >= ctx.deadline:
            return False
        ctx.note(f"net.idle: {label}: {left:.0f} s left")
        if ctx.stop.wait(min(STEP, left)):
            return False


def run_period(
    ctx: Context, plan: Plan, servers: dict[str, Server], seconds: float, index: int
) -> list[dict[str, Any]]:
    """One idle period over every transport: bindings, a control request (it must arrive right
    after registering, else a later loss says nothing about idle time), silence, the request,
    clean-up."""
    legs: list[Leg] = []
    records: list[dict[str, Any]] = []
    token = f"{ctx.run_id[:8]}i{index}"
    started = _iso(ctx.now())
    try:
        for transport, server in servers.items():
            record: dict[str, Any] = {
                "seconds": seconds,
                "transport": transport,
                "arrived": None,
                "control_arrived": None,
                "skipped": None,
                "expires_granted": None,
                "closed_by_network": False,
                "started_at": started,
                "checked_at": None,
            }
            records.append(record)
            leg = _register_leg(ctx, plan, server, seconds, f"{token}{transport}", record)
            if leg is not None:
                legs.append(leg)
        _drop_replaced(legs)
        live = [leg for leg in legs if leg.record and not leg.record["skipped"]]
        for leg in live:
            leg.listener = Listener(
                leg.channel, token, ctx.user_agent, leg.binder.registration.contact
            )
            leg.thread = threading.Thread(
                target=leg.listener.run, args=(ctx.deadline,), daemon=True
            )
            leg.thread.start()
        if not live:
            return records
        _probe(ctx, plan, live, f"{token}c", servers, control=True)
        live = [leg for leg in live if leg.record and leg.record["control_arrived"]]
        if not live:
            return records
        names = "/".join(leg.transport.upper() for leg in live)
        if not _wait(ctx, seconds, f"idle {seconds:g} s on {names}"):
            for leg in live:
                assert leg.record is not None
                leg.record["skipped"] = "interrupted" if ctx.stop.is_set() else "out of time"
            return records
        _probe(ctx, plan, live, f"{token}p", servers, control=False)
    finally:
        _clean_up(ctx, legs)
        ctx.note("")
    return records


def _register_leg(
    ctx: Context, plan: Plan, server: Server, seconds: float, tag: str, record: dict[str, Any]
) -> Leg | None:
    clock = ctx.monotonic
    try:
        ch = Channel(server, clock, timeout=min(2.0, max(0.1, ctx.remaining())))
    except OSError as exc:
        record["skipped"] = f"cannot connect: {exc.strerror or exc}"
        return None
    probe = sipwire.probe_id(ctx.run_id[:36], tag)
    binder = Binder(ch, plan.account, server, probe, tag, stop=ctx.stop)
    leg = Leg(server.transport, ch, binder, record=record)
    reg = binder.register(SOFTPHONE_EXPIRES, min(ctx.deadline, clock() + 2.0))
    record["call_id"] = reg.call_id
    record["expires_granted"] = reg.expires
    record["contact"] = reg.contact.strip("<>")
    if not reg.ok:
        record["skipped"] = f"REGISTER got {said(reg.code, reg.reason or reg.error)}"
        return leg  # still un-REGISTERed: a late 200 may have made a binding
    replaced = missing_from(plan.bindings, reg.listed, server.transport)
    if replaced:
        record["replaced_bindings"] = replaced
    held = int(seconds) + HOLD_MARGIN
    if reg.expires and reg.expires > held:
        # The interval is known; hold ours only as long as the test needs, so a lost
        # un-REGISTER leaves nothing for long. Still before the silence.
        refreshed = binder.refresh(held, min(ctx.deadline, clock() + 2.0))
        record["expires_held"] = refreshed.expires
    return leg


def _clean_up(ctx: Context, legs: list[Leg]) -> None:
    """Stop the listeners and un-REGISTER every binding we may have made, all legs at once,
    within one end time: 1 s after Ctrl-C (the runner waits 1.5 s), else 2 s, never past the
    deadline."""
    clock = ctx.monotonic
    now = clock()
    end = now + 1.0 if ctx.stop.is_set() else min(now + 2.0, max(now + 0.3, ctx.deadline - 0.05))
    for leg in legs:
        if leg.listener is not None:
            leg.listener.stop.set()
    for leg in legs:
        if leg.thread is not None:
            leg.thread.join(max(0.0, min(0.3, end - clock())))

    def remove(leg: Leg) -> None:
        if leg.binder.sent_contact:
            removed = leg.binder.unregister(end)
            if leg.record is not None:
                leg.record["removed"] = removed

    threads = [threading.Thread(target=remove, args=(leg,), daemon=True) for leg in legs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end + 0.1 - clock()))
    for leg in legs:
        leg.channel.close()
        leg.binder.ch.close()  # a reconnection's, when the first was gone


def _drop_replaced(legs: list[Leg]) -> None:
    """A registrar that keeps one binding per account replaced our earlier transports' bindings
    with the last one: those transports are not tested in this period (and say why)."""
    live = [leg for leg in legs if leg.record and not leg.record["skipped"]]
    if len(live) < 2:
        return
    listed = " ".join(live[-1].binder.registration.listed)
    for leg in live[:-1]:
        tag = f";sipdiag={leg.binder.tag}"
        if tag not in listed and leg.record is not None:
            leg.record["skipped"] = (
                "this registrar keeps one binding per account: the "
                f"{live[-1].transport.upper()} binding replaced it"
            )


def _probe(
    ctx: Context,
    plan: Plan,
    live: list[Leg],
    token: str,
    servers: dict[str, Server],
    control: bool,
) -> None:
    """One OPTIONS to the AOR from a new socket; it forks to each of our bindings. The control
    (right after registering) must arrive; after the silence, a request the platform took but
    that did not arrive is lost, while a refusal or no answer at all tests nothing."""
    clock = ctx.monotonic
    server = servers.get("udp") or plan.server
    field = "control_arrived" if control else "arrived"
    try:
        sender = Channel(server, clock, timeout=min(2.0, max(0.1, ctx.remaining())))
    except OSError as exc:
        for leg in live:
            assert leg.record is not None
            leg.record["skipped"] = f"cannot send the request: {exc.strerror or exc}"
        return
    try:
        series = Dialogless(
            sender,
            plan.account,
            sipwire.probe_id(ctx.run_id[:36], token),
            headers=[f"{TOKEN_HEADER}: {token}", f"{RUN_HEADER}: {ctx.run_id}"],
            stop=ctx.stop,
        )
        for leg in live:
            assert leg.listener is not None
            leg.listener.expect(token, series.call_id, clock())
        until = min(ctx.deadline - CLEANUP, clock() + INBOUND_WAIT)
        outcome = series.send(
            "OPTIONS",
            plan.account.aor,
            until,
            to_uri=plan.account.aor,
            contact=our_contact(sender, plan.account.user, f"{token}s"),
        )
        for leg in live:  # a forked branch may trail the first answer
            assert leg.listener is not None
            leg.listener.arrived.wait(max(0.0, min(until, clock() + 0.3) - clock()))
        if ctx.stop.is_set():  # Ctrl-C during the request: nothing can be concluded
            for leg in live:
                assert leg.record is not None
                if leg.listener is not None and leg.listener.arrival is None:
                    leg.record["skipped"] = "interrupted"
            return
        by, evidence = who_answered(outcome.answer, plan, own=True)
        final = {"code": outcome.code, "reason": outcome.reason, "by": by, "by_evidence": evidence}
        took = blocked(
            {"mode": "own_binding", "final": final if outcome.code else None,
             "platform_took": bool(outcome.provisional) or outcome.code is not None
             or outcome.challenged}
        )  # fmt: skip
        for leg in live:
            assert leg.listener is not None and leg.record is not None
            arrival = leg.listener.arrival
            record = leg.record
            record[f"{'control' if control else 'probe'}_call_id"] = series.call_id
            if arrival is not None:
                record[field] = True
                if not control:
                    record.update(source=arrival.source, after_ms=arrival.after_ms)
            elif took:  # the platform tried: the request was lost on the way to us
                record[field] = False
            else:
                record["skipped"] = _not_tested(final, outcome.error, control)
            if not control:
                record["checked_at"] = _iso(ctx.now())
                record["final"] = final
            if leg.listener.closed:
                record["closed_by_network"] = True
                record["closed"] = leg.listener.closed
            if control and record[field] is False:
                record["skipped"] = (
                    "the request did not arrive even right after registering: inbound does not "
                    "work at all here (see sip.inbound), so idle time cannot be measured"
                )
    finally:
        sender.close()


def _not_tested(final: dict[str, Any], error: str | None, control: bool) -> str:
    code = final.get("code")
    if code is not None and code < 300 and final.get("by") == "registrar":
        return "the platform answers OPTIONS itself (no fork)"
    if code is not None:
        return f"the platform refused the request itself ({said(code, final.get('reason'))})"
    return f"the platform did not answer the request ({error or 'silence'})"


def check_idle(ctx: Context) -> CheckResult:
    periods = list(ctx.settings.idle_periods)
    plan = plan_from_register(ctx)
    details: dict[str, Any] = {
        "periods": [],
        "registration_interval": None,
        "stun": None,
        "problem": None,
    }
    stun_thread, stun_box = _start_stun(ctx, periods)
    registrar_note = None
    if isinstance(plan, CheckResult):
        registrar_note = plan.summary
    elif plan.bindings and not ctx.settings.register_binding:
        registrar_note = (
            f"the account has {len(plan.bindings)} other binding(s): a binding of ours could "
            "replace the softphone's (--register-binding opts in)"
        )
    if registrar_note is None and not isinstance(plan, CheckResult):
        servers = _servers(ctx, plan)
        for index, seconds in enumerate(periods):
            # The period, registering, the shortest conclusive wait and the clean-up must fit.
            if ctx.stop.is_set() or ctx.remaining() < seconds + SETUP + 1.0 + CLEANUP:
                details["periods"].append(
                    {
                        "seconds": seconds,
                        "transport": None,
                        "skipped": "no time left in --timeout",
                        "arrived": None,
                    }
                )
                continue
            details["periods"].extend(run_period(ctx, plan, servers, seconds, index))
    else:
        details["registrar_skipped"] = registrar_note
    if stun_thread is not None:
        stun_thread.join(max(0.0, ctx.remaining() - 0.1))
        details["stun"] = stun_box[0] if stun_box else None
    granted = [p["expires_granted"] for p in details["periods"] if p.get("expires_granted")]
    details["registration_interval"] = min(granted) if granted else None
    return _judge(ctx, details, registrar_note)


def _start_stun(
    ctx: Context, periods: list[float]
) -> tuple[threading.Thread | None, list[dict[str, Any]]]:
    """The RFC 5780 mapping-lifetime ladder, in parallel with the registrar part."""
    box: list[dict[str, Any]] = []
    if not ctx.settings.stun:
        return None, box
    try:
        from checks.wire.mapping import ladder, mapping_lifetime
    except ImportError:  # pragma: no cover - the module ships with sipdiag
        return None, box
    server = configured_servers(ctx)[0]

    def run() -> None:
        try:
            address = str(socket.getaddrinfo(server.host, server.port)[0][4][0])
        except OSError as exc:
            box.append({"server": server.text, "error": f"does not resolve: {exc}"})
            return
        waits = ladder(periods, ctx.remaining())
        found = mapping_lifetime(
            (address, server.port), waits, ctx.deadline - 0.2, clock=ctx.monotonic, stop=ctx.stop
        )
        box.append({**found, "server": server.text})

    thread = threading.Thread(target=run, name="net.idle-stun", daemon=True)
    thread.start()
    return thread, box


def _judge(ctx: Context, details: dict[str, Any], registrar_note: str | None) -> CheckResult:
    periods = details["periods"]
    interval = details["registration_interval"]
    tested = [p for p in periods if p.get("arrived") is not None]
    lost = [p for p in tested if p["arrived"] is False]
    stun = details.get("stun") or {}
    measured = not stun.get("error") and any(p.get("answered") for p in stun.get("probes") or [])
    lines = [_transport_line(t, tested) for t in dict.fromkeys(p["transport"] for p in tested)]
    if measured:
        most = stun.get("lifetime_at_most")
        least = stun.get("lifetime_at_least") or 0
        lines.append(
            f"UDP mapping at the STUN server: lives {least:g}-{most:g} s"
            if most is not None
            else f"UDP mapping at the STUN server: lives at least {least:g} s"
        )
    replaced = [b for p in periods for b in p.get("replaced_bindings") or []]
    if replaced:
        details["problem"] = "sip.binding_replaced"
        details["replaced_bindings"] = replaced
        return failed(
            f"the registrar's 200 OK to our idle test binding no longer lists "
            f"{contacts_text(replaced)}",
            REPLACED_ACTION,
            **details,
        )
    short = [p for p in lost if interval is None or p["seconds"] < interval]
    most = stun.get("lifetime_at_most") if measured else None
    stun_short = most is not None and interval is not None and most < interval
    if short or (stun_short and not tested):
        details["problem"] = "network.nat_binding_short"
        return failed(
            "requests from the platform stop arriving after the softphone is quiet: "
            + "; ".join(lines)
            + (f" (registration interval {interval} s)" if interval else ""),
            _short_action(short, stun, details),
            **details,
        )
    if not tested and not measured:
        reason = registrar_note or next(
            (p.get("skipped") for p in periods if p.get("skipped")), "nothing could be tested"
        )
        if stun.get("error"):
            reason += f"; STUN: {stun['error']}"
        return skipped(f"no idle period could be tested: {reason}", _skip_hint(reason), **details)
    if lost:  # lost only after periods longer than the registration interval: harmless
        return warned(
            "; ".join(lines) + f": longer than the registration interval ({interval} s), so the "
            "softphone's re-REGISTER keeps the path open",
            "nothing to change unless the softphone registers less often",
            **details,
        )
    if most is not None and not tested:  # a short mapping, but no interval to compare with
        return warned(
            "; ".join(lines) + f"; the registrar part did not run ({registrar_note}), so it "
            "cannot be compared with the registration interval",
            "re-run with --register-binding to test through the registrar, or check that the "
            f"softphone sends keep-alives more often than every {most:g} s",
            **details,
        )
    skipped_part = f" (registrar part skipped: {registrar_note})" if registrar_note else ""
    return passed(
        "requests from the platform still arrive after the softphone has been quiet: "
        + "; ".join(lines)
        + skipped_part,
        **details,
    )


def _transport_line(transport: str, tested: list[dict[str, Any]]) -> str:
    mine = [p for p in tested if p["transport"] == transport]
    ok = [p["seconds"] for p in mine if p["arrived"]]
    bad = [p["seconds"] for p in mine if not p["arrived"]]
    text = f"{transport.upper()}: arrived after {', '.join(f'{s:g}' for s in ok)} s" if ok else ""
    if bad:
        text += ("; " if text else f"{transport.upper()}: ") + (
            f"lost after {', '.join(f'{s:g}' for s in bad)} s"
        )
    return text


def _skip_hint(reason: str) -> str:
    if "--register-binding" in reason:
        return "re-run with --register-binding (a one-binding registrar may drop the softphone's)"
    return "see sip.register; re-run with a larger --timeout if the periods did not fit"


def _short_action(short: list[dict[str, Any]], stun: dict[str, Any], d: dict[str, Any]) -> str:
    udp = [p for p in short if p["transport"] == "udp"]
    streams = [p for p in short if p["transport"] != "udp"]
    ok_udp = [
        p["seconds"] for p in d["periods"] if p.get("transport") == "udp" and p.get("arrived")
    ]
    parts = []
    if udp or (stun.get("lifetime_at_most") is not None):
        low = max(ok_udp, default=stun.get("lifetime_at_least") or 0)
        high = min([p["seconds"] for p in udp] or [stun.get("lifetime_at_most") or 0])
        # Half the longest silence that still worked, as RFC 5626 4.4.1 keeps well inside it.
        keep = max(1, min(KEEPALIVE_HINT, int(low // 2) if low else KEEPALIVE_HINT))
        parts.append(
            f"this network forgets UDP mappings after {low:g}-{high:g} s of silence; make the "
            f"softphone send keepalives every <= {keep} s, or use TCP/TLS, or raise the "
            "firewall's UDP timeout to >= 300 s (RFC 4787)"
        )
    for p in streams:
        parts.append(
            f"the idle {p['transport'].upper()} connection was closed or forgotten within "
            f"{p['seconds']:g} s (a NAT/firewall idle timeout, or the platform's own connection "
            f"lifetime): enable the softphone's {p['transport'].upper()} keep-alives (CRLF, RFC "
            "5626), or raise the firewall's idle TCP timeout"
        )
    return "; ".join(parts)
