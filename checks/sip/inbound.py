"""sip.inbound: does a request from the platform reach the softphone?

One OPTIONS (or, with --inbound-call, one INVITE) to the agent's own address-of-record, sent to
the registrar as any request: the platform's location service forks it to every binding, over
the very path a call offer takes. When the softphone is registered, its answer coming back
through the platform is the proof; nothing rings (softphones answer OPTIONS silently). When no
other binding exists, and only then, a binding of our own is registered, the request must
reach its socket, and the binding is removed again (checks/wire/sipua.py does the SIP).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any, cast

from checks.sip.bindings import (
    REPLACED_ACTION,
    contacts_text,
    describe,
    missing_from,
    other_bindings,
    queries_of,
    seen_from,
    unroutable,
)
from checks.wire import sip as sipwire
from checks.wire.sip import SipMessage
from checks.wire.sipua import (
    RUN_HEADER,
    TOKEN_HEADER,
    Account,
    Binder,
    Channel,
    Dialogless,
    Listener,
    Outcome,
    Server,
    our_contact,
)
from diag import outcomes as o
from diag.context import Context
from diag.evidence import Binding, SeenFrom
from diag.model import CheckResult, failed, passed
from diag.model import skipped as _skipped

INBOUND_WAIT = 4.0  # s for a binding's answer through the platform (a healthy one: ms)
OWN_EXPIRES = 60  # s: our binding lives this long at most, should the un-REGISTER get lost
CLEANUP = 0.6  # s kept back from the deadline to remove our binding
BLOCKED_CODES = frozenset({408, 480, 477, 478, 487})  # plus any 5xx: the platform tried, no one
PLATFORM_CODES = frozenset({408, 477, 478})  # a request timeout or a send failure: the proxy's


@dataclass(frozen=True)
class Plan:
    """Where sip.inbound sends, as whom, and what sip.register's query told it."""

    server: Server
    account: Account
    bindings: list[Binding]  # the account's other bindings
    seen_from: SeenFrom | None  # the source address the registrar saw for our query
    registrar_server: str | None  # the registrar's own Server header (it answered the query)


def skipped(summary: str, hint: str, **details: Any) -> CheckResult:
    """A skip: never a finding, so its details say so too (problem: null)."""
    return _skipped(summary, hint, **{"problem": None, **details})


def plan_from_register(ctx: Context) -> Plan | CheckResult:
    """The request's route from sip.register's accepted query; a skip result when there is
    none (nothing a finding could rest on)."""
    s = ctx.settings
    if s.no_register:
        return skipped(
            "--no-register: sending a request as the account needs its credentials",
            "run without --no-register (sip.inbound registers nothing when a softphone is)",
        )
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env} or store it in the OS keyring (service 'sipdiag')",
        )
    register = ctx.results.get("sip.register")
    if register is None:
        return skipped(
            "sip.register did not run: the request follows its accepted REGISTER query",
            "run sip.register too (do not --skip it)",
        )
    queries = queries_of(register)
    accepted = next((q for q in queries if q.get("outcome") == o.OK and q.get("target")), None)
    if accepted is None:
        return skipped(
            "the registrar did not accept our REGISTER query (see sip.register), so no request "
            "was sent through it",
            "fix what sip.register reports first",
        )
    target = accepted["target"]
    address = target.get("address") or _resolve(target["host"], target["port"])
    if address is None:
        return skipped(f"{target['host']} does not resolve", "see net.dns")
    server = Server(accepted.get("transport", "udp"), target["host"], target["port"], address, s.ca)
    domain = (s.sip_uri or "").rpartition("@")[2] or target["host"]
    account = Account(
        user=s.user or "",
        domain=domain.strip("[]"),
        auth_user=s.auth_user or s.user or "",
        password=s.password,
        user_agent=ctx.user_agent,
    )
    seen = seen_from(accepted)
    return Plan(server, account, other_bindings(queries), seen, accepted.get("server"))


def _resolve(host: str, port: int) -> str | None:
    try:
        return str(socket.getaddrinfo(host, port)[0][4][0])
    except OSError:
        return None


