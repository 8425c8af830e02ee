"""SIP checks through pjsua2: what the agent's softphone really does, against the real registrar."""

from __future__ import annotations

import re
import time
from typing import Any

from checks.sipmsg import parse, via_received
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped
from diag.sipstack import INSTALL_HINT, SipUnavailable

# Answers pjsip generates itself (no packet from the registrar) carry an empty wholeMsg.
_HINTS = {
    401: "check the SIP user, auth user and password with the platform administrator",
    403: "ask the platform administrator whether the account is enabled and this network is "
    "allowed to register; quote the Warning text and run id",
    404: "check the SIP user and domain against the platform's account",
    408: "allow outbound SIP to the registrar in the firewall/VPN, or re-run with --transport tcp",
    503: "the registrar refused the connection: allow the port in the firewall or re-run with "
    "another --transport",
}


def registrar_uri(registrar: str, transport: str) -> str:
    """The registrar URI for one transport (any ;transport= in the configured URI is replaced)."""
    uri = registrar if registrar.startswith(("sip:", "sips:")) else f"sip:{registrar}"
    uri = re.sub(r";transport=\w+", "", uri, flags=re.IGNORECASE)
    return uri if transport == "udp" else f"{uri};transport={transport}"


def _attempt(ctx: Context, pj: Any, transport: str, tid: int) -> dict[str, Any]:
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
                    "t": time.monotonic(),
                }
            )

    cfg = pj.AccountConfig()
    cfg.idUri = s.sip_uri or ""
    cfg.regConfig.registrarUri = registrar_uri(s.registrar or "", transport)
    cfg.regConfig.registerOnAdd = True
    cfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is not retried: never flood
    cfg.regConfig.timeoutSec = 60
    # A Contact of our own, so the agent's real softphone binding is never replaced.
    cfg.regConfig.contactUriParams = f";sipdiag={ctx.run_id[:8]}"
    cfg.sipConfig.transportId = tid
    assert s.password is not None
    cfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", s.auth_user or s.user or "", 0, s.password.reveal())
    )
    t0 = time.monotonic()
    acc = Account()
    try:
        acc.create(cfg)
        stack.pump(lambda: bool(acc.events), ctx.deadline - 0.3)
        if not acc.events:
            return {
                "transport": transport,
                "ok": False,
                "code": 0,
                "reason": "no answer in time",
                "remote": False,
                "duration_ms": int((time.monotonic() - t0) * 1000),
            }
        ev = acc.events[0]
        result = _describe(transport, ev, t0)
        if result["ok"]:
            # Remove our binding at once: the diagnostic must never take the agent's calls.
            acc.setRegistration(False)
            stack.pump(lambda: len(acc.events) > 1, ctx.deadline - 0.1)
            result["unregistered"] = len(acc.events) > 1 and acc.events[1]["code"] // 100 == 2
        return result
    finally:
        # The Account must not outlive this function: pjsua2 aborts if one survives libDestroy.
        acc.shutdown()


def _describe(transport: str, ev: dict[str, Any], t0: float) -> dict[str, Any]:
    msg = parse(ev["raw"])
    code = int(ev["code"])
    out: dict[str, Any] = {
        "transport": transport,
        "ok": code // 100 == 2,
        "code": code,
        "reason": ev["reason"],
        "remote": msg is not None,  # False: pjsip made this answer up (timeout, refused)
        "duration_ms": int((ev["t"] - t0) * 1000),
        "local_time": ev["local_time"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if msg is None:
        return out
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
        received, rport = via_received(via)
        out["received"], out["rport"] = received, rport
    return out


def check_register(ctx: Context) -> CheckResult:
    s = ctx.settings
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "or run on a terminal to be prompted",
        )
    stack = ctx.sip()
    attempts: list[dict[str, Any]] = []
    try:
        with stack.session() as pj:
            for transport in s.effective_transports:
                tid = stack.transport_ids.get(transport)
                if tid is None:
                    attempts.append(
                        {
                            "transport": transport,
                            "ok": False,
                            "code": 0,
                            "reason": f"no {transport} transport in this PJSIP build",
                            "remote": False,
                            "duration_ms": 0,
                        }
                    )
                    continue
                attempts.append(_attempt(ctx, pj, transport, tid))
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
    bad = [a for a in attempts if not a["ok"]]
    text = "; ".join(f"{a['transport']}: {a['code']} {a['reason']}".strip() for a in attempts)
    if not bad:
        return passed(f"registered and un-registered ({text})", **details)
    first = bad[0]
    warning = f" ({first['warning'][0]})" if first.get("warning") else ""
    hint = _HINTS.get(first["code"], "quote this run id to the platform administrator")
    if first["code"] == 401 or first["code"] == 407:
        hint = _HINTS[401]
    return failed(f"REGISTER rejected or unanswered: {text}{warning}", hint, **details)
