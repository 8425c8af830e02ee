"""Evidence -> findings. Checks measure; this module decides what the measurements mean.

The rules are data: support staff can read RULES as
"cause <- check is <status> and <condition>", with the severity it gets, and OVERRIDES as
"a finding for <cause> is dropped when the same run shows <contradiction>": one truth per run.
Each SIP and network rule computes its finding's next action from its own evidence
(diag/actions.py), so findings raised by one check never share that check's single hint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from diag import actions as act
from diag import outcomes as o
from diag.actions import Action, SipRun, attempts, got_nothing, probed, silent
from diag.causes import CAUSES
from diag.context import CheckRun
from diag.evidence import RegisterAttempt, dial_details, evidence_text, register_details
from diag.model import SEVERITY_RANK, Finding, Severity, Status

Details = Mapping[str, Any]

_PROBLEM = frozenset({Status.WARN, Status.FAIL})
_FAIL = frozenset({Status.FAIL})
_ANY = frozenset({Status.PASS, Status.WARN, Status.FAIL, Status.ERROR})
TRANSPORT_CAUSES = {
    "udp": "network.udp_blocked",
    "tcp": "network.tcp_blocked",
    "tls": "network.tls_blocked",
}


# ---- sip.register: details["attempts"][i] is a RegisterAttempt (diag/evidence.py)

_first_rejected = act.first_rejected


def _credentials_rejected(d: Details) -> bool:
    """403 after we answered a challenge, or a repeated 401/407 (a single 401 with
    credentials means PJSIP could not answer the challenge at all: not a wrong password)."""
    a = _first_rejected(d)
    return a is not None and (
        (a["code"] == 403 and bool(a.get("challenged")))
        or (a["code"] in (401, 407) and a.get("challenges", 0) >= 2)
    )


def _forbidden_unchallenged(d: Details) -> bool:
    a = _first_rejected(d)
    return a is not None and a["code"] == 403 and not a.get("challenged")


def _rejected_with(want: Callable[[int], bool]) -> Callable[[Details], bool]:
    def when(d: Details) -> bool:
        a = _first_rejected(d)
        return a is not None and want(int(a["code"]))

    return when


def _server_error(d: Details) -> bool:
    """5xx, or an answer no softphone can use (a status outside 100-699, an absurd length)."""
    a = _first_rejected(d)
    return a is not None and (500 <= int(a["code"]) < 600 or bool(a.get("unusable")))


def _register_unreachable(d: Details) -> bool:
    tried = attempts(d)
    return bool(tried) and all(got_nothing(a) for a in tried)


def _register_silent(transport: str) -> Callable[[Details], bool]:
    return lambda d: any(a.get("transport") == transport and silent(a) for a in attempts(d))


def _register_refused(d: Details) -> bool:
    return bool(attempts(d)) and bool(act.refused_configured(d))


def _register_outcome(outcome: str) -> Callable[[Details], bool]:
    return lambda d: any(a.get("outcome") == outcome for a in attempts(d))


# ---- net.sip-options: details["transports"][t] is an OptionsTransport (diag/evidence.py)


def _options_silent(transport: str, configured: bool) -> Callable[[Details], bool]:
    def when(d: Details) -> bool:
        mine = probed(d).get(transport)
        return mine is not None and silent(mine) and act.is_configured(d, transport) == configured

    return when


def _options_configured_refused(d: Details) -> bool:
    return not attempts(d) and bool(act.refused_configured(d))


def _options_unreachable(d: Details) -> bool:
    per = probed(d)
    return bool(per) and all(got_nothing(v) for v in per.values())


def _options_tls_untrusted(configured: bool) -> Callable[[Details], bool]:
    def when(d: Details) -> bool:
        tls = probed(d).get("tls")
        untrusted = tls is not None and tls.get("outcome") == o.TLS_UNTRUSTED
        return untrusted and act.is_configured(d, "tls") == configured

    return when


# ---- explanations that quote the evidence


def _quote(a: RegisterAttempt) -> str:
    text = f"{a['transport'].upper()} REGISTER got {a['code']} {a['reason']}"
    if a.get("warning"):
        text += f" (Warning: {'; '.join(a['warning'])})"
    challenge = a.get("challenge")
    if a.get("challenged"):
        realm = challenge.get("realm") if challenge else None
        scheme = challenge.get("scheme") if challenge else None
        text += f" after a {scheme or 'digest'} challenge{f' realm {realm}' if realm else ''}"
        text += " that we answered"
    else:
        text += " without any challenge"
    return text


def baseline_reading(d: Details) -> str:
    """What the control probe (a user that cannot exist, no credentials) tells us."""
    ours, base = _first_rejected(d), register_details(d).get("baseline")
    if ours is None or not base or base.get("outcome") not in (o.REJECTED, o.CHALLENGED, o.OK):
        return ""
    code, b_code = ours["code"], base["code"]
    b_challenged = base.get("outcome") == o.CHALLENGED
    seen = f" Control probe: a user that cannot exist got {b_code} {base.get('reason') or ''}"
    seen = seen.rstrip() + (" (a challenge)" if b_challenged else "")
    if code == 403 and not ours.get("challenged") and b_code == 403:
        return (
            f"{seen}, the same as this account, so the registrar refuses this source (IP "
            "ACL, wrong domain or blocked network), not this account."
        )
    if code == 403 and (b_challenged or b_code == 404):
        return (
            f"{seen}, while this account got 403, so the refusal is specific to this "
            "account (disabled, suspended or wrong password)."
        )
    if code in (401, 407) and b_challenged:
        return (
            f"{seen}: the registrar challenges every user, and this account's answer to "
            "the challenge was not accepted."
        )
    user, domain = act.user_and_domain(d)
    if code == 404 and b_code == 404:
        return (
            f"{seen}, as this account did: the registrar answers 404 for every user, so it "
            f"gives no hint whether the user{f' ({user})' if user else ''} or the domain"
            f"{f' ({domain})' if domain else ''} is wrong."
        )
    if code == 404:
        return (
            f"{seen}, while this account got 404: the registrar does not know the user"
            f"{' ' + user if user else ''}."
        )
    if 500 <= code < 600 and 500 <= b_code < 600:
        return f"{seen}: the registrar fails for every user, a fault on the platform's side."
    return f"{seen}."


def _explain_register(d: Details) -> str:
    a = _first_rejected(d)
    return (f" Evidence: {_quote(a)}." if a else "") + baseline_reading(d)


# ---- number.dial-test: details are DialDetails (diag/evidence.py)


def _dial_code(want: Callable[[int], bool]) -> Callable[[Details], bool]:
    return lambda d: want(int(dial_details(d).get("code") or 0))


def _explain_dial(d: Details) -> str:
    call = dial_details(d).get("call")
    uri = call.get("uri") if call else None
    return f" Evidence: the test call to {uri} got {evidence_text(call)}."


def _has_problem(*names: str) -> Callable[[Details], bool]:
    return lambda d: any(p in names for p in d.get("problems", []))


@dataclass(frozen=True)
class Rule:
    cause: str
    check: str
    statuses: frozenset[Status]
    severity: Severity
    condition: str = ""  # the `when` predicate in words, for the README and support staff
    when: Callable[[Details], bool] | None = None
    explain: Callable[[Details], str] | None = None  # evidence quoted in the explanation
    # The finding's next action from this rule's own evidence and the run's (diag/actions.py);
    # without one, a single-cause check's hint (or details["actions"][cause]) is the action.
    action: Action | None = None


# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("host.vpn_active", "host.vpn", _PROBLEM, Severity.WARNING),
    Rule("host.vpn_active", "net.route", _PROBLEM, Severity.WARNING,
         "the route to the registrar goes through a VPN interface",
         lambda d: bool(d.get("is_vpn"))),
    Rule("host.clock_skew", "host.clock", _PROBLEM, Severity.WARNING),
    Rule("network.sip_alg", "net.sip-alg", _FAIL, Severity.CRITICAL,
         "the Via, Contact, SDP or STUN MAPPED-ADDRESS arrived rewritten"),
    Rule("network.udp_fragmentation", "net.udp-fragmentation", _FAIL, Severity.CRITICAL,
         "small UDP messages are answered, larger ones (fragmented) are lost"),
    Rule("network.stun_unreachable", "net.stun", _FAIL, Severity.WARNING,
         "no STUN server answers over UDP"),
    Rule("network.nat_restrictive", "net.nat", frozenset({Status.WARN}), Severity.WARNING,
         "address- or address-and-port-dependent NAT mapping"),
    Rule("network.media_blocked", "net.media", _FAIL, Severity.CRITICAL,
         "TURN or the media ports get nothing back, or the relay refuses to allocate",
         lambda d: d.get("problem") in ("blocked", "rejected", "media_blocked")),
    Rule("network.media_blocked", "net.media", _PROBLEM, Severity.WARNING,
         "UDP to the relay is blocked; media would be relayed over TCP",
         lambda d: d.get("problem") == "udp_blocked"),
    Rule("network.poor_quality", "net.quality", frozenset({Status.WARN}), Severity.WARNING,
         "RTT > 100 ms, jitter > 30 ms, loss > 1 % or MOS < 3.5"),
    Rule("network.poor_quality", "net.quality", _FAIL, Severity.CRITICAL,
         "MOS < 3.1 or loss > 5 %"),
    Rule("network.dns_failure", "net.dns", _FAIL, Severity.CRITICAL,
         "no requested transport has a resolvable target"),
    Rule("network.dns_failure", "sip.register", _FAIL, Severity.CRITICAL,
         "the registrar's name did not resolve", _register_outcome(o.DNS_FAILURE),
         action=act.dns_action),
    Rule("sip.credentials_rejected", "sip.register", _FAIL, Severity.CRITICAL,
         "403 after we answered a challenge, or a repeated 401/407",
         _credentials_rejected, _explain_register, act.credentials_action),
    Rule("sip.forbidden", "sip.register", _FAIL, Severity.CRITICAL,
         "403 without any challenge", _forbidden_unchallenged, _explain_register,
         act.forbidden_action),
    Rule("sip.binding_replaced", "sip.register", _FAIL, Severity.CRITICAL,
         "a binding the query listed is missing from the 200 OK to our own REGISTER",
         lambda d: bool(register_details(d).get("replaced_bindings"))),
    Rule("sip.not_found", "sip.register", _FAIL, Severity.CRITICAL,
         "the registrar answers 404", _rejected_with(lambda c: c == 404), _explain_register,
         act.not_found_action),
    Rule("sip.server_error", "sip.register", _FAIL, Severity.CRITICAL,
         "the registrar itself answers 5xx, or something a softphone cannot use",
         _server_error, _explain_register, act.server_error_action),
    Rule("network.tls_untrusted", "sip.register", _FAIL, Severity.CRITICAL,
         "PJSIP rejected the registrar's certificate", _register_outcome(o.TLS_UNTRUSTED),
         action=act.tls_action),
    Rule("network.tls_untrusted", "net.sip-options", _PROBLEM, Severity.CRITICAL,
         "TLS is configured and its certificate failed verification",
         _options_tls_untrusted(configured=True), action=act.tls_action),
    Rule("network.tls_untrusted", "net.sip-options", _ANY, Severity.INFO,
         "TLS is not configured, but its certificate would fail verification",
         _options_tls_untrusted(configured=False), action=act.tls_action),
    # Transport causes. Only silence or no route is a block; a refusal (TCP RST, ICMP port
    # unreachable) is the server saying nothing listens there. OVERRIDES keep exactly one of
    # registrar_unreachable and <t>_blocked, by whether any transport reached the registrar.
    Rule("network.registrar_unreachable", "sip.register", _FAIL, Severity.CRITICAL,
         "no REGISTER got anything back: each timed out, had no route, or was refused "
         "(nothing listens)", _register_unreachable, action=act.unreachable_action),
    Rule("network.registrar_unreachable", "net.sip-options", _FAIL, Severity.CRITICAL,
         "no transport's OPTIONS got anything back: each timed out, had no route, or was "
         "refused", _options_unreachable, action=act.unreachable_action),
    # A configured transport refused while another reached the registrar: the softphone cannot
    # register as configured (OVERRIDES: when nothing reached it, registrar_unreachable).
    Rule("sip.transport_not_offered", "sip.register", _FAIL, Severity.CRITICAL,
         "a REGISTER over a configured transport was refused (nothing listens) while another "
         "transport reached the registrar in the same run", _register_refused,
         action=act.not_offered_action),
    Rule("sip.transport_not_offered", "net.sip-options", _PROBLEM, Severity.CRITICAL,
         "a configured transport's OPTIONS was refused (nothing listens) while another "
         "transport reached the registrar in the same run", _options_configured_refused,
         action=act.not_offered_action),
    *(Rule(cause, "sip.register", _FAIL, Severity.CRITICAL,
           f"REGISTER over {t.upper()} got nothing back: silence or no route, not a refusal",
           _register_silent(t), action=act.blocked_action(t))
      for t, cause in TRANSPORT_CAUSES.items()),
    *(Rule(cause, "net.sip-options", _PROBLEM, Severity.CRITICAL,
           f"{t.upper()} is configured and its OPTIONS got nothing back: silence or no route, "
           "not a refusal", _options_silent(t, configured=True), action=act.blocked_action(t))
      for t, cause in TRANSPORT_CAUSES.items()),
    *(Rule(cause, "net.sip-options", _ANY, Severity.INFO,
           f"{t.upper()} is not configured (DNS publishes it, or --probe-all-transports) and "
           "its OPTIONS got nothing back: silence or no route",
           _options_silent(t, configured=False), action=act.blocked_action(t, configured=False))
      for t, cause in TRANSPORT_CAUSES.items()),
    Rule("number.invalid", "number.format", _FAIL, Severity.CRITICAL,
         "an agent number does not parse, or is not a valid number"),
    Rule("number.invalid", "number.dial-test", _FAIL, Severity.CRITICAL,
         "the test call got 404 or 484", _dial_code(lambda c: c in (404, 484)), _explain_dial),
    Rule("number.not_permitted", "number.policy", _FAIL, Severity.CRITICAL,
         "a deny rule (or the default) matches an agent number"),
    Rule("number.not_permitted", "number.dial-test", _FAIL, Severity.CRITICAL,
         "the test call got 403", _dial_code(lambda c: c == 403), _explain_dial),
    Rule("number.identity_mismatch", "number.identity", _FAIL, Severity.CRITICAL,
         "an agent number is not the registered SIP user's number"),
)
# fmt: on


# ---- sip.register-ws: the same attempt shape over SIP over WebSocket, so the same SIP rules
WS_SHARED_CAUSES = frozenset(
    {
        "network.dns_failure",
        "sip.binding_replaced",
        "sip.credentials_rejected",
        "sip.forbidden",
        "sip.not_found",
        "sip.server_error",
        "network.tls_untrusted",
    }
)


def _ws_blocked(d: Details) -> bool:
    """The WebSocket never carried a SIP answer: refused, silent, proxy or upgrade refused,
    TLS handshake failed (an untrusted certificate is network.tls_untrusted instead)."""
    return any(
        a.get("outcome") in o.NETWORK | {o.TLS_FAILED} and not a.get("registrar_answered")
        for a in attempts(d)
    )


# The WebSocket check's result holds one attempt, so its hint is that attempt's own step and
# names --ws-url: it stays the action where the cause is about reaching the server.
WS_OWN_HINT = frozenset({"network.dns_failure", "network.tls_untrusted"})

# fmt: off
RULES = RULES + tuple(
    replace(r, check="sip.register-ws",
            condition=r.condition.replace("PJSIP rejected", "the WebSocket's TLS rejected"),
            action=None if r.cause in WS_OWN_HINT else r.action)
    for r in RULES if r.check == "sip.register" and r.cause in WS_SHARED_CAUSES
) + (
    Rule("network.wss_blocked", "sip.register-ws", _FAIL, Severity.CRITICAL,
         "the WebSocket was refused, silent, refused by a proxy or at the upgrade, or its TLS "
         "handshake failed", _ws_blocked),
    Rule("audio.permission_denied", "audio.browser-mic", _FAIL, Severity.CRITICAL,
         "a browser profile blocks the microphone for the softphone's site"),
    # Audio devices and the softphone.
    Rule("audio.backend_unavailable", "audio.backend", _FAIL, Severity.CRITICAL,
         "PortAudio cannot be loaded, offers no host API, or hangs loading"),
    Rule("audio.no_input_device", "audio.devices", _FAIL, Severity.CRITICAL,
         "no input device, or none matching --input-device",
         _has_problem("no_input", "input_not_found")),
    Rule("audio.no_output_device", "audio.devices", _FAIL, Severity.CRITICAL,
         "no output device, or none matching --output-device",
         _has_problem("no_output", "output_not_found")),
    Rule("audio.input_unavailable", "audio.input", _FAIL, Severity.CRITICAL,
         "the microphone cannot be opened or delivers no samples"),
    Rule("audio.output_unavailable", "audio.output", _FAIL, Severity.CRITICAL,
         "the speaker or headset cannot be opened or does not take the audio",
         lambda d: d.get("problem") == "unavailable"),
    Rule("audio.input_silent", "audio.input", frozenset({Status.WARN}), Severity.WARNING,
         "digital silence or RMS below -70 dBFS", lambda d: d.get("problem") == "silent"),
    Rule("audio.permission_denied", "audio.permission", _FAIL, Severity.CRITICAL,
         "the OS privacy settings deny the microphone to the softphone (or to all apps)"),
    Rule("audio.permission_denied", "audio.permission", frozenset({Status.WARN}),
         Severity.WARNING, "some apps are denied the microphone and no softphone is named"),
    Rule("sip.not_registered", "sip.bindings", _FAIL, Severity.CRITICAL,
         "no binding but ours, while host.softphone found the softphone running",
         _has_problem("sip.not_registered")),
    Rule("sip.not_registered", "sip.bindings", frozenset({Status.WARN}), Severity.WARNING,
         "no binding but ours (the softphone was not found running, or not looked for)",
         _has_problem("sip.not_registered")),
    Rule("sip.extra_bindings", "sip.bindings", _PROBLEM, Severity.WARNING,
         "more than one binding besides ours: offers fork to every device",
         _has_problem("sip.extra_bindings")),
    Rule("sip.binding_unroutable", "sip.bindings", _PROBLEM, Severity.WARNING,
         "a binding's contact is a private address, the registrar sees this machine from "
         "another, and no received/alias/path/reg-id parameter routes back to it",
         _has_problem("sip.binding_unroutable")),
    Rule("network.inbound_blocked", "sip.inbound", _FAIL, Severity.CRITICAL,
         "the platform took our OPTIONS (or INVITE) to the agent's own address (100/408/480, "
         "or a fork) but no binding answered within the wait",
         lambda d: d.get("problem") == "network.inbound_blocked"),
    *(Rule("sip.binding_replaced", check, _FAIL, Severity.CRITICAL,
           "with --register-binding, the softphone's binding is missing from the 200 OK to "
           "the test binding of ours", lambda d: bool(d.get("replaced_bindings")))
      for check in ("sip.inbound", "net.idle")),
    Rule("network.nat_binding_short", "net.idle", _FAIL, Severity.CRITICAL,
         "a request from the platform was lost after an idle period shorter than the "
         "registration interval (or the STUN mapping died sooner)",
         lambda d: d.get("problem") == "network.nat_binding_short"),
    Rule("host.softphone_not_running", "host.softphone", _FAIL, Severity.CRITICAL,
         "no process has a configured softphone name", lambda d: d.get("problem") == "not_running"),
)
# fmt: on


# ---- one truth per run: a finding the rest of the run contradicts is dropped


@dataclass(frozen=True)
class Override:
    """Drop every `cause` finding when the whole run's SIP evidence shows `contradiction`."""

    cause: str
    contradiction: str  # in words, for the README and support staff
    when: Callable[[SipRun], bool]