def answered_by(answer: SipMessage | None, plan: Plan, own: bool) -> str | None:
    """ "binding" when a registered device sent ``answer``, "registrar" when the platform did."""
    return who_answered(answer, plan, own)[0]


def who_answered(answer: SipMessage | None, plan: Plan, own: bool) -> tuple[str | None, str | None]:
    """(binding|registrar|None, the evidence: contact, user-agent, ours, registrar-server,
    no-identity). Recorded, so that support can weigh it (an SBC that answers OPTIONS itself
    with a Server header of its own would look like a device)."""
    if answer is None:
        return None, None
    who = answer.first("user-agent") or answer.first("server")
    if plan.registrar_server and who == plan.registrar_server:
        return "registrar", "registrar-server"
    if own and who == plan.account.user_agent:  # our own binding's answer, relayed
        return "binding", "ours"
    contact = answer.first("contact") or ""
    if any(_same_device(contact, b["contact"]) for b in plan.bindings):
        return "binding", "contact"
    if own:  # only our own binding could answer, and it did not
        return "registrar", "not-ours"
    if who:
        return "binding", "user-agent"
    # No identity at all (PJSUA answers OPTIONS with none): a registrar that names itself in
    # every answer of its own (it did in the REGISTER query's) did not send this one.
    return ("binding", "no-identity") if plan.registrar_server else (None, None)


def _same_device(contact: str, binding: str) -> bool:
    def where(uri: str) -> str:
        uri = uri.split("<", 1)[-1].split(">", 1)[0]
        return uri.split(";", 1)[0].split("@")[-1].lower()

    return bool(contact) and where(contact) == where(binding)


