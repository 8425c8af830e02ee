"""sip.register: does the registrar accept this account, and what does it hold for it?

By default it changes nothing on the platform: per transport one authenticated REGISTER without
a Contact (RFC 3261 10.2.3, a query; checks/wire/sipclient.py register_probe) checks the path and
the credentials and lists the account's current bindings. A binding of our own (pjsua2, what
the softphone really does; checks/sip/worker.py) is made only when it cannot harm: the query
showed no other binding for the account, or the user passed --register-binding. A registrar that
keeps one binding per account replaces the softphone's with ours; a binding the query listed
that is missing from our 200 OK is sip.binding_replaced. The binding rule is checks/sip/bindings.py;
starting and reading the worker, checks/sip/worker_client.py.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from checks.host.clock import clock_offset_ms
from checks.net.dns import targets_for
from checks.sip.bindings import (
    REPLACED_ACTION,
    binding_plan,
    contacts_text,
    other_bindings,
    replaced_bindings,
)
from checks.sip.stack import INSTALL_HINT
from checks.sip.worker_client import WORKER_LATE, run_worker, worker_job
from checks.wire.dns import DEFAULT_PORTS, Target
from diag import outcomes as o
from diag.config import Secret
from diag.context import Context
from diag.evidence import (
    Binding,
    BindingEvidence,
    RegisterAttempt,
    RegisterDetails,
    RegisterTarget,
)
from diag.model import CheckResult, Status, failed, passed, skipped, warned
from diag.target import Registrar

EVIDENCE = o.NETWORK | {o.OK, o.REJECTED, o.CHALLENGED, o.TLS_UNTRUSTED, o.DNS_FAILURE}
BASELINE_RESERVE = 1.0  # kept for the control probe, in case a REGISTER is rejected
QUERY_TIMEOUT = 2.0  # as net.sip-options: a healthy registrar answers in milliseconds
QUERY_SLACK = 0.15  # after its deadline, a query thread may take this long to return


def register_plan(
    ctx: Context, configured: Registrar, transport: str, resolved: list[Target]
) -> tuple[RegisterTarget, str]:
    """Where to register over `transport`: net.dns's first target, else the configured URI.

    UDP/TCP go to the resolved address. TLS keeps the host name so the certificate can be
    checked against it, unless --dns-server is in use: pjsip's own resolver cannot be pointed
    at another port, so the address is used and the certificate must name it."""
    found = next((t for t in resolved if t.transport == transport), None)
    if found is None:
        port = configured.port or DEFAULT_PORTS[transport]
        target: RegisterTarget = {"host": configured.host, "port": port, "address": None}
        return target, configured.uri(transport)
    by_name = transport == "tls" and not ctx.settings.dns_server
    host = found.host if by_name else found.address
    target = {"host": found.host, "port": found.port, "address": found.address}
    uri = Registrar(configured.scheme, host, found.port, None, configured.params).uri(transport)
    return target, uri


def _query_all(
    ctx: Context,
    configured: Registrar,
    transports: list[str],
    user: str,
    password: Secret | None,
    deadline: float,
) -> list[RegisterAttempt]:
    """A REGISTER query without Contact per transport, side by side. It cannot create, replace
    or remove a binding. Without ``password`` (--no-register) it shows whether the registrar
    challenges us; with it, whether the credentials are accepted and which bindings exist."""
    resolved = targets_for(ctx)
    results: dict[str, RegisterAttempt] = {}

    def probe(transport: str) -> None:
        target, _ = register_plan(ctx, configured, transport, resolved)
        results[transport] = _query(ctx, transport, target, user, deadline, password=password)

    threads = [threading.Thread(target=probe, args=(t,), daemon=True) for t in transports]
    for t in threads:
        t.start()
    # A probe ends by itself at `deadline`; the slack lets it build its result.
    join_until = min(deadline + QUERY_SLACK, ctx.deadline - 0.05)
    for t in threads:
        t.join(max(0.0, join_until - ctx.monotonic()))
    return [
        results.get(t)
        or {
            "transport": t,
            "outcome": o.NOT_FINISHED,
            "code": 0,
            "reason": "still running at the deadline",
            "remote": False,
            "registrar_answered": False,
            "credentials": password is not None,
        }
        for t in transports
    ]


def _query(
    ctx: Context,
    transport: str,
    target: RegisterTarget,
    user: str,
    deadline: float,
    label: str | None = None,
    password: Secret | None = None,
) -> RegisterAttempt:
    from checks.wire.sipclient import register_probe

    domain = (ctx.settings.sip_uri or "").rpartition("@")[2] or target["host"]
    sent_at = dt.datetime.now(dt.timezone.utc)
    answer = register_probe(
        transport=transport,
        host=target["host"],
        port=target["port"],
        address=target["address"],
        user=user,
        domain=domain,
        probe_id=f"{ctx.run_id}-{label or transport}-q",
        user_agent=ctx.user_agent,
        ca=ctx.settings.ca,
        deadline=deadline,
        clock=ctx.monotonic,
        auth_user=(ctx.settings.auth_user or user) if password is not None else "",
        password=password,
    )
    answer["local_time"] = sent_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if password is not None and answer.get("tls_verified") is False:
        # No credentials went over it: what a softphone that verifies gets is the certificate.
        answer["outcome"] = o.TLS_UNTRUSTED
        answer["reason"] = f"TLS certificate not trusted: {answer.get('tls_error')}"
    answer["remote"] = answer.get("code") is not None
    answer["duration_ms"] = answer.get("rtt_ms") or 0
    answer["code"] = answer.get("code") or 0
    answer["target"] = target
    return cast(RegisterAttempt, answer)  # checks/wire/ cannot name the type it builds


def _control_probe(ctx: Context, attempts: list[RegisterAttempt]) -> RegisterAttempt | None:
    """A user that cannot exist, no credentials, no Contact, sent where we were rejected. The
    same answer as ours means the registrar refuses the source, not the account. Only run
    when an answer needs telling apart: a probe for unknown users on every run could trip
    the registrar's intrusion detection."""
    rejected = next((a for a in attempts if a["outcome"] == o.REJECTED), None)
    if rejected is None or ctx.remaining() < 0.3:
        return None
    ghost = f"sipdiag-nobody-{uuid.uuid4().hex[:8]}"
    deadline = ctx.monotonic() + min(ctx.remaining() - 0.2, 2.0)
    return _query(ctx, rejected["transport"], rejected["target"], ghost, deadline, label="ctl")


