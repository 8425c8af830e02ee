"""SIP checks through pjsua2: what the agent's softphone really does, against the real registrar."""

from __future__ import annotations

import uuid
from typing import Any

from checks.dns import Target, targets_for
from checks.sipmsg import parse, parse_challenge, via_received
from diag.config import Secret
from diag.context import Context
from diag.model import CheckResult, Status, failed, passed, skipped
from diag.sipstack import INSTALL_HINT, SipUnavailable
from diag.target import Registrar

# What happened to one REGISTER attempt; diagnosis keys on these words.
OK = "ok"  # 2xx from the registrar
REJECTED = "rejected"  # a non-2xx answer that really came from the registrar
CHALLENGED = "challenged"  # a challenge-only probe (no credentials) got its 401/407
TIMEOUT = "timeout"  # pjsip gave up waiting (408 made up locally): nothing came back
REFUSED = "refused"  # TCP/TLS connection refused (RST / ICMP)
UNREACHABLE = "unreachable"  # no route to the host / network unreachable
TLS_UNTRUSTED = "tls_untrusted"  # the registrar's certificate failed verification
LOCAL_ERROR = "local_error"  # pjsip could not even try (unsupported transport, bad URI)
NOT_FINISHED = "not_finished"  # our own --timeout budget ended first: no evidence either way
NETWORK_OUTCOMES = frozenset({TIMEOUT, REFUSED, UNREACHABLE})
ANSWERED = frozenset({OK, REJECTED, CHALLENGED})
EVIDENCE = NETWORK_OUTCOMES | ANSWERED | {TLS_UNTRUSTED}
UNREGISTER_RESERVE = 0.3  # seconds kept back from each attempt to remove our binding
BASELINE_MIN_TIME = 1.0  # the control probe is skipped when less than this is left


def _local_outcome(code: int, reason: str) -> str:
    lowered = reason.lower()
    if "certificate" in lowered or "ecertverif" in lowered:
        return TLS_UNTRUSTED
    if code == 408 or "timed out" in lowered or "timeout" in lowered:
        return TIMEOUT
    if "refused" in lowered or "reset" in lowered:
        return REFUSED
    if "no route" in lowered or "unreachable" in lowered:
        return UNREACHABLE
    return LOCAL_ERROR


def _register_once(
    ctx: Context,
    pj: Any,
    uri: str,
    transport: str,
    tid: int,
    user: str,
    password: Secret | None,
    budget: float,
) -> dict[str, Any]:
    """One REGISTER through pjsua2 (challenge-only when password is None); our binding, if
    the registrar accepted it, is removed again before returning."""
    s = ctx.settings
    stack = ctx.sip()

    class Account(pj.Account):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[dict[str, Any]] = []

        def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 callback name
            self.events.append(
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

    domain = (s.sip_uri or "").rpartition("@")[2]
    cfg = pj.AccountConfig()
    cfg.idUri = f"sip:{user}@{domain}"
    cfg.regConfig.registrarUri = uri
    cfg.regConfig.registerOnAdd = True
    cfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is not retried: never flood
    cfg.regConfig.timeoutSec = 60
    # A Contact of our own, so the agent's real softphone binding is never replaced.
    cfg.regConfig.contactUriParams = f";sipdiag={ctx.run_id[:8]}"
    # The transport decides the address family (pjsua asserts if ipv6Use is also set).
    cfg.sipConfig.transportId = tid
    if password is not None:
        auth_user = s.auth_user or user
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", auth_user, 0, password.reveal())
        )
    t0 = ctx.monotonic()
    base: dict[str, Any] = {
        "transport": transport,
        "uri": uri,
        "user": user,
        "credentials": password is not None,
    }
    stack.set_transaction_budget(max(0.05, budget - UNREGISTER_RESERVE))
    acc = Account()
    try:
        try:
            acc.create(cfg)
        except pj.Error as exc:
            return {
                **base,
                "outcome": LOCAL_ERROR,
                "code": 0,
                "remote": False,
                "reason": _pj_error_text(exc),
                "duration_ms": 0,
            }
        stack.pump(lambda: bool(acc.events), t0 + budget - UNREGISTER_RESERVE)
        if not acc.events:
            return {
                **base,
                "outcome": NOT_FINISHED,
                "code": 0,
                "remote": False,
                "reason": f"no final answer within its {budget:.1f} s share of --timeout",
                "duration_ms": int((ctx.monotonic() - t0) * 1000),
            }
        result = {**base, **_describe(acc.events[0], t0)}
        _add_challenge(result, stack.trace.responses(result.get("call_id") or ""))
        if result["outcome"] == REJECTED and password is None and result["code"] in (401, 407):
            result["outcome"] = CHALLENGED
        if result["outcome"] == OK:
            # Remove our binding at once: the diagnostic must never take the agent's calls.
            acc.setRegistration(False)
            stack.pump(lambda: len(acc.events) > 1, max(ctx.deadline - 0.1, ctx.monotonic()))
            result["unregistered"] = len(acc.events) > 1 and acc.events[1]["code"] // 100 == 2
        return result
    finally:
        # The Account must not outlive this function: pjsua2 aborts if one survives libDestroy.
        acc.shutdown()


