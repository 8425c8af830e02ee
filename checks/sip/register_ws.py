"""sip.register-ws: what a WebRTC softphone does over SIP over WebSocket (RFC 7118).

pjsua2 has no WebSocket transport, so this check speaks SIP itself (checks/wire/sip.py, the
project's one SIP message module) over a `websockets` connection (checks/wire/ws.py): OPTIONS,
REGISTER with digest, un-REGISTER. Its details have sip.register's shape (``attempts``,
``baseline``, ``mode``), so the same diagnosis rules read them whichever transport found it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any, cast

from checks.sip.bindings import REPLACED_ACTION, binding_plan, replaced_bindings
from checks.sip.register import hint_for
from checks.wire import sip as sipwire
from checks.wire.sip import SipMessage, parse_bindings, parse_challenge, via_received
from checks.wire.ws import CLOSE_TIMEOUT, WsFailure, WsSession, WsTarget, proxy_for, ws_session
from diag import outcomes as o
from diag.config import Secret
from diag.context import Context
from diag.evidence import Binding, RegisterAttempt, RegisterDetails
from diag.model import CheckResult, Status, failed, passed, skipped, warned

MAX_IGNORED = 10  # stray messages listed in details (a flood must not bloat the report)
REGISTER_EXPIRES = 60  # as sip.register: a binding we fail to remove disappears soon by itself
OPTIONS_WAIT = 2.0  # a healthy server answers the keep-alive in milliseconds
UNREGISTER_RESERVE = 0.4  # kept back to remove our binding again
BASELINE_RESERVE = 0.6  # kept back for the control probe
EVIDENCE = o.NETWORK | {o.OK, o.REJECTED, o.CHALLENGED, o.TLS_UNTRUSTED, o.TLS_FAILED}
EVIDENCE |= {o.DNS_FAILURE}


class _Registration:
    """One registration's requests on one connection: Call-ID, CSeq and nonce count kept."""

    def __init__(self, ctx: Context, session: WsSession, target: WsTarget, user: str) -> None:
        s = ctx.settings
        self.ctx, self.session, self.target = ctx, session, target
        self.user = user
        self.domain = s.domain or target.host
        self.local = f"{secrets.token_hex(6)}.invalid"  # RFC 7118 5.2: no reachable address
        self.call_id = f"{ctx.run_id}-ws@{self.local}"
        self.cseq = 0
        self.nc = 0
        self.cnonce = secrets.token_hex(8)
        self.uri = f"sip:{sipwire.host_literal(self.domain)}"
        self.ignored: list[str] = []  # messages that were not the answer awaited, and why

    def request(
        self,
        label: str,
        deadline: float,
        contact: str | None = None,
        expires: int | None = None,
        authorization: str | None = None,
    ) -> tuple[SipMessage | None, int | None]:
        self.cseq += 1
        probe = sipwire.probe_id(self.ctx.run_id, f"{label}{self.cseq}")
        data = sipwire.register_request(
            self.uri,
            self.target.transport,
            self.local,
            self.session.local_port,
            probe,
            self.user,
            self.domain,
            self.ctx.user_agent,
            contact=contact,
            expires=expires,
            authorization=authorization,
            call_id=self.call_id,
            cseq=self.cseq,
        )
        answer, rtt, ignored = self.session.exchange(
            data, probe, "REGISTER", self.call_id, deadline
        )
        self.ignored.extend(ignored[: MAX_IGNORED - len(self.ignored)])
        return answer, rtt

    def authorization(self, challenge: SipMessage, auth_user: str, password: Secret) -> str:
        code = sipwire.status_code(challenge)
        header = challenge.first("proxy-authenticate" if code == 407 else "www-authenticate")
        self.nc += 1
        return sipwire.digest_authorization(
            header or "",
            method="REGISTER",
            uri=self.uri,
            username=auth_user,
            password=password.reveal(),
            cnonce=self.cnonce,
            nc=self.nc,
        )