def _register(
    ctx: Context, configured: Registrar, transports: list[str], password: Secret
) -> tuple[list[RegisterAttempt], str | None] | CheckResult:
    """The REGISTER attempts, run by checks/sip/worker.py in a child process: a PJSIP abort()
    there becomes an `error` result here instead of killing the run before its report."""
    resolved = targets_for(ctx)
    plans = []
    for transport in transports:
        target, uri = register_plan(ctx, configured, transport, resolved)
        plans.append({"transport": transport, "uri": uri, "target": target})
    keep = min(BASELINE_RESERVE, ctx.remaining() * 0.25)
    deadline = ctx.monotonic() + max(0.1, ctx.remaining() - keep)
    job = worker_job(ctx, password, plans, next((t.address for t in resolved), None), deadline)
    answer = run_worker(ctx, job, deadline)
    if isinstance(answer, str):
        outcome = o.NOT_FINISHED if answer == WORKER_LATE else o.ERROR
        return [_broken(p, outcome, answer) for p in plans], None
    if "unavailable" in answer:
        return skipped(answer["unavailable"], INSTALL_HINT)
    return answer["attempts"], answer.get("local_address")


def _broken(plan: dict[str, Any], outcome: str, reason: str) -> RegisterAttempt:
    return {
        "transport": plan["transport"],
        "uri": plan["uri"],
        "target": plan["target"],
        "outcome": outcome,
        "code": 0,
        "remote": False,
        "duration_ms": 0,
        "reason": reason,
        "credentials": True,
    }


