"""SIP checks through pjsua2: what the agent's softphone really does, against the real registrar."""

from __future__ import annotations

from typing import Any

from checks.sipmsg import parse, via_received
from diag.context import Context
from diag.model import CheckResult, Status, failed, passed, skipped
from diag.sipstack import INSTALL_HINT, SipUnavailable
from diag.target import Registrar

# What happened to one REGISTER attempt; diagnosis keys on these words.
OK = "ok"  # 2xx from the registrar
REJECTED = "rejected"  # a non-2xx answer that really came from the registrar
TIMEOUT = "timeout"  # pjsip gave up waiting (408 made up locally): nothing came back
REFUSED = "refused"  # TCP/TLS connection refused (RST / ICMP)
UNREACHABLE = "unreachable"  # no route to the host / network unreachable
LOCAL_ERROR = "local_error"  # pjsip could not even try (unsupported transport, bad URI)
NOT_FINISHED = "not_finished"  # our own --timeout budget ended first: no evidence either way
NETWORK_OUTCOMES = frozenset({TIMEOUT, REFUSED, UNREACHABLE})
UNREGISTER_RESERVE = 0.3  # seconds kept back from each attempt to remove our binding


def _local_outcome(code: int, reason: str) -> str:
    lowered = reason.lower()
    if code == 408 or "timed out" in lowered or "timeout" in lowered:
        return TIMEOUT
    if "refused" in lowered or "reset" in lowered:
        return REFUSED
    if "no route" in lowered or "unreachable" in lowered:
        return UNREACHABLE
    return LOCAL_ERROR


def _attempt(
    ctx: Context, pj: Any, target: Registrar, transport: str, tid: int, budget: float
) -> dict[str, Any]:
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

    cfg = pj.AccountConfig()
    cfg.idUri = s.sip_uri or ""
    cfg.regConfig.registrarUri = target.uri(transport)
    cfg.regConfig.registerOnAdd = True
    cfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is not retried: never flood
    cfg.regConfig.timeoutSec = 60
    # A Contact of our own, so the agent's real softphone binding is never replaced.
    cfg.regConfig.contactUriParams = f";sipdiag={ctx.run_id[:8]}"
    # The transport decides the address family (IPv4 or IPv6); pjsua asserts if ipv6Use is
    # also set alongside a transportId.
    cfg.sipConfig.transportId = tid
    assert s.password is not None
    cfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", s.auth_user or s.user or "", 0, s.password.reveal())
    )
    t0 = ctx.monotonic()
    base = {"transport": transport, "uri": cfg.regConfig.registrarUri}
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
    via = msg.first("via")
    if via:
        out["received"], out["rport"] = via_received(via)
    return out


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
    if outcome == LOCAL_ERROR:
        return f"PJSIP could not send over {t} ({attempt['reason']}): check the registrar URI"
    if outcome == NOT_FINISHED:
        return "re-run with a larger --timeout"
    if code in (401, 407):
        return "check the SIP user, auth user and password with the platform administrator"
    if code == 403:
        return (
            "ask the platform administrator whether the account is enabled and this network "
            "is allowed to register; quote the Warning text and the run id"
        )
    if code == 404:
        return "check the SIP user and domain against the platform's account"
    if 500 <= code < 600:
        return (
            f"the registrar reported a server error ({code}): retry later, and report it to "
            "the platform with the run id if it persists"
        )
    return f"quote the answer ({code}) and the run id to the platform administrator"


def check_register(ctx: Context) -> CheckResult:
    s = ctx.settings
    target = s.target
    assert target is not None  # `requires=("registrar", ...)`
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "or run on a terminal to be prompted",
        )
    stack = ctx.sip()
    transports = list(s.effective_transports)
    attempts: list[dict[str, Any]] = []
    try:
        with stack.session() as pj:
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
                # Transports run one after another: each gets a fair share of what is left.
                share = ctx.remaining() / (len(transports) - i)
                attempts.append(_attempt(ctx, pj, target, transport, tid, share))
    except SipUnavailable as exc:
        return skipped(str(exc), INSTALL_HINT)
    details: dict[str, Any] = {
        "registrar": s.registrar,
        "attempts": attempts,
        "call_ids": [a["call_id"] for a in attempts if a.get("call_id")],
    }
    seen = sorted({a["received"] for a in attempts if a.get("received")})
    if seen:
        details["public_addresses"] = seen
    if stack.local_address:
        details["local_address"] = stack.local_address
    text = "; ".join(
        f"{a['transport']}: {a['code'] or ''} {a['reason']}".replace("  ", " ") for a in attempts
    )
    evidence = [a for a in attempts if a["outcome"] in NETWORK_OUTCOMES | {REJECTED}]
    if all(a["outcome"] == OK for a in attempts):
        return passed(f"registered and un-registered ({text})", **details)
    if not evidence:
        broken = next(a for a in attempts if a["outcome"] != OK)
        return CheckResult(
            Status.ERROR,
            f"REGISTER could not be tested: {text}",
            details,
            hint_for(broken, target, transports),
        )
    first = evidence[0]
    warning = f" ({first['warning'][0]})" if first.get("warning") else ""
    return failed(
        f"REGISTER rejected or unanswered: {text}{warning}",
        hint_for(first, target, transports),
        **details,
    )