def _pj_error_text(exc: Any) -> str:
    return str(getattr(exc, "reason", "") or getattr(exc, "title", "") or f"status {exc.status}")


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
    out["outcome"] = OK if code // 100 == 2 else REJECTED
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
    return out


def _add_challenge(result: dict[str, Any], responses: list[tuple[int, str]]) -> None:
    """Whether the registrar challenged this REGISTER, and with what (from pjsip's message log:
    pjsua answers 401/407 itself, so onRegState never sees them)."""
    challenges = [raw for code, raw in responses if code in (401, 407)]
    result["challenged"] = bool(challenges)
    result["challenges"] = len(challenges)
    if challenges:
        msg = parse(challenges[0])
        header = msg and (msg.first("www-authenticate") or msg.first("proxy-authenticate"))
        result["challenge"] = parse_challenge(header) if header else None


def _alternatives(tried: list[str]) -> str:
    others = [t for t in ("tcp", "tls", "udp") if t not in tried]
    return f", or re-run with --transport {others[0]}" if others else ""


def hint_for(attempt: dict[str, Any], target: Registrar, tried: list[str]) -> str:
    """The next concrete action for the first failed attempt."""
    t, where, code = attempt["transport"].upper(), target.hostport, attempt["code"]
    outcome = attempt["outcome"]
    if outcome == TIMEOUT:
        return f"allow outbound SIP over {t} to {where} in the firewall/VPN{_alternatives(tried)}"
    if outcome == REFUSED:
        return (
            f"{where} refused the {t} connection: check the registrar port and allow it in "
            f"the firewall{_alternatives(tried)}"
        )
    if outcome == UNREACHABLE:
        return f"there is no route to {target.host}: check the network connection and VPN"
    if outcome == TLS_UNTRUSTED:
        return (
            "the registrar's TLS certificate is not trusted: install the platform's CA "
            "certificate or pass --ca FILE; check for a TLS-inspecting proxy"
        )
    if outcome == LOCAL_ERROR:
        return f"PJSIP could not send over {t} ({attempt['reason']}): check the registrar URI"
    if outcome == NOT_FINISHED:
        return "re-run with a larger --timeout"
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


def _uri_for(target: Target | None, configured: Registrar, transport: str) -> str:
    """Register where DNS (net.dns) pointed; TLS keeps the name so the certificate can match."""
    if target is None:
        return configured.uri(transport)
    host = target.host if transport == "tls" else target.address
    return Registrar(configured.scheme, host, target.port, None, configured.params).uri(transport)