def check_register(ctx: Context) -> CheckResult:
    s = ctx.settings
    configured = s.target
    assert configured is not None  # `requires=("registrar", ...)`
    transports = list(s.effective_transports)
    user = s.user or ""
    if s.no_register:
        attempts = _query_all(ctx, configured, transports, user, None, ctx.deadline - 0.2)
        return _result(ctx, transports, attempts, _control_probe(ctx, attempts), None)
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "run on a terminal to be prompted, or use --no-register",
        )
    # The query may use what the budget holds, less what a binding of our own would need.
    keep = min(BASELINE_RESERVE, ctx.remaining() * 0.25)
    query_deadline = ctx.monotonic() + min(QUERY_TIMEOUT, max(0.1, ctx.remaining() - keep))
    queries = _query_all(ctx, configured, transports, user, s.password, query_deadline)
    bindings = other_bindings(queries)
    plan = binding_plan(queries, bindings, s.register_binding)
    if ctx.watching and plan["create"]:
        plan = {"create": False, "reason": "sipdiag watch keeps its own binding (see sip.inbound)"}
    extra: BindingEvidence = {"bindings": bindings, "binding": plan}
    if not plan["create"]:  # the queries are the attempts
        baseline = _control_probe(ctx, queries)
        return _result(ctx, transports, queries, baseline, None, extra)
    extra["queries"] = queries
    # Our binding only where the query got through; elsewhere the query is the evidence.
    accepted = [q["transport"] for q in queries if q["outcome"] == o.OK]
    outcome = _register(ctx, configured, accepted, s.password)
    if isinstance(outcome, CheckResult):
        return outcome
    registered, local = outcome
    by_transport = {a["transport"]: a for a in registered}
    attempts = [by_transport.get(q["transport"], q) for q in queries]
    extra["replaced_bindings"] = replaced_bindings(bindings, attempts)
    return _result(ctx, transports, attempts, _control_probe(ctx, attempts), local, extra)


def account_bindings(ctx: Context, transport: str) -> list[Binding] | None:
    """The account's other bindings: what this run's sip.register found, else one binding query
    over ``transport`` now (the registrar must accept it); None when they cannot be known."""
    s = ctx.settings
    done = ctx.results.get("sip.register")
    if done is not None and done.details.get("binding") is not None:
        if not any(
            a.get("outcome") == o.OK
            for a in done.details.get("queries") or done.details.get("attempts", [])
        ):
            return None
        return list(done.details.get("bindings") or [])
    if s.target is None or s.password is None:
        return None
    deadline = ctx.monotonic() + min(QUERY_TIMEOUT, max(0.1, ctx.remaining() / 3))
    queries = _query_all(ctx, s.target, [transport], s.user or "", s.password, deadline)
    return other_bindings(queries) if queries[0]["outcome"] == o.OK else None


def _query_summary(ctx: Context, text: str, extra: BindingEvidence) -> str:
    bindings = extra.get("bindings") or []
    held = (
        f"it holds {len(bindings)} binding(s) for {ctx.settings.user}: {contacts_text(bindings)}"
        if bindings
        else f"it holds no binding for {ctx.settings.user}"
    )
    reason = extra.get("binding", {}).get("reason", "")
    return f"registrar accepts the credentials ({text}); {held}; nothing was registered ({reason})"


def _alternative(
    attempt: RegisterAttempt, attempts: Sequence[RegisterAttempt], tried: list[str]
) -> str:
    """Suggest a transport only where it got a SIP answer in this run: never an untried one."""
    worked = [a["transport"] for a in attempts if a["outcome"] in o.REGISTRAR_ANSWERED]
    others = [t for t in dict.fromkeys(worked) if t != attempt["transport"]]
    return f", or switch the softphone to {others[0].upper()}, which answers" if others else ""