def exchange(
    ctx: Context,
    plan: Plan,
    method: str,
    own: bool,
    wait: float,
    label: str = "in",
) -> dict[str, Any]:
    """Send ``method`` to the account's AOR through the registrar and see who answers; with
    ``own``, first register a binding of our own and watch for the request at its socket.
    Never leaves our binding behind (un-REGISTER in `finally`, within CLEANUP)."""
    token = uuid.uuid4().hex[:16]
    aor = plan.account.aor
    clock = ctx.monotonic
    end = ctx.deadline - CLEANUP
    out: dict[str, Any] = {
        "mode": "own_binding" if own else "softphone",
        "method": method,
        "transport": plan.server.transport,
        "token": token,
        "run_id": ctx.run_id,
        "request_uri": aor,
        "seen_from": plan.seen_from,
        "for_bindings": [b["contact"] for b in plan.bindings],
        # Bindings the platform cannot route back to (sip.bindings' rule), the likely reason.
        "unroutable": [
            b["contact"] for b in plan.bindings if unroutable(describe(b), plan.seen_from)
        ],
        "provisional": [],
        "final": None,
        "platform_took": False,
        "arrived": None,
        "call_ids": [],
        "registration": None,
        "error": None,
    }
    binder: Binder | None = None
    listener: Listener | None = None
    thread: threading.Thread | None = None
    channels: list[Channel] = []
    ruri = aor  # the AOR: the platform forks to every binding; a GRUU reaches ours alone
    held = ctx.held if own and ctx.held is not None and ctx.held.ok else None
    try:
        if held is not None:  # `sipdiag watch`'s binding, kept between samples
            out["registration"] = {
                "contact": held.contact.strip("<>"),
                "code": held.last.code,
                "reason": held.last.reason,
                "expires": held.last.expires,
                "held": True,
            }
            out["for_bindings"] = [held.contact.strip("<>")]
            listener = held.listener
        elif own:
            home = Channel(plan.server, clock, timeout=max(0.1, end - clock()))
            channels.append(home)
            tag = f"{ctx.run_id[:8]}{label}"
            binder = Binder(
                home, plan.account, plan.server, _pid(ctx, f"{label}-reg"), tag, stop=ctx.stop
            )
            # Beside a softphone (--inbound-call --register-binding), a GRUU reaches ours alone.
            instance = str(uuid.uuid4()) if plan.bindings else None
            reg = binder.register(OWN_EXPIRES, min(end, clock() + 2.0), instance)
            out["call_ids"].append(reg.call_id)
            out["registration"] = {
                "contact": reg.contact.strip("<>"),
                "code": reg.code,
                "reason": reg.reason,
                "expires": reg.expires,
                "contact_rewritten": reg.rewritten,
                "gruu": reg.gruu,
                "error": reg.error,
            }
            out["for_bindings"] = [reg.contact.strip("<>")]
            if method == "INVITE" and reg.gruu:
                ruri = out["request_uri"] = reg.gruu
            gone = missing_from(plan.bindings, reg.listed, plan.server.transport) if reg.ok else []
            if gone:
                out["replaced_bindings"] = gone
            if not reg.ok:
                out["error"] = f"our binding was not accepted ({reg.code} {reg.reason or ''})"
                return out
            listener = Listener(home, token, ctx.user_agent, reg.contact)
            thread = threading.Thread(target=listener.run, args=(end,), daemon=True)
            thread.start()
        sender = Channel(plan.server, clock, timeout=max(0.1, end - clock()))
        channels.append(sender)
        series = Dialogless(
            sender,
            plan.account,
            _pid(ctx, label),
            headers=[
                f"{TOKEN_HEADER}: {token}",
                f"{RUN_HEADER}: {ctx.run_id}",
                f"Subject: sipdiag inbound test {ctx.run_id}",
            ],
            stop=ctx.stop,
        )
        out["call_id"] = series.call_id
        out["call_ids"].append(series.call_id)
        out["sent_at"] = _iso(ctx.now())
        if listener is not None:
            listener.expect(token, series.call_id, clock())
        body = sipwire.sdp_offer(sender.local_ip, 9, token[:8]) if method == "INVITE" else ""
        contact = our_contact(sender, plan.account.user, f"{ctx.run_id[:8]}{label}s")

        cancelled: list[bool] = []

        def ringing(code: int, msg: SipMessage, d: Dialogless, ruri: str, branch: str) -> None:
            # No binding of ours to decline it: the softphone rings, so cancel at once.
            if method == "INVITE" and not own and code > 100 and not cancelled:
                d.cancel(ruri, branch, aor)
                cancelled.append(True)

        answer = series.send(
            method,
            ruri,
            min(end, clock() + wait),
            to_uri=aor,
            contact=contact,
            body=body,
            on_provisional=ringing,
        )
        answer.cancelled = bool(cancelled)
        if method == "INVITE" and answer.code is not None and 200 <= answer.code < 300:
            series.end_answered_call(cast(SipMessage, answer.answer), ruri, aor)
        if listener is not None and listener.arrival is None and answer.code is not None:
            listener.arrived.wait(max(0.0, min(0.2, end - clock())))  # it may trail the answer
        out.update(_outcome_record(answer, plan, own))
        if listener is not None:
            arrival = listener.arrival
            if arrival is not None:
                out["arrived"] = {
                    "source": arrival.source,
                    "transport": arrival.transport,
                    "after_ms": arrival.after_ms,
                    "same_connection": arrival.same_connection,
                    "answered": arrival.answered,
                    "subject": arrival.subject,
                    "run_header": arrival.run_header,
                }
            if listener.closed:
                out["connection_closed"] = listener.closed
            if listener.others:
                out["other_requests"] = listener.others
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
    finally:
        if listener is not None and held is None:
            listener.stop.set()
        if thread is not None:
            thread.join(0.3)
        if binder is not None and binder.sent_contact:
            # Whatever our REGISTER's answer was (a late 200 still made a binding); within the
            # runner's grace after Ctrl-C.
            until = clock() + 1.0 if ctx.stop.is_set() else max(clock() + 0.2, ctx.deadline - 0.1)
            removed = binder.unregister(until)
            if out["registration"] is not None:
                out["registration"]["removed"] = removed
            binder.ch.close()
        for ch in channels:
            ch.close()
    return out


def _outcome_record(answer: Outcome, plan: Plan, own: bool) -> dict[str, Any]:
    final = None
    if answer.code is not None:
        msg = answer.answer
        by, evidence = who_answered(msg, plan, own)
        final = {
            "code": answer.code,
            "reason": answer.reason,
            "by": by,
            "by_evidence": evidence,
            "user_agent": (msg.first("user-agent") or msg.first("server")) if msg else None,
            "rtt_ms": answer.rtt_ms,
        }
    return {
        "provisional": answer.provisional,
        "final": final,
        # A challenge counts: the platform read our request (a proxy sends no 100 Trying for
        # OPTIONS, and its 408 comes only after its own timer, often 30 s).
        "platform_took": bool(answer.provisional) or answer.code is not None or answer.challenged,
        "challenged": answer.challenged,
        "cancelled": answer.cancelled,
        "error": answer.error,
    }