def _answer_fields(msg: SipMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": sipwire.status_code(msg),
        "reason": sipwire.reason_phrase(msg),
        "remote": True,
        "warning": msg.all("warning"),
        "reason_header": msg.all("reason"),
        "server": msg.first("server") or msg.first("user-agent"),
        "server_date": msg.first("date"),
    }
    via = sipwire.top_via(msg)
    if via:
        out["received"], out["rport"] = via_received(via)
    return out


def _options(reg: _Registration, deadline: float) -> dict[str, Any]:
    """The keep-alive a WebRTC softphone sends: does SIP answer on this WebSocket at all?"""
    probe = sipwire.probe_id(reg.ctx.run_id, "wsopt")
    data = sipwire.options_request(
        reg.uri, reg.target.transport, reg.local, reg.session.local_port, probe, reg.ctx.user_agent
    )
    wait = min(deadline, time.monotonic() + OPTIONS_WAIT)
    answer, rtt, ignored = reg.session.exchange(data, probe, "OPTIONS", None, wait)
    if answer is None:
        return {"code": None, "reason": None, "rtt_ms": None, "answered": False}
    return {
        "code": sipwire.status_code(answer),
        "reason": sipwire.reason_phrase(answer),
        "rtt_ms": rtt,
        "answered": True,
    }


def _register(
    ctx: Context, reg: _Registration, password: Secret, deadline: float, query: bool = False
) -> dict[str, Any]:
    """REGISTER, answer one challenge (again only for stale=true), un-REGISTER on 2xx.

    ``query``: the same without a Contact (RFC 3261 10.2.3): it checks the credentials and lists
    the account's bindings, and changes nothing."""
    s = ctx.settings
    auth_user = s.auth_user or s.user or ""
    contact = f"<sip:{reg.user}@{reg.local};transport=ws;sipdiag={ctx.run_id[:8]}>"  # RFC 7118 5.2
    label, expires = ("wsq", None) if query else ("wsreg", REGISTER_EXPIRES)
    out: dict[str, Any] = {"credentials": True, "challenged": False, "challenges": 0}
    out["challenge"] = None
    t0 = time.monotonic()
    keep = min(UNREGISTER_RESERVE + BASELINE_RESERVE, max(0.0, deadline - t0) * 0.3)
    answer, _ = reg.request(label, deadline - keep, None if query else contact, expires)
    while answer is not None and sipwire.status_code(answer) in (401, 407):
        out["challenged"] = True
        out["challenges"] += 1
        header = answer.first("www-authenticate") or answer.first("proxy-authenticate") or ""
        if out["challenge"] is None:
            out["challenge"] = parse_challenge(header)
        if not sipwire.answers_again(header, out["challenges"] - 1):
            break  # our answer to the challenge was not accepted: wrong credentials
        try:
            authorization = reg.authorization(answer, auth_user, password)
        except ValueError as exc:
            out["auth_error"] = str(exc)
            break
        answer, _ = reg.request(
            label, deadline - keep, None if query else contact, expires, authorization
        )
    out["duration_ms"] = round((time.monotonic() - t0) * 1000)
    out["ignored"] = reg.ignored
    out["registrar_answered"] = out["challenged"] or answer is not None
    if answer is None:
        out.update(
            outcome=o.TIMEOUT if time.monotonic() < deadline else o.NOT_FINISHED,
            code=0,
            remote=False,
            reason="no final answer to the REGISTER",
        )
        return out
    out.update(_answer_fields(answer))
    code = out["code"]
    out["call_id"] = reg.call_id
    if code // 100 != 2:
        out["outcome"] = o.REJECTED
        return out
    out["outcome"] = o.OK
    out["bindings"] = answer.all("contact")
    if query:
        return out
    out["expires"] = REGISTER_EXPIRES
    out["unregistered"] = _unregister(reg, contact, answer, auth_user, password, deadline)
    return out