def hint_for(
    attempt: RegisterAttempt, attempts: Sequence[RegisterAttempt], tried: list[str]
) -> str:
    """The next concrete action for one failed attempt."""
    target = attempt.get("target")
    host = target.get("host", "the registrar") if target else "the registrar"
    where = f"{host}:{target['port']}" if target and target.get("port") else host
    t, code, outcome = attempt["transport"].upper(), attempt["code"], attempt["outcome"]
    alt = _alternative(attempt, attempts, tried)
    if attempt.get("unusable"):
        return (
            f"{where} answered the {t} REGISTER with something a softphone cannot use "
            f"({attempt['unusable']}): report it to the platform with the run id"
        )
    if outcome == o.TIMEOUT and attempt.get("registrar_answered"):
        why = (
            "a dropped large UDP packet, or a registrar fault"
            if t == "UDP"
            else "an answer larger than a softphone reads, or a registrar fault"
        )
        return (
            f"{where} answered the first REGISTER over {t}, then never the authenticated one "
            f"({why}){alt}"
        )
    if outcome == o.TIMEOUT:
        return f"allow outbound SIP over {t} to {where} in the firewall/VPN{alt}"
    if outcome == o.REFUSED:  # a TCP RST or ICMP port unreachable: nothing listens there
        return (
            f"nothing listens on {where} over {t}: check the registrar address and port with "
            f"the platform{alt}"
        )
    if outcome == o.UNREACHABLE:
        return f"there is no route to {host}: check the network connection and VPN"
    if outcome == o.TLS_UNTRUSTED:
        return (
            "the registrar's TLS certificate is not trusted: install the platform's CA "
            "certificate or pass --ca FILE; check for a TLS-inspecting proxy"
        )
    if outcome == o.DNS_FAILURE:
        return f"{host} does not resolve: check the registrar name and this machine's DNS"
    if outcome in (o.LOCAL_ERROR, o.ERROR, o.TLS_FAILED):
        return f"the REGISTER over {t} could not be sent ({attempt['reason']}): check the URI"
    if outcome == o.NOT_FINISHED:
        return "re-run with a larger --timeout"
    if code in (401, 407) and attempt.get("challenges", 0) < 2 and attempt.get("credentials"):
        challenge = attempt.get("challenge")
        algorithm = challenge.get("algorithm") if challenge else None
        return (
            f"the registrar asks for an authentication PJSIP could not answer "
            f"(algorithm {algorithm}): check the softphone's and platform's auth settings"
        )
    if code in (401, 407) or (code == 403 and attempt.get("challenged")):
        return "check the SIP user, auth user and password with the platform administrator"
    if code == 403:
        return (
            "ask the platform administrator whether this account, domain and network (source "
            "address) are allowed to register; quote the Warning text and the run id"
        )
    if code == 404:
        return "check the SIP user and domain against the platform's account"
    if 500 <= code < 600:
        return (
            f"the registrar reported a server error ({code}): retry later, and report it to "
            "the platform with the run id if it persists"
        )
    return f"quote the answer ({code}) and the run id to the platform administrator"


_HAPPENED = {
    o.TIMEOUT: "no answer (timeout)",
    o.REFUSED: "refused",
    o.UNREACHABLE: "no route (unreachable)",
    o.DNS_FAILURE: "name does not resolve",
    o.NOT_FINISHED: "not finished (time budget ran out)",
}


def _attempt_text(a: Mapping[str, Any]) -> str:
    """One attempt (a RegisterAttempt) in the summary: the registrar's answer, else what
    happened to it."""
    said = a.get("reason") or a.get("error")
    if a.get("code") and (a.get("remote") or a["outcome"] in o.REGISTRAR_ANSWERED):
        return f"{a['code']} {said or ''}".rstrip()
    happened = _HAPPENED.get(a["outcome"])
    if a["outcome"] == o.TIMEOUT and a.get("registrar_answered"):
        happened = "no final answer (timeout)"
    if happened is None:
        return str(said or a["outcome"] or "no answer")
    return happened