def _reached_over(transport: str) -> Callable[[SipRun], bool]:
    return lambda run: run.reached(transport)


# fmt: off
OVERRIDES: tuple[Override, ...] = (
    Override("network.registrar_unreachable",
             "any transport reached the registrar (a SIP answer, a challenge or a TLS certificate "
             "in sip.register, net.sip-options or sip.register-ws): a silent transport is its "
             "udp/tcp/tls_blocked finding instead, a refused configured one its "
             "sip.transport_not_offered",
             lambda run: run.reached()),
    *(Override(cause, "no transport reached the registrar: that is "
               "network.registrar_unreachable", lambda run: not run.reached())
      for cause in (*TRANSPORT_CAUSES.values(), "sip.transport_not_offered")),
    *(Override(cause, f"{t.upper()} itself reached the registrar in the same run (e.g. OPTIONS "
               f"over {t.upper()} unanswered, REGISTER over {t.upper()} answered)",
               _reached_over(t))
      for t, cause in TRANSPORT_CAUSES.items()),
    Override("sip.binding_unroutable",
             "sip.inbound reached the softphone through the platform in the same run: the "
             "platform fixes NAT without marking the binding (e.g. a forced rport)",
             lambda run: run.inbound_reached),
)
# fmt: on


def diagnose(
    runs: Sequence[CheckRun],
    rules: Iterable[Rule] = RULES,
    overrides: Iterable[Override] = OVERRIDES,
) -> list[Finding]:
    by_id = {r.check.id: r for r in runs}
    sip_run = SipRun.of(runs)
    matched: dict[str, list[tuple[Rule, CheckRun]]] = {}
    for rule in rules:
        run = by_id.get(rule.check)
        if run is None or run.result.status not in rule.statuses:
            continue
        if rule.when is not None and not rule.when(run.result.details):
            continue
        matched.setdefault(rule.cause, []).append((rule, run))
    for override in overrides:
        if override.cause in matched and override.when(sip_run):
            del matched[override.cause]
    findings = [_finding(hits, sip_run) for hits in matched.values()]
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.cause))
    return findings