def _register_if_harmless(
    ctx: Context, reg: _Registration, password: Secret, deadline: float
) -> dict[str, Any]:
    """The binding query first; a binding of ours only when the account has no other, or with
    --register-binding (sip.register's rule: a one-binding registrar would replace the
    softphone's). The query's attempt is kept in ``query``; the account's bindings in
    ``account_bindings``; bindings the query listed that our 200 OK no longer lists in
    ``replaced_bindings``."""
    query = cast(RegisterAttempt, _register(ctx, reg, password, deadline, query=True))
    contacts = cast(list[str], query.get("bindings") or [])  # the 200 OK's Contact values
    others = [cast(Binding, asdict(b)) for b in parse_bindings(list(contacts)) if not b.ours]
    plan = binding_plan([query], others, ctx.settings.register_binding)
    if not plan["create"]:
        return {**query, "account_bindings": others, "binding": plan}
    registered = cast(RegisterAttempt, _register(ctx, reg, password, deadline))
    registered["transport"] = reg.target.transport
    return {
        **registered,
        "query": query,
        "account_bindings": others,
        "binding": plan,
        "replaced_bindings": replaced_bindings(others, [registered]),
    }


def _unregister(
    reg: _Registration,
    contact: str,
    last: SipMessage,
    auth_user: str,
    password: Secret,
    deadline: float,
) -> bool:
    """Remove our binding at once (Expires: 0): the diagnostic must never take the agent's
    calls. Answers a fresh challenge once."""
    answer, _ = reg.request("wsunreg", deadline, contact, 0)
    if answer is not None and sipwire.status_code(answer) in (401, 407):
        try:
            authorization = reg.authorization(answer, auth_user, password)
        except ValueError:
            return False
        answer, _ = reg.request("wsunreg", deadline, contact, 0, authorization)
    return answer is not None and sipwire.status_code(answer) // 100 == 2


def _query(ctx: Context, target: WsTarget, user: str, deadline: float) -> dict[str, Any]:
    """A REGISTER without Contact or credentials for ``user`` on a new connection: what the
    registrar says about an account without touching its bindings (control probe and
    --no-register), in sip.register's baseline shape."""
    from websockets.exceptions import ConnectionClosed

    out: dict[str, Any] = {"transport": target.transport, "user": user, "credentials": False}
    try:
        with _open(ctx, target, deadline) as session:
            reg = _Registration(ctx, session, target, user)
            answer, rtt = reg.request("wsq", deadline)
            out["websocket"] = {**session.info, "stage": "sip"}
    except WsFailure as exc:
        return {**out, **_failure(exc), "remote": False}
    except ConnectionClosed as exc:
        reason = f"the server closed the WebSocket ({exc})"
        return {**out, "outcome": o.ERROR, "code": 0, "reason": reason, "remote": False}
    if answer is None:
        return {**out, "outcome": o.TIMEOUT, "code": 0, "reason": "no answer", "remote": False}
    fields = _answer_fields(answer)
    code = fields["code"]
    outcome = o.OK if code < 300 else o.CHALLENGED if code in (401, 407) else o.REJECTED
    header = answer.first("proxy-authenticate" if code == 407 else "www-authenticate")
    return {
        **out,
        **fields,
        "outcome": outcome,
        "challenged": outcome == o.CHALLENGED,
        "challenge": parse_challenge(header) if header and outcome == o.CHALLENGED else None,
        "call_id": reg.call_id,
        "rtt_ms": rtt,
        "duration_ms": rtt or 0,
    }


def _open(ctx: Context, target: WsTarget, deadline: float) -> AbstractContextManager[WsSession]:
    proxy = proxy_for(target, ctx.environ)
    return ws_session(target, ctx.settings.ca, proxy, ctx.user_agent, deadline)


def _failure(exc: WsFailure) -> dict[str, Any]:
    return {
        "outcome": exc.outcome,
        "code": 0,
        "reason": exc.error,
        "error": exc.error,
        "registrar_answered": False,
        "websocket": {**exc.info, "stage": exc.stage, "error": exc.error},
    }