def _result(
    ctx: Context,
    transports: list[str],
    attempts: list[RegisterAttempt],
    baseline: RegisterAttempt | None,
    local_address: str | None,
    extra: BindingEvidence | None = None,
) -> CheckResult:
    challenge_only = ctx.settings.no_register
    extra = extra or {}
    created = bool(extra.get("binding", {}).get("create"))
    queried = extra.get("queries", []) if created else []
    details: RegisterDetails = {
        "registrar": ctx.settings.registrar,
        "user": ctx.settings.user,
        "domain": (ctx.settings.sip_uri or "").rpartition("@")[2] or None,
        "mode": "challenge_only" if challenge_only else "register" if created else "query",
        "attempts": attempts,
        "baseline": baseline,
        **extra,
        "call_ids": [
            c
            for a in [*queried, *attempts, *([baseline] if baseline else [])]
            if (c := a.get("call_id"))
        ],
    }
    if local_address:
        details["local_address"] = local_address
    # The source address the server saw, where it differs from ours: NAT on the path.
    seen = {r for a in attempts if (r := a.get("received"))} - {local_address, None}
    if seen:
        details["public_addresses"] = sorted(seen)
    dated = next((a for a in attempts if a.get("server_date") and a.get("local_time")), None)
    if dated:
        offset = clock_offset_ms(str(dated["server_date"]), dated["local_time"])
        if offset is not None:  # an unparseable Date is recorded (server_date), not fatal
            details["clock_offset_ms"] = offset
    text = "; ".join(f"{a['transport']}: {_attempt_text(a)}" for a in attempts)
    good = o.CHALLENGED if challenge_only else o.OK
    if all(a["outcome"] == good for a in attempts):
        if challenge_only:
            return passed(
                f"registrar challenges {ctx.settings.user} ({text}); nothing was "
                "registered (--no-register)",
                **details,
            )
        if not created:
            return passed(_query_summary(ctx, text, extra), **details)
        replaced = extra.get("replaced_bindings") or []
        if replaced:
            return failed(
                f"registered ({text}), and the registrar's 200 OK no longer lists "
                f"{contacts_text(replaced)}: this registrar keeps one registration per account, "
                "and sipdiag's test registration replaced the softphone's",
                REPLACED_ACTION,
                **details,
            )
        stuck = [a["transport"] for a in attempts if not a.get("unregistered")]
        if stuck:
            return warned(
                f"registered ({text}), but the un-REGISTER over {', '.join(stuck)} got no answer",
                f"our binding (Contact with ;sipdiag={ctx.run_id[:8]}) "
                f"stays until it expires; check {', '.join(stuck)} registrations on "
                "the platform",
                **details,
            )
        return passed(f"registered and un-registered ({text})", **details)
    if challenge_only and all(a["outcome"] in (o.OK, o.CHALLENGED) for a in attempts):
        return warned(
            f"the registrar answers a REGISTER query for {ctx.settings.user} without "
            f"asking for credentials ({text})",
            "ask the platform whether registration really needs no authentication",
            **details,
        )
    evidence = [a for a in attempts if a["outcome"] in EVIDENCE and a["outcome"] != good]
    if not evidence:
        broken = next(a for a in attempts if a["outcome"] != good)
        return CheckResult(
            Status.ERROR,
            f"REGISTER could not be tested: {text}",
            details,
            hint_for(broken, attempts, transports),
        )
    worst = evidence[0]
    warning = f" ({worst['warning'][0]})" if worst.get("warning") else ""
    return failed(
        f"REGISTER rejected or unanswered: {text}{warning}",
        hint_for(worst, attempts, transports),
        **details,
    )