def _pid(ctx: Context, label: str) -> str:
    return sipwire.probe_id(ctx.run_id[:36], label)


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def blocked(out: dict[str, Any]) -> bool:
    """The platform took the request (an answer of its own, or a fork) but no binding
    answered: a timeout (408), unavailable (480), a send failure (477/5xx), or nothing final."""
    if out.get("arrived") is not None:
        return False
    final = out.get("final")
    if final is None:
        return bool(out.get("platform_took"))
    code = int(final["code"])
    device = final.get("by") == "binding" and final.get("by_evidence") in ("contact", "user-agent")
    if code in PLATFORM_CODES or (500 <= code < 600 and not device):  # a proxy's, for a branch
        return True
    if final.get("by") == "binding" and out.get("mode") != "own_binding":
        return False  # e.g. a softphone on do-not-disturb answers 480 itself
    return code in BLOCKED_CODES


def check_inbound(ctx: Context) -> CheckResult:
    plan = plan_from_register(ctx)
    if isinstance(plan, CheckResult):
        return plan
    method = "INVITE" if ctx.settings.inbound_call else "OPTIONS"
    own = not plan.bindings or (method == "INVITE" and ctx.settings.register_binding)
    if ctx.watching and (not plan.bindings or ctx.settings.register_binding):
        # `sipdiag watch`: requests go to its kept binding (never one per sample), or nowhere.
        own = True
        if ctx.held is None or not ctx.held.ok:
            return skipped(
                "the watch's own binding is not registered at the moment (no softphone is)",
                "see sip.register; the watch registers again at its next refresh",
            )
    wait = min(INBOUND_WAIT, max(0.0, ctx.remaining() - CLEANUP - (2.5 if own else 0.0)))
    if wait < 1.0:
        return skipped(
            f"only {ctx.remaining():.1f} s of the budget was left",
            "re-run with a larger --timeout",
        )
    out = exchange(ctx, plan, method, own, wait)
    return judge(ctx, plan, out)


def judge(ctx: Context, plan: Plan, out: dict[str, Any]) -> CheckResult:
    method, transport = out["method"], out["transport"].upper()
    final = out.get("final") or {}
    arrived = out.get("arrived")
    reg = out.get("registration") or {}
    if ctx.stop.is_set() and arrived is None and not final:  # Ctrl-C: no evidence either way
        return skipped("interrupted before an answer came", "re-run the check", **out)
    if out["mode"] == "own_binding" and reg and not (200 <= int(reg.get("code") or 0) < 300):
        return skipped(
            "a binding of our own could not be registered "
            f"({said(reg.get('code'), reg.get('reason') or reg.get('error'))})",
            "see sip.register",
            **out,
        )
    who = _who(plan, out)
    if out.get("replaced_bindings"):
        gone = contacts_text(out["replaced_bindings"])
        return failed(
            f"the registrar's 200 OK to our binding no longer lists {gone}: it keeps one "
            "registration per account, and ours replaced the softphone's",
            REPLACED_ACTION,
            **out,
            problem="sip.binding_replaced",
        )
    if arrived is not None:
        alone = "" if plan.bindings else "; no other device is registered for the agent"
        return passed(
            f"our {method} through the platform reached our own binding over {transport} in "
            f"{arrived['after_ms']} ms (from {arrived['source']}){alone}",
            **out,
            problem=None,
        )
    rang = [c for c in out["provisional"] if 100 < c < 200]
    if out["mode"] == "softphone" and out.get("cancelled") and rang:
        return passed(
            f"the INVITE reached {who} over {transport}: it rang "
            f"({', '.join(str(c) for c in rang)}) and we cancelled it at once",
            **out,
            problem=None,
        )
    if blocked(out):
        return _blocked(out, final)
    if final.get("by") == "binding" and out["mode"] == "softphone":
        return passed(
            f"the platform reached {who} over {transport}: {final['code']} {final['reason']} "
            f"in {final['rtt_ms']} ms",
            **out,
            problem=None,
        )
    code = final.get("code")
    if code is not None and 200 <= code < 300 and final.get("by") == "registrar":
        return skipped(
            f"the platform answers {method} itself ({code} {final.get('reason')}, from "
            f"{final.get('user_agent') or 'the registrar'}): the request was not forked to the "
            "softphone; use --inbound-call to test with an INVITE",
            "run with --inbound-call (one INVITE; the softphone may ring for a moment)",
            **out,
        )
    if code is not None and code < 300:
        return skipped(
            f"{code} {final.get('reason') or ''} came back for our {method}, but nothing in it "
            "says who sent it (no User-Agent, Server or Contact, and the registrar names itself "
            "in none of its answers either)",
            "run with --inbound-call (one INVITE) to see whether the softphone rings",
            **out,
        )
    if code is not None:
        return skipped(
            f"the platform refused our {method} to {out['request_uri']} itself ({code} "
            f"{final.get('reason') or ''}): it does not route such requests to the agent",
            "ask the platform whether OPTIONS to users are routed; or use --inbound-call",
            **out,
        )
    return skipped(
        f"the platform did not answer our {method} at all ({out.get('error') or 'silence'}): "
        "the outbound path is what sip.register and net.sip-options report",
        "fix what sip.register or net.sip-options report first",
        **out,
    )


