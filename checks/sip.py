"""sip.register: what the agent's softphone really does (pjsua2), against the real registrar."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from checks.dns import DEFAULT_PORTS, Target, targets_for
from checks.host import clock_offset_ms
from checks.sipmsg import parse, parse_challenge, via_received
from diag import outcomes as o
from diag.config import Secret
from diag.context import Context
from diag.model import CheckResult, Status, failed, passed, skipped, warned
from diag.sipstack import INSTALL_HINT, PROBE_HEADER, SipStack, SipUnavailable
from diag.target import Registrar

EVIDENCE = o.NETWORK | {o.OK, o.REJECTED, o.CHALLENGED, o.TLS_UNTRUSTED, o.DNS_FAILURE}
UNREGISTER_RESERVE = 0.3  # seconds kept back to remove our binding again
UNREGISTER_WAIT = 1.0  # at most this long for the un-REGISTER's answer
BASELINE_RESERVE = 1.0  # kept for the control probe, in case a REGISTER is rejected
REGISTER_EXPIRES = 60  # short: a binding we fail to remove disappears soon by itself


def _local_outcome(code: int, reason: str) -> str:
    """Classify an answer pjsip made up itself (no packet from the registrar)."""
    lowered = reason.lower()
    if "certificate" in lowered or "ecertverif" in lowered:
        return o.TLS_UNTRUSTED
    if "resolve" in lowered or "gethostbyname" in lowered or "unknown host" in lowered:
        return o.DNS_FAILURE
    if code == 408 or "timed out" in lowered or "timeout" in lowered:
        return o.TIMEOUT
    if "refused" in lowered or "reset" in lowered:
        return o.REFUSED
    if "no route" in lowered or "unreachable" in lowered:
        return o.UNREACHABLE
    return o.LOCAL_ERROR


class _Registration:
    """One pjsua2 account registering over one transport; every attempt runs side by side."""

    def __init__(
        self,
        ctx: Context,
        pj: Any,
        transport: str,
        tid: int,
        target: dict[str, Any],
        uri: str,
        password: Secret,
    ) -> None:
        s = ctx.settings
        self.ctx, self.transport, self.target, self.uri = ctx, transport, target, uri
        self.probe = f"{ctx.run_id}-{transport}"
        events: list[dict[str, Any]] = []
        self.events = events

        class Account(pj.Account):
            def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 callback name
                events.append(
                    {
                        "code": prm.code,
                        "reason": prm.reason,
                        "expiration": prm.expiration,
                        "raw": prm.rdata.wholeMsg,
                        "src": prm.rdata.srcAddress,
                        "local_time": ctx.now(),
                        "t": ctx.monotonic(),
                    }
                )

        cfg = pj.AccountConfig()
        cfg.idUri = s.sip_uri or ""
        cfg.regConfig.registrarUri = uri
        cfg.regConfig.registerOnAdd = True
        cfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is not retried: never flood
        cfg.regConfig.timeoutSec = REGISTER_EXPIRES
        header = pj.SipHeader()
        header.hName, header.hValue = PROBE_HEADER, self.probe
        cfg.regConfig.headers.append(header)
        # A Contact of our own and no SIP outbound: pjsua's default +sip.instance is the same
        # in every pjsua-based softphone, and a registrar would replace the agent's binding.
        cfg.regConfig.contactUriParams = f";sipdiag={ctx.run_id[:8]}"
        cfg.natConfig.sipOutboundUse = 0
        # No re-REGISTER from the address the registrar reported: the 200 must answer the
        # Contact and Via we sent, or plain NAT would look like a SIP ALG (net.sip-alg).
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.sipConfig.transportId = tid  # decides the address family too
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", s.auth_user or s.user or "", 0, password.reveal())
        )
        self.account = Account()
        self.t0 = ctx.monotonic()
        self.error: str | None = None
        try:
            self.account.create(cfg)
        except pj.Error as exc:
            self.error = str(getattr(exc, "reason", "") or getattr(exc, "title", "") or exc)

    @property
    def finished(self) -> bool:
        return self.error is not None or bool(self.events)

    @property
    def accepted(self) -> bool:
        return bool(self.events) and self.events[0]["code"] // 100 == 2

    def unregister(self) -> None:
        self.account.setRegistration(False)

    @property
    def unregistered(self) -> bool:
        return len(self.events) > 1 and self.events[1]["code"] // 100 == 2

    def result(self, stack: SipStack, budget: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "transport": self.transport,
            "uri": self.uri,
            "target": self.target,
            "credentials": True,
        }
        if self.error is not None:
            out.update(
                outcome=o.LOCAL_ERROR, code=0, remote=False, reason=self.error, duration_ms=0
            )
        elif not self.events:
            out.update(
                outcome=o.NOT_FINISHED,
                code=0,
                remote=False,
                duration_ms=int(budget * 1000),
                reason=f"no final answer within the {budget:.1f} s this attempt had",
            )
        else:
            out.update(_describe(self.events[0], self.t0))
            if out["outcome"] == o.OK:
                out["unregistered"] = self.unregistered
        call_id = out.get("call_id") or stack.trace.call_id(self.probe)
        out["call_id"] = call_id
        out["sent"] = stack.trace.sent(self.probe)
        # The first 2xx on the Call-ID we sent: what the registrar made of our Via and Contact.
        sent_call_id = stack.trace.call_id(self.probe)
        answers = stack.trace.responses(sent_call_id) if sent_call_id else []
        first_ok = next((raw for code, raw in answers if code // 100 == 2), None)
        first = parse(first_ok) if first_ok else None
        if first is not None:
            out["first_ok"] = {"via": first.first("via"), "contacts": first.all("contact")}
        _add_challenge(out, stack.trace.responses(call_id) if call_id else [])
        return out


def _describe(ev: dict[str, Any], t0: float) -> dict[str, Any]:
    msg = parse(ev["raw"])
    code = int(ev["code"])
    out: dict[str, Any] = {
        "code": code,
        "reason": ev["reason"],
        "remote": msg is not None,  # False: pjsip made this answer up (timeout, refused)
        "duration_ms": int((ev["t"] - t0) * 1000),
        "local_time": ev["local_time"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if msg is None:
        out["outcome"] = _local_outcome(code, ev["reason"])
        return out
    out["outcome"] = o.OK if code // 100 == 2 else o.REJECTED
    out.update(
        {
            "source": ev["src"],
            "warning": msg.all("warning"),
            "reason_header": msg.all("reason"),
            "server": msg.first("server") or msg.first("user-agent"),
            "call_id": msg.first("call-id"),
            "server_date": msg.first("date"),
        }
    )
    if code // 100 == 2:
        out["expires"] = ev["expiration"]
        out["bindings"] = msg.all("contact")
    via = msg.first("via")
    if via:
        out["received"], out["rport"] = via_received(via)
        out["via_echoed"] = via  # our top Via as the registrar received it
    return out


def _add_challenge(result: dict[str, Any], responses: list[tuple[int, str]]) -> None:
    """Whether the registrar challenged this REGISTER, and with what (pjsua answers 401/407
    itself, so onRegState never sees them), and whether it answered anything at all."""
    challenges = [raw for code, raw in responses if code in (401, 407)]
    result["challenged"] = bool(challenges)
    result["challenges"] = len(challenges)
    result["registrar_answered"] = bool(responses)  # e.g. a challenge, then silence
    result["challenge"] = None
    if challenges:
        msg = parse(challenges[0])
        header = msg and (msg.first("www-authenticate") or msg.first("proxy-authenticate"))
        result["challenge"] = parse_challenge(header) if header else None


def _plan(
    ctx: Context, configured: Registrar, transport: str, resolved: list[Target]
) -> tuple[dict[str, Any], str]:
    """Where to register over `transport`: net.dns's first target, else the configured URI.

    UDP/TCP go to the resolved address. TLS keeps the host name so the certificate can be
    checked against it, unless --dns-server is in use: pjsip's own resolver cannot be pointed
    at another port, so the address is used and the certificate must name it."""
    found = next((t for t in resolved if t.transport == transport), None)
    if found is None:
        port = configured.port or DEFAULT_PORTS[transport]
        target = {"host": configured.host, "port": port, "address": None}
        return target, configured.uri(transport)
    by_name = transport == "tls" and not ctx.settings.dns_server
    host = found.host if by_name else found.address
    target = {"host": found.host, "port": found.port, "address": found.address}
    uri = Registrar(configured.scheme, host, found.port, None, configured.params).uri(transport)
    return target, uri


def _register_all(
    ctx: Context,
    pj: Any,
    stack: SipStack,
    configured: Registrar,
    transports: list[str],
    password: Secret,
) -> list[dict[str, Any]]:
    resolved = targets_for(ctx)
    keep = UNREGISTER_RESERVE + min(BASELINE_RESERVE, ctx.remaining() * 0.25)
    budget = max(0.05, ctx.remaining() - keep)
    stack.set_transaction_budget(budget)
    attempts: dict[str, dict[str, Any]] = {}
    runs: list[_Registration] = []
    try:
        for transport in transports:
            target, uri = _plan(ctx, configured, transport, resolved)
            tid = stack.transport_ids.get(transport)
            if tid is None:
                attempts[transport] = {
                    "transport": transport,
                    "uri": uri,
                    "target": target,
                    "outcome": o.LOCAL_ERROR,
                    "code": 0,
                    "remote": False,
                    "duration_ms": 0,
                    "reason": f"no {transport} transport in this PJSIP build",
                }
                continue
            runs.append(_Registration(ctx, pj, transport, tid, target, uri, password))
        t0 = ctx.monotonic()
        stack.pump(lambda: all(r.finished for r in runs), t0 + budget)
        accepted = [r for r in runs if r.accepted]
        for r in accepted:
            # Remove our binding at once: the diagnostic must never take the agent's calls.
            r.unregister()
        wait_until = min(ctx.deadline - 0.1, ctx.monotonic() + UNREGISTER_WAIT)
        stack.pump(lambda: all(r.unregistered for r in accepted), wait_until)
        for r in runs:
            attempts[r.transport] = r.result(stack, budget)
    finally:
        for r in runs:
            # No Account may outlive this function: pjsua2 aborts if one survives libDestroy.
            r.account.shutdown()
    return [attempts[t] for t in transports]


def _challenge_only(
    ctx: Context, configured: Registrar, transports: list[str], user: str
) -> list[dict[str, Any]]:
    """--no-register: a REGISTER query without Contact or credentials per transport. It cannot
    create, replace or remove a binding; it shows whether the registrar challenges us."""
    resolved = targets_for(ctx)
    results: dict[str, dict[str, Any]] = {}
    deadline = ctx.deadline - 0.2

    def probe(transport: str) -> None:
        target, _ = _plan(ctx, configured, transport, resolved)
        results[transport] = _query(ctx, transport, target, user, deadline)

    threads = [threading.Thread(target=probe, args=(t,), daemon=True) for t in transports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - ctx.monotonic()))
    return [
        results.get(t)
        or {
            "transport": t,
            "outcome": o.NOT_FINISHED,
            "code": 0,
            "reason": "still running at the deadline",
            "remote": False,
        }
        for t in transports
    ]


def _query(
    ctx: Context,
    transport: str,
    target: dict[str, Any],
    user: str,
    deadline: float,
    label: str | None = None,
) -> dict[str, Any]:
    from checks.optionsprobe import register_probe

    domain = (ctx.settings.sip_uri or "").rpartition("@")[2] or target["host"]
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
    )
    answer["credentials"] = False
    answer["remote"] = answer.get("code") is not None
    answer["duration_ms"] = answer.get("rtt_ms") or 0
    answer["code"] = answer.get("code") or 0
    answer["target"] = target
    return answer


def _control_probe(ctx: Context, attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
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


def check_register(ctx: Context) -> CheckResult:
    s = ctx.settings
    configured = s.target
    assert configured is not None  # `requires=("registrar", ...)`
    transports = list(s.effective_transports)
    if s.no_register:
        attempts = _challenge_only(ctx, configured, transports, s.user or "")
    elif s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "run on a terminal to be prompted, or use --no-register",
        )
    else:
        stack = ctx.sip()
        route = next((t.address for t in targets_for(ctx)), None)
        try:
            with stack.session(route) as pj:
                attempts = _register_all(ctx, pj, stack, configured, transports, s.password)
        except SipUnavailable as exc:
            return skipped(str(exc), INSTALL_HINT)
    baseline = _control_probe(ctx, attempts)
    local = ctx.sip_stack.local_address if ctx.sip_stack and not s.no_register else None
    return _result(ctx, transports, attempts, baseline, local)


def _alternative(attempt: dict[str, Any], attempts: list[dict[str, Any]], tried: list[str]) -> str:
    """Suggest a transport that answered, else one not tried yet."""
    worked = [a["transport"] for a in attempts if a["outcome"] in o.REGISTRAR_ANSWERED]
    others = worked or [t for t in ("tcp", "tls", "udp") if t not in tried]
    others = [t for t in others if t != attempt["transport"]]
    return f", or re-run with --transport {others[0]}" if others else ""


def hint_for(attempt: dict[str, Any], attempts: list[dict[str, Any]], tried: list[str]) -> str:
    """The next concrete action for one failed attempt."""
    target = attempt.get("target") or {}
    host = target.get("host", "the registrar")
    where = f"{host}:{target['port']}" if target.get("port") else host
    t, code, outcome = attempt["transport"].upper(), attempt["code"], attempt["outcome"]
    alt = _alternative(attempt, attempts, tried)
    if outcome == o.TIMEOUT and attempt.get("registrar_answered"):
        return (
            f"{where} answered the first REGISTER over {t}, then never the authenticated one "
            f"(a dropped large UDP packet, or a registrar fault){alt}"
        )
    if outcome == o.TIMEOUT:
        return f"allow outbound SIP over {t} to {where} in the firewall/VPN{alt}"
    if outcome == o.REFUSED:
        return (
            f"{where} refused the {t} connection: check the registrar port and allow it in "
            f"the firewall{alt}"
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
        algorithm = (attempt.get("challenge") or {}).get("algorithm")
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


def _result(
    ctx: Context,
    transports: list[str],
    attempts: list[dict[str, Any]],
    baseline: dict[str, Any] | None,
    local_address: str | None,
) -> CheckResult:
    challenge_only = ctx.settings.no_register
    details: dict[str, Any] = {
        "registrar": ctx.settings.registrar,
        "mode": "challenge_only" if challenge_only else "register",
        "attempts": attempts,
        "baseline": baseline,
        "call_ids": [a["call_id"] for a in [*attempts, baseline or {}] if a.get("call_id")],
    }
    if local_address:
        details["local_address"] = local_address
    # The source address the server saw, where it differs from ours: NAT on the path.
    seen = {a["received"] for a in attempts if a.get("received")} - {local_address, None}
    if seen:
        details["public_addresses"] = sorted(seen)
    dated = next((a for a in attempts if a.get("server_date") and a.get("local_time")), None)
    if dated:
        details["clock_offset_ms"] = clock_offset_ms(dated["server_date"], dated["local_time"])
    text = "; ".join(
        f"{a['transport']}: {a['code'] or ''} {a['reason']}".replace("  ", " ") for a in attempts
    )
    good = o.CHALLENGED if challenge_only else o.OK
    if all(a["outcome"] == good for a in attempts):
        if challenge_only:
            return passed(
                f"registrar challenges {ctx.settings.user} ({text}); nothing was "
                "registered (--no-register)",
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