def _finding(hits: list[tuple[Rule, CheckRun]], sip_run: SipRun) -> Finding:
    cause = CAUSES[hits[0][0].cause]
    severity = max((rule.severity for rule, _ in hits), key=lambda s: SEVERITY_RANK[s])
    observed = "; ".join(f"{run.check.id}: {run.result.summary}" for _, run in hits)
    quoted = "".join(rule.explain(run.result.details) for rule, run in hits if rule.explain)
    evidence: dict[str, Any] = {"checks": [run.check.id for _, run in hits]}
    for _, run in hits:
        evidence[run.check.id] = {
            "status": run.result.status.value,
            "summary": run.result.summary,
            **run.result.details,
        }
    return Finding(
        cause=cause.id,
        family=cause.family,
        severity=severity,
        title=cause.title,
        explanation=f"{cause.meaning} Observed: {observed}.{quoted}",
        action=_action(cause.id, hits, sip_run) or cause.action,
        evidence=evidence,
    )


def _action(cause: str, hits: list[tuple[Rule, CheckRun]], sip_run: SipRun) -> str:
    """The first rule's own action; else, for a check that finds one cause at a time, its hint
    (a check that finds several at once names each one's step in details["actions"])."""
    for rule, run in hits:
        if rule.action is not None:
            return rule.action(run.result.details, sip_run)
    for _, run in hits:
        step = (run.result.details.get("actions") or {}).get(cause) or run.result.hint
        if step:
            return str(step)
    return ""


def verdict(findings: Iterable[Finding]) -> str:
    severities = {f.severity for f in findings}
    if Severity.CRITICAL in severities:
        return "failing"
    if Severity.WARNING in severities:
        return "degraded"
    return "healthy"