def _blocked(out: dict[str, Any], final: dict[str, Any]) -> CheckResult:
    code = final.get("code")
    target = ", ".join(f"<{c}>" for c in out["for_bindings"]) or "the agent's binding"
    said = f"{code} {final.get('reason') or ''}".strip() if code else "no final answer"
    return failed(
        f"the platform took our {out['method']} ({_took(out)}) but no binding answered within "
        f"the wait ({said}); it was for {target}; the registrar sees this machine as "
        f"{_where(out.get('seen_from'))}",
        _blocked_action(out),
        **out,
        problem="network.inbound_blocked",
    )


def said(code: int | None, text: str | None) -> str:
    """An answer in a summary: "403 Forbidden", "408", or "no answer"."""
    return " ".join(str(x) for x in (code, text) if x) or "no answer"


def _where(seen: SeenFrom | None) -> str:
    if not seen:
        return "unknown"
    return f"{seen['address']}:{seen['port']}" if seen.get("port") else seen["address"]


def _took(out: dict[str, Any]) -> str:
    said = [str(c) for c in out.get("provisional") or []]
    if out.get("challenged"):
        said.insert(0, "a digest challenge")
    return "answered " + ", ".join(said) if said else "answered"


def _who(plan: Plan, out: dict[str, Any]) -> str:
    final = out.get("final") or {}
    agent = final.get("user_agent")
    contacts = out.get("for_bindings") or []
    first = f"<{contacts[0]}>" if len(contacts) == 1 else f"{len(contacts)} bindings"
    return f"{agent} at {first}" if agent else f"the softphone at {first}"


def _blocked_action(out: dict[str, Any]) -> str:
    seen = _where(out.get("seen_from")) if out.get("seen_from") else None
    transport = out["transport"].upper()
    lost = out.get("unroutable") or []
    if lost:  # the platform was told a private address: no firewall rule can fix that
        where = (out.get("seen_from") or {}).get("address", "another address")
        return (
            f"the platform sends the request to <{lost[0]}>, a private address it cannot reach "
            f"(it sees this machine as {where}): enable NAT traversal in the softphone (rport/"
            "contact rewrite, STUN or SIP outbound), or ask the platform to apply NAT fix-up"
        )
    step = (
        f"allow inbound SIP over {transport} from the platform to this machine in the firewall "
        "(and in any security software)"
    )
    if transport == "UDP":
        step += ", or switch the softphone to TCP/TLS so the platform can use its connection"
    if seen:
        step += (
            f"; the platform sends to the address it saw ({seen}): a NAT in between must keep "
            "that mapping open (keepalives) and not filter the platform's other addresses"
        )
    return step + "; if the softphone is hung, restart it"