def check_register_ws(ctx: Context) -> CheckResult:
    s = ctx.settings
    assert s.ws_url is not None  # `requires=("ws_url", ...)`
    target = WsTarget.parse(s.ws_url)
    deadline = ctx.deadline - 0.1 - CLOSE_TIMEOUT  # the connection must close in time too
    user = s.user or ""
    base: dict[str, Any] = {
        "transport": target.transport,
        "uri": target.url,
        "target": {"host": target.host, "port": target.port, "path": target.path},
    }
    if s.no_register:
        attempt = {**base, **_query(ctx, target, user, deadline)}
        return _result(ctx, target, cast(RegisterAttempt, attempt), None)
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "run on a terminal to be prompted, or use --no-register",
        )
    attempt = {**base, **_attempt(ctx, target, user, s.password, deadline)}
    baseline = None
    if attempt["outcome"] == o.REJECTED and ctx.remaining() > 0.3 + CLOSE_TIMEOUT:
        ghost = f"sipdiag-nobody-{uuid.uuid4().hex[:8]}"
        limit = ctx.monotonic() + min(ctx.remaining() - 0.2 - CLOSE_TIMEOUT, 2.0)
        baseline = {**base, **_query(ctx, target, ghost, limit)}
    return _result(
        ctx, target, cast(RegisterAttempt, attempt), cast("RegisterAttempt | None", baseline)
    )


def _attempt(
    ctx: Context, target: WsTarget, user: str, password: Secret, deadline: float
) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed

    out: dict[str, Any] = {}
    try:
        with _open(ctx, target, deadline) as session:
            out["websocket"] = {**session.info, "stage": "sip"}
            reg = _Registration(ctx, session, target, user)
            out["options"] = _options(reg, deadline)
            out.update(_register_if_harmless(ctx, reg, password, deadline))
    except WsFailure as exc:
        return {**_failure(exc), "remote": False, "credentials": True}
    except ConnectionClosed as exc:
        out.update(
            outcome=o.ERROR,
            code=0,
            remote=False,
            credentials=True,
            registrar_answered=False,
            reason=f"the server closed the WebSocket ({exc})",
        )
    return out


def _proxy_text(attempt: RegisterAttempt) -> str:
    proxy = (attempt.get("websocket") or {}).get("proxy")
    return f" via the proxy {proxy['url']} ({proxy['source']})" if proxy else ""


def ws_hint(attempt: RegisterAttempt, target: WsTarget, ca_given: bool) -> str:
    """The next concrete action for a WebSocket that did not open."""
    ws = attempt.get("websocket") or {}
    stage, outcome = ws.get("stage"), attempt["outcome"]
    proto = f"TCP {target.port} ({target.transport.upper()})"
    proxy = ws.get("proxy")
    if stage == "proxy" and outcome == o.ERROR:
        return (
            f"sipdiag cannot use this proxy ({attempt['error']}): pip install python-socks for a "
            "SOCKS proxy, or re-run with HTTPS_PROXY set to the HTTP proxy the browser uses"
        )
    if stage == "proxy" and proxy:
        return (
            f"the proxy {proxy['url']} ({proxy['source']}) refused the WebSocket tunnel to "
            f"{target.hostport} ({proxy.get('answer')}): ask IT to allow CONNECT to "
            f"{target.hostport} on the proxy, or exempt {target.host} in NO_PROXY"
        )
    if outcome == o.TLS_UNTRUSTED:
        given = " (the --ca file given does not verify it)" if ca_given else ""
        return (
            f"the WebSocket server's certificate is not trusted ({attempt['error']}): install "
            f"the platform's CA certificate or pass --ca FILE{given}; if a TLS-inspecting proxy "
            f"signs it, exempt {target.host} from inspection"
        )
    if stage == "upgrade":
        return (
            f"{target.hostport} did not accept a SIP WebSocket at {target.path} "
            f"({attempt['error']}): check --ws-url's path with the platform; a proxy or "
            "firewall that strips the Upgrade header does this too"
        )
    if outcome == o.TLS_FAILED:
        return (
            f"the TLS handshake with {target.hostport} failed: check that this port speaks "
            "WSS and that no proxy intercepts it"
        )
    if outcome == o.DNS_FAILURE:
        return f"{target.host} does not resolve: check --ws-url and this machine's DNS"
    if outcome == o.UNREACHABLE:
        return f"there is no route to {target.host}: check the network connection and VPN"
    if outcome == o.REFUSED:
        return (
            f"{target.hostport} refused the connection{_proxy_text(attempt)}: check --ws-url's "
            f"port and allow outbound {proto} to {target.host} in the firewall"
        )
    if outcome == o.TIMEOUT:
        return (
            f"allow outbound {proto} to {target.host} in the firewall/proxy"
            f"{' (nothing answered through ' + proxy['url'] + ')' if proxy else ''}"
        )
    if outcome == o.NOT_FINISHED:
        return "re-run with a larger --timeout"
    return f"quote the error ({attempt.get('reason')}) and the run id to the platform"