def check_register(ctx: Context) -> CheckResult:
    s = ctx.settings
    configured = s.target
    assert configured is not None  # `requires=("registrar", ...)`
    user = s.user or ""
    if s.password is None and not s.no_register:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "run on a terminal to be prompted, or use --no-register",
        )
    password = None if s.no_register else s.password
    transports = list(s.effective_transports)
    resolved = targets_for(ctx)
    first = {t: next((x for x in resolved if x.transport == t), None) for t in transports}
    stack = ctx.sip()
    attempts: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    route = next((x.address for x in first.values() if x is not None), None)
    try:
        with stack.session(route) as pj:
            for i, transport in enumerate(transports):
                tid = stack.transport_ids.get(transport)
                if tid is None:
                    attempts.append(
                        {
                            "transport": transport,
                            "outcome": LOCAL_ERROR,
                            "code": 0,
                            "remote": False,
                            "duration_ms": 0,
                            "reason": f"no {transport} transport in this PJSIP build",
                        }
                    )
                    continue
                # Transports run one after another: each gets a fair share of what is left,
                # keeping back time for the control probe.
                share = max(0.0, ctx.remaining() - BASELINE_MIN_TIME) / (len(transports) - i)
                uri = _uri_for(first[transport], configured, transport)
                attempts.append(_register_once(ctx, pj, uri, transport, tid, user, password, share))
            answered = next((a for a in attempts if a["outcome"] in ANSWERED), None)
            if answered is not None and ctx.remaining() >= BASELINE_MIN_TIME:
                # Control probe: a user that cannot exist, no credentials. If it gets the same
                # answer as we did, the registrar refuses the source, not the account.
                ghost = f"sipdiag-nobody-{uuid.uuid4().hex[:8]}"
                # The registrar just answered; the probe needs about as long, not the whole
                # budget (a registrar that ignores unknown users must not stall the run).
                budget = min(
                    ctx.remaining() - 0.1, BASELINE_MIN_TIME + 5 * answered["duration_ms"] / 1000
                )
                baseline = _register_once(
                    ctx,
                    pj,
                    answered["uri"],
                    answered["transport"],
                    stack.transport_ids[answered["transport"]],
                    ghost,
                    None,
                    budget,
                )
    except SipUnavailable as exc:
        return skipped(str(exc), INSTALL_HINT)
    return _result(ctx, configured, transports, attempts, baseline, stack.local_address)


def _result(
    ctx: Context,
    configured: Registrar,
    transports: list[str],
    attempts: list[dict[str, Any]],
    baseline: dict[str, Any] | None,
    local_address: str | None,
) -> CheckResult:
    details: dict[str, Any] = {
        "registrar": ctx.settings.registrar,
        "mode": "challenge_only" if ctx.settings.no_register else "register",
        "attempts": attempts,
        "baseline": baseline,
        "call_ids": [a["call_id"] for a in [*attempts, baseline or {}] if a.get("call_id")],
    }
    if local_address:
        details["local_address"] = local_address
    # The source address the server saw, where it differs from ours: NAT on the path.
    seen = sorted({a["received"] for a in attempts if a.get("received")} - {local_address})
    if seen:
        details["public_addresses"] = seen
    text = "; ".join(
        f"{a['transport']}: {a['code'] or ''} {a['reason']}".replace("  ", " ") for a in attempts
    )
    good = OK if not ctx.settings.no_register else CHALLENGED
    if all(a["outcome"] in (good, OK) for a in attempts):
        if ctx.settings.no_register:
            return passed(
                f"registrar challenges {ctx.settings.user} ({text}); "
                "no REGISTER was completed (--no-register)",
                **details,
            )
        return passed(f"registered and un-registered ({text})", **details)
    evidence = [a for a in attempts if a["outcome"] in EVIDENCE and a["outcome"] != good]
    if not evidence:
        broken = next(a for a in attempts if a["outcome"] not in (good, OK))
        return CheckResult(
            Status.ERROR,
            f"REGISTER could not be tested: {text}",
            details,
            hint_for(broken, configured, transports),
        )
    worst = evidence[0]
    warning = f" ({worst['warning'][0]})" if worst.get("warning") else ""
    return failed(
        f"REGISTER rejected or unanswered: {text}{warning}",
        hint_for(worst, configured, transports),
        **details,
    )