def _result(
    ctx: Context, target: WsTarget, attempt: RegisterAttempt, baseline: RegisterAttempt | None
) -> CheckResult:
    challenge_only = ctx.settings.no_register
    plan = attempt.pop("binding", None)
    created = plan is None or plan["create"]
    details: RegisterDetails = {
        "ws_url": target.url,
        "mode": "challenge_only" if challenge_only else "register" if created else "query",
        "attempts": [attempt],
        "baseline": baseline,
        "websocket": attempt.get("websocket"),
        "call_ids": [
            c for a in (attempt, *([baseline] if baseline else [])) if (c := a.get("call_id"))
        ],
    }
    if plan is not None:  # the account's bindings, as sip.register records them
        details["binding"] = plan
        details["bindings"] = attempt.pop("account_bindings", [])
        if "replaced_bindings" in attempt:
            details["replaced_bindings"] = attempt.pop("replaced_bindings")
    t = target.transport
    text = f"{t}: {attempt['code'] or ''} {attempt['reason']}".replace("  ", " ")
    if attempt["code"] == 0 and (attempt.get("websocket") or {}).get("stage") != "proxy":
        text += _proxy_text(attempt)  # the failure happened through the proxy: name it
    good = o.CHALLENGED if challenge_only else o.OK
    if attempt["outcome"] == good:
        if challenge_only:
            return passed(
                f"registrar challenges {ctx.settings.user} over {t} ({text}); nothing was "
                "registered (--no-register)",
                **details,
            )
        if not created and plan is not None:  # not created: the query's plan said no
            held = len(details["bindings"])
            return passed(
                f"registrar accepts the credentials over {t} ({text}); it holds {held} "
                f"binding(s) for {ctx.settings.user}; nothing was registered ({plan['reason']})",
                **details,
            )
        if details.get("replaced_bindings"):
            return failed(
                f"registered over {t} ({text}), and the registrar's 200 OK no longer lists "
                "the softphone's binding: this registrar keeps one registration per account, "
                "and sipdiag's test registration replaced the softphone's",
                REPLACED_ACTION,
                **details,
            )
        if not attempt.get("unregistered"):
            return warned(
                f"registered over {t} ({text}), but the un-REGISTER got no 2xx",
                f"our binding (Contact with ;sipdiag={ctx.run_id[:8]}) stays until it expires "
                f"({REGISTER_EXPIRES} s); check {ctx.settings.user}'s registrations on the "
                "platform",
                **details,
            )
        return passed(f"registered and un-registered over {t} ({text})", **details)
    if challenge_only and attempt["outcome"] == o.OK:
        return warned(
            f"the registrar answers a REGISTER query for {ctx.settings.user} over {t} without "
            f"asking for credentials ({text})",
            "ask the platform whether registration really needs no authentication",
            **details,
        )
    if attempt["outcome"] not in EVIDENCE:
        hint = ws_hint(attempt, target, bool(ctx.settings.ca))
        return CheckResult(
            Status.ERROR, f"REGISTER over {t} could not be tested: {text}", details, hint
        )
    if attempt.get("websocket", {}).get("stage") != "sip":
        hint = ws_hint(attempt, target, bool(ctx.settings.ca))
    else:
        hint = hint_for(attempt, [attempt], [t])
        if attempt["outcome"] == o.TIMEOUT:
            hint = ws_hint(attempt, target, bool(ctx.settings.ca))
    warning = f" ({attempt['warning'][0]})" if attempt.get("warning") else ""
    return failed(f"REGISTER over {t} rejected or unanswered: {text}{warning}", hint, **details)
