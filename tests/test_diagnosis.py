"""Evidence -> findings: rules, severities, verdict, and findings in the report."""

from __future__ import annotations

import re
from typing import Any

import pytest

from diag.context import Check, CheckRun
from diag.diagnosis import RULES, TRANSPORT_CAUSES, baseline_reading, diagnose, verdict
from diag.model import CheckResult, Family, Severity, Status, passed


def _run(check_id: str, status: Status, **details: Any) -> CheckRun:
    check = Check(check_id, "Title", lambda ctx: passed("x"))
    return CheckRun(check, CheckResult(status, f"{check_id} summary", details, "do the thing"))


def _attempt(code: int, outcome: str = "rejected", **extra: Any) -> dict[str, Any]:
    return {
        "transport": "udp",
        "outcome": outcome,
        "code": code,
        "reason": "R",
        "remote": outcome in ("ok", "rejected"),
        **extra,
    }


def test_a_vpn_warning_becomes_a_host_vpn_active_warning_finding() -> None:
    findings = diagnose([_run("host.vpn", Status.WARN, vpn_interfaces=[{"name": "tun0"}])])
    assert [(f.cause, f.family, f.severity) for f in findings] == [
        ("host.vpn_active", Family.HOST, Severity.WARNING)
    ]
    f = findings[0]
    assert f.evidence["checks"] == ["host.vpn"]
    assert f.evidence["host.vpn"]["vpn_interfaces"] == [{"name": "tun0"}]
    assert f.action == "do the thing"  # the check's concrete hint wins over the generic action
    assert "host.vpn summary" in f.explanation


def test_a_check_with_several_causes_gives_each_finding_its_own_action() -> None:
    actions = {
        "audio.no_input_device": "plug in a mic",
        "audio.no_output_device": "plug in a speaker",
    }
    run = _run("audio.devices", Status.FAIL, problems=["no_input", "no_output"], actions=actions)
    findings = diagnose([run])
    assert {f.cause: f.action for f in findings} == actions
    # Without a per-cause action the check's own hint stays the action of both.
    run = _run("audio.devices", Status.FAIL, problems=["no_input", "no_output"])
    assert {f.action for f in diagnose([run])} == {"do the thing"}


def test_passing_checks_raise_no_findings_and_the_verdict_is_healthy() -> None:
    findings = diagnose([_run("host.vpn", Status.PASS), _run("sip.register", Status.PASS)])
    assert findings == [] and verdict(findings) == "healthy"


def test_register_answers_map_to_sip_causes() -> None:
    cases = [
        (_attempt(403), "sip.forbidden"),
        (_attempt(403, challenged=True, challenges=1), "sip.credentials_rejected"),
        (_attempt(401, challenged=True, challenges=2), "sip.credentials_rejected"),
        (_attempt(407, challenged=True, challenges=3), "sip.credentials_rejected"),
        (_attempt(404), "sip.not_found"),
        (_attempt(503), "sip.server_error"),
    ]
    for attempt, cause in cases:
        findings = diagnose([_run("sip.register", Status.FAIL, attempts=[attempt])])
        assert [f.cause for f in findings] == [cause], attempt


def test_a_single_401_pjsip_could_not_answer_is_not_a_wrong_password() -> None:
    attempt = _attempt(401, challenged=True, challenges=1)
    assert diagnose([_run("sip.register", Status.FAIL, attempts=[attempt])]) == []


def test_a_challenge_then_silence_is_not_a_path_problem() -> None:
    attempts = [_attempt(408, "timeout", registrar_answered=True)]
    assert diagnose([_run("sip.register", Status.FAIL, attempts=attempts)]) == []


@pytest.mark.parametrize(
    ("ours", "baseline", "reading"),
    [
        (_attempt(403), _attempt(403), "refuses this source"),
        (_attempt(403, challenged=True), _attempt(401, "challenged"), "specific to this account"),
        (_attempt(403), _attempt(404), "specific to this account"),
        (
            _attempt(401, challenged=True, challenges=2),
            _attempt(401, "challenged"),
            "challenges every user",
        ),
        (_attempt(404), _attempt(404), "answers 404 for every user"),
        (_attempt(404), _attempt(401, "challenged"), "does not know the user"),
        (_attempt(503), _attempt(503), "fails for every user"),
    ],
)
def test_the_control_probe_is_read_against_our_own_answer(
    ours: dict[str, Any], baseline: dict[str, Any], reading: str
) -> None:
    assert reading in baseline_reading({"attempts": [ours], "baseline": baseline})


def test_no_reading_without_a_rejection_or_a_baseline_answer() -> None:
    assert baseline_reading({"attempts": [_attempt(200, "ok")], "baseline": None}) == ""
    timeout = _attempt(0, "timeout")
    assert baseline_reading({"attempts": [_attempt(403)], "baseline": timeout}) == ""


def test_an_untrusted_tls_certificate_is_critical_when_configured_and_info_otherwise() -> None:
    def options(configured: list[str]) -> CheckRun:
        transports = {"udp": {"outcome": "answered"}, "tls": {"outcome": "tls_untrusted"}}
        return _run(
            "net.sip-options", Status.WARN, transports=transports, configured_transports=configured
        )

    (finding,) = diagnose([options(["udp"])])
    assert (finding.cause, finding.severity) == ("network.tls_untrusted", Severity.INFO)
    (finding,) = diagnose([options(["tls"])])
    assert (finding.cause, finding.severity) == ("network.tls_untrusted", Severity.CRITICAL)


def test_local_timeouts_and_refusals_are_network_causes_not_sip_causes() -> None:
    attempts = [_attempt(408, "timeout"), _attempt(503, "refused"), _attempt(503, "unreachable")]
    findings = diagnose([_run("sip.register", Status.FAIL, attempts=attempts)])
    assert [f.cause for f in findings] == ["network.registrar_unreachable"]
    assert findings[0].family is Family.NETWORK_FIREWALL


def test_budget_exhaustion_and_local_errors_are_no_network_evidence() -> None:
    for other in ("not_finished", "local_error"):
        attempts = [_attempt(408, "timeout"), _attempt(0, other)]
        findings = diagnose([_run("sip.register", Status.FAIL, attempts=attempts)])
        assert findings == [], other


def test_findings_are_sorted_most_severe_first_and_decide_the_verdict() -> None:
    runs = [
        _run("host.vpn", Status.WARN),
        _run("sip.register", Status.FAIL, attempts=[_attempt(403)]),
    ]
    findings = diagnose(runs)
    assert [f.severity for f in findings] == [Severity.CRITICAL, Severity.WARNING]
    assert verdict(findings) == "failing"
    assert verdict(findings[1:]) == "degraded"


def test_every_rule_names_a_known_cause_and_a_registered_check() -> None:
    from checks import REGISTRY
    from diag.causes import CAUSES

    ids = {c.id for c in REGISTRY}
    for rule in RULES:
        assert rule.cause in CAUSES and rule.check in ids, rule


@pytest.mark.parametrize(
    ("problem", "status", "severity"),
    [
        ("blocked", Status.FAIL, Severity.CRITICAL),
        ("media_blocked", Status.FAIL, Severity.CRITICAL),
        ("rejected", Status.FAIL, Severity.CRITICAL),
        ("udp_blocked", Status.WARN, Severity.WARNING),
    ],
)
def test_a_closed_media_path_is_media_blocked(
    problem: str, status: Status, severity: Severity
) -> None:
    (finding,) = diagnose([_run("net.media", status, problem=problem)])
    assert (finding.cause, finding.severity) == ("network.media_blocked", severity)


def test_wrong_turn_credentials_are_not_a_blocked_media_path() -> None:
    assert diagnose([_run("net.media", Status.FAIL, problem="auth_failed")]) == []


def test_poor_quality_is_a_warning_or_critical_by_the_checks_status() -> None:
    (warn,) = diagnose([_run("net.quality", Status.WARN, loss_pct=2.0)])
    (fail,) = diagnose([_run("net.quality", Status.FAIL, loss_pct=20.0)])
    assert (warn.cause, warn.severity) == ("network.poor_quality", Severity.WARNING)
    assert (fail.cause, fail.severity) == ("network.poor_quality", Severity.CRITICAL)


@pytest.mark.parametrize(
    ("check", "cause"),
    [
        ("net.sip-alg", "network.sip_alg"),
        ("net.udp-fragmentation", "network.udp_fragmentation"),
    ],
)
def test_a_failed_alg_or_fragmentation_check_is_its_cause(check: str, cause: str) -> None:
    (finding,) = diagnose([_run(check, Status.FAIL)])
    assert (finding.cause, finding.severity) == (cause, Severity.CRITICAL)
    assert diagnose([_run(check, Status.PASS)]) == []
    assert diagnose([_run(check, Status.WARN)]) == []


def test_stun_and_nat_problems_are_warnings() -> None:
    (stun,) = diagnose([_run("net.stun", Status.FAIL)])
    (nat,) = diagnose([_run("net.nat", Status.WARN, mapping="address_and_port_dependent")])
    assert (stun.cause, stun.severity) == ("network.stun_unreachable", Severity.WARNING)
    assert (nat.cause, nat.severity) == ("network.nat_restrictive", Severity.WARNING)
    assert diagnose([_run("net.stun", Status.WARN)]) == []  # some server still answers


# ---- the run's SIP evidence: one truth per run, and each finding's own action

PBX = {"host": "pbx.example.com", "port": 5060, "address": "192.0.2.10"}


def _try(transport: str, outcome: str, code: int = 0, **extra: Any) -> dict[str, Any]:
    """One REGISTER attempt as sip.register records it."""
    port = 5061 if transport == "tls" else 5060
    return {
        **_attempt(code, outcome, **extra),
        "transport": transport,
        "target": {**PBX, "port": port},
    }


def _register(*attempts: dict[str, Any], **details: Any) -> CheckRun:
    good = all(a["outcome"] == "ok" for a in attempts)
    return _run(
        "sip.register", Status.PASS if good else Status.FAIL, attempts=list(attempts), **details
    )


def _options(configured: list[str], **outcomes: str) -> CheckRun:
    """net.sip-options: each transport's outcome; why_probed as the newer check records it."""
    transports = {
        t: {
            "outcome": outcome,
            "code": 200 if outcome == "answered" else None,
            "target": f"pbx.example.com:{5061 if t == 'tls' else 5060}",
            "why_probed": "configured" if t in configured else "all_transports",
        }
        for t, outcome in outcomes.items()
    }
    bad = any(transports[t]["outcome"] != "answered" for t in configured if t in transports)
    return _run(
        "net.sip-options",
        Status.FAIL if bad else Status.PASS,
        transports=transports,
        configured_transports=configured,
        probed_transports=list(outcomes),
    )


def _ws(outcome: str, code: int = 0) -> CheckRun:
    attempt = {"transport": "wss", "outcome": outcome, "code": code, "reason": "R"}
    return _run(
        "sip.register-ws", Status.PASS if outcome == "ok" else Status.FAIL, attempts=[attempt]
    )


def _causes(runs: list[CheckRun]) -> list[str]:
    return sorted(f.cause for f in diagnose(runs))


def _by_cause(runs: list[CheckRun]) -> dict[str, Any]:
    return {f.cause: f for f in diagnose(runs)}


def test_udp_dropped_with_tcp_open_is_udp_blocked_and_never_registrar_unreachable() -> None:
    # Issue 14: --transport udp only; the REGISTER over UDP is silent, OPTIONS over TCP answers.
    runs = [
        _register(_try("udp", "timeout", 408)),
        _options(["udp"], udp="timeout", tcp="answered"),
    ]
    findings = _by_cause(runs)
    assert list(findings) == ["network.udp_blocked"]
    f = findings["network.udp_blocked"]
    assert f.severity is Severity.CRITICAL
    assert f.evidence["checks"] == ["sip.register", "net.sip-options"]
    assert f.action == (
        "SIP over UDP to pbx.example.com:5060 is dropped (no answer); TCP reaches the "
        "registrar: switch the softphone to TCP, or allow outbound UDP 5060 to "
        "pbx.example.com in the firewall/VPN"
    )


# Override: network.registrar_unreachable <- any transport reached the registrar.
@pytest.mark.parametrize(
    "elsewhere",
    [
        _options(["udp"], udp="timeout", tcp="answered"),
        _options(["udp"], udp="timeout", tls="tls_untrusted"),  # a certificate came back
        _ws("rejected", 403),
        _run(
            "sip.register-ws",
            Status.FAIL,
            attempts=[{"transport": "wss", "outcome": "timeout", "registrar_answered": True}],
        ),
    ],
    ids=["options-tcp-answered", "options-tls-certificate", "ws-403", "ws-challenge-then-silence"],
)
def test_registrar_unreachable_is_dropped_when_any_transport_reached_the_registrar(
    elsewhere: CheckRun,
) -> None:
    alone = [_register(_try("udp", "timeout", 408))]
    assert "network.registrar_unreachable" in _causes(alone)
    causes = _causes([*alone, elsewhere])
    assert "network.registrar_unreachable" not in causes
    assert "network.udp_blocked" in causes  # the silent transport is named instead


# Override: network.<t>_blocked <- no transport reached the registrar.
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_a_silent_transport_is_no_block_when_nothing_reached_the_registrar(transport: str) -> None:
    runs = [_register(_try(transport, "timeout", 408))]
    assert _causes(runs) == ["network.registrar_unreachable"]
    runs = [_options([transport], **{transport: "timeout"})]
    assert _causes(runs) == ["network.registrar_unreachable"]


# Override: network.<t>_blocked <- that transport itself reached the registrar.
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_a_transport_is_not_blocked_when_it_reached_the_registrar_in_the_same_run(
    transport: str,
) -> None:
    other = "udp" if transport != "udp" else "tcp"
    options = _options([transport, other], **{transport: "timeout", other: "answered"})
    assert _causes([options]) == [f"network.{transport}_blocked"]
    # OPTIONS unanswered, REGISTER over the same transport answered: the registrar ignores
    # OPTIONS, the path is open.
    register = _register(_try(transport, "ok", 200), _try(other, "ok", 200))
    assert _causes([options, register]) == []


def test_a_refused_transport_is_not_offered_never_blocked_while_another_answers() -> None:
    register = _register(_try("tcp", "refused", 503), _try("udp", "ok", 200))
    options = _options(["tcp", "udp"], tcp="refused", udp="answered")
    for runs in ([register], [options], [register, options]):
        assert _causes(runs) == ["sip.transport_not_offered"], runs


def test_tcp_only_refused_while_udp_answers_options_is_transport_not_offered() -> None:
    # Issue 14: --transport tcp only; nothing listens on TCP 5060, UDP answers OPTIONS.
    runs = [
        _register(_try("tcp", "refused", 503)),
        _options(["tcp"], tcp="refused", udp="answered"),
    ]
    (f,) = diagnose(runs)
    assert (f.cause, f.family, f.severity) == (
        "sip.transport_not_offered",
        Family.REGISTRATION,
        Severity.CRITICAL,
    )
    assert f.evidence["checks"] == ["sip.register", "net.sip-options"]
    assert f.action == (
        "nothing listens on TCP pbx.example.com:5060; UDP reaches the registrar: switch the "
        "softphone to UDP, or ask the platform which port serves TCP"
    )
    assert verdict([f]) == "failing"
    # net.sip-options alone says the same.
    (alone,) = diagnose([runs[1]])
    assert (alone.cause, alone.action) == (f.cause, f.action)


def test_transport_not_offered_names_only_transports_that_answered() -> None:
    # TLS only gave an untrusted certificate: it reached the registrar, but is no way out.
    runs = [_options(["tcp"], tcp="refused", tls="tls_untrusted")]
    f = _by_cause(runs)["sip.transport_not_offered"]
    assert f.action == (
        "nothing listens on TCP pbx.example.com:5060 (connection refused): ask the platform "
        "which transport and port to use"
    )
    runs = [_options(["tcp", "tls"], tcp="refused", tls="refused", udp="answered")]
    (f,) = diagnose(runs)
    assert f.action == (
        "nothing listens on TCP pbx.example.com:5060 or TLS pbx.example.com:5061; UDP reaches "
        "the registrar: switch the softphone to UDP, or ask the platform which port serves TCP "
        "or TLS"
    )


def test_a_refusal_on_an_unconfigured_transport_is_no_finding() -> None:
    runs = [_options(["udp"], udp="answered", tcp="refused")]
    assert diagnose(runs) == [] and verdict([]) == "healthy"
    runs = [_register(_try("udp", "ok", 200)), _options(["udp"], udp="answered", tls="refused")]
    assert diagnose(runs) == []


# Override: sip.transport_not_offered <- no transport reached the registrar (and its pair,
# network.registrar_unreachable <- any transport reached it).
@pytest.mark.parametrize(
    "runs",
    [
        [_register(_try("tcp", "refused", 503))],
        [_options(["tcp"], tcp="refused")],
        [_options(["tcp"], tcp="refused", udp="refused")],
        [_register(_try("tcp", "refused", 503), _try("udp", "timeout", 408))],
    ],
    ids=["register-tcp", "options-tcp", "options-all-refused", "register-refused-and-silent"],
)
def test_refused_with_nothing_reaching_the_registrar_is_only_registrar_unreachable(
    runs: list[CheckRun],
) -> None:
    (f,) = diagnose(runs)
    assert f.cause == "network.registrar_unreachable"
    assert "nothing listens on pbx.example.com:5060 over TCP" in f.action


def test_refused_while_something_reached_the_registrar_is_only_transport_not_offered() -> None:
    runs = [
        _register(_try("tcp", "refused", 503)),
        _options(["tcp"], tcp="refused", udp="answered"),
    ]
    alone = [runs[0]]
    assert _causes(alone) == ["network.registrar_unreachable"]
    assert _causes(runs) == ["sip.transport_not_offered"]


def test_refused_on_every_transport_is_unreachable_and_names_the_port_nothing_listens_on() -> None:
    runs = [_register(_try("tcp", "refused", 503)), _options(["tcp"], tcp="refused")]
    (finding,) = diagnose(runs)
    assert finding.cause == "network.registrar_unreachable"
    assert finding.action == (
        "nothing listens on pbx.example.com:5060 over TCP (connection refused): check the "
        "registrar address and port"
    )


def test_a_black_hole_suggests_no_transport_that_was_refused_or_silent() -> None:
    runs = [
        _register(_try("udp", "timeout", 408), _try("tcp", "refused", 503)),
        _options(["udp", "tcp"], udp="timeout", tcp="refused", tls="timeout"),
    ]
    (finding,) = diagnose(runs)
    assert finding.cause == "network.registrar_unreachable"
    assert finding.action == (
        "nothing answers at pbx.example.com: allow outbound UDP 5060 to pbx.example.com in "
        "the firewall/VPN, and check that it is the right registrar; nothing listens on "
        "pbx.example.com:5060 over TCP (connection refused): check the registrar address and port"
    )


def test_an_unconfigured_transports_problem_is_information_only() -> None:
    runs = [_options(["udp"], udp="answered", tcp="timeout", tls="tls_untrusted")]
    findings = _by_cause(runs)
    assert {c: f.severity for c, f in findings.items()} == {
        "network.tcp_blocked": Severity.INFO,
        "network.tls_untrusted": Severity.INFO,
    }
    assert verdict(findings.values()) == "healthy"
    assert findings["network.tcp_blocked"].action.startswith(
        "nothing to do while the softphone does not use TCP; to use it, allow outbound TCP 5060"
    )


def test_options_details_without_why_probed_read_configured_transports() -> None:
    transports = {
        "udp": {"outcome": "timeout", "target": "pbx:5060"},
        "tcp": {"outcome": "answered"},
    }
    run = _run("net.sip-options", Status.FAIL, transports=transports, configured_transports=["udp"])
    (finding,) = diagnose([run])
    assert (finding.cause, finding.severity) == ("network.udp_blocked", Severity.CRITICAL)


# Realistic combinations: each finding's action speaks of its own transport and suggests only
# transports that got a SIP answer in the same run; only tls_untrusted speaks of certificates.
ACTION_CASES = [
    (
        "udp dropped, tcp registers",
        [_register(_try("udp", "timeout", 408), _try("tcp", "ok", 200))],
        {"TCP"},
        {"network.udp_blocked"},
    ),
    (
        "tls untrusted, udp registers",
        [
            _register(_try("udp", "ok", 200), _try("tls", "tls_untrusted")),
            _options(["udp", "tls"], udp="answered", tls="tls_untrusted"),
        ],
        {"UDP"},
        {"network.tls_untrusted"},
    ),
    (
        "tcp refused, udp registers",
        [_register(_try("tcp", "refused", 503), _try("udp", "ok", 200))],
        {"UDP"},
        {"sip.transport_not_offered"},
    ),
    (
        "tcp refused, udp silent",
        [_register(_try("tcp", "refused", 503), _try("udp", "timeout", 408))],
        set(),
        {"network.registrar_unreachable"},
    ),
    (
        "udp only, udp silent, tcp answers options, tls untrusted",
        [
            _register(_try("udp", "timeout", 408)),
            _options(["udp"], udp="timeout", tcp="answered", tls="tls_untrusted"),
        ],
        {"TCP"},
        {"network.udp_blocked", "network.tls_untrusted"},
    ),
    (
        "udp has no route, tls registers",
        [_register(_try("udp", "unreachable", 503), _try("tls", "ok", 200))],
        {"TLS"},
        {"network.udp_blocked"},
    ),
    (
        "403 over tcp while udp is silent",
        [_register(_try("udp", "timeout", 408), _try("tcp", "rejected", 403))],
        {"TCP"},
        {"network.udp_blocked", "sip.forbidden"},
    ),
    (
        "tls dropped, udp registers",
        [_register(_try("tls", "timeout", 408), _try("udp", "ok", 200))],
        {"UDP"},
        {"network.tls_blocked"},
    ),
    (
        "every transport silent",
        [
            _register(_try("udp", "timeout", 408), _try("tcp", "timeout", 408)),
            _options(["udp", "tcp"], udp="timeout", tcp="timeout", tls="timeout"),
        ],
        set(),
        {"network.registrar_unreachable"},
    ),
    (
        "404 for every user over udp, tcp dropped",
        [
            _register(
                _try("udp", "rejected", 404), _try("tcp", "timeout", 408), baseline=_attempt(404)
            )
        ],
        {"UDP"},
        {"sip.not_found", "network.tcp_blocked"},
    ),
]


@pytest.mark.parametrize(
    ("runs", "answered", "causes"),
    [case[1:] for case in ACTION_CASES],
    ids=[case[0] for case in ACTION_CASES],
)
def test_each_finding_acts_on_its_own_evidence(
    runs: list[CheckRun], answered: set[str], causes: set[str]
) -> None:
    findings = diagnose(runs)
    assert {f.cause for f in findings} == causes
    for f in findings:
        own = {c: t.upper() for t, c in TRANSPORT_CAUSES.items()}.get(f.cause)
        text = re.sub(r"\(TCP \d+\)", "", f.action)  # TLS's port is a TCP port
        named = set(re.findall(r"\b(UDP|TCP|TLS)\b", text))
        if own is not None:
            assert own in named and named - {own} <= answered, (f.cause, f.action)
        elif f.cause == "network.tls_untrusted":
            assert named <= {"TLS"}, f.action
        elif f.cause == "network.registrar_unreachable":
            assert "switch" not in f.action and "--transport" not in f.action, f.action
        elif f.cause == "sip.transport_not_offered":
            assert "firewall" not in f.action, f.action  # a refusal is the server's answer
        else:
            assert not named, (f.cause, f.action)
        for suggested in re.findall(r"(?:switch the softphone to|--transport) (\w+)", f.action):
            assert suggested.upper() in answered, (f.cause, f.action)
        certificate = bool(re.search(r"\bCA\b|certificate", f.action))
        assert certificate == (f.cause == "network.tls_untrusted"), (f.cause, f.action)


# ---- 404: the control probe tells a wrong user from a wrong domain, or cannot


def test_404_for_every_user_names_both_the_user_and_the_domain_used() -> None:
    run = _register(
        _try("udp", "rejected", 404), baseline=_attempt(404), user="alice", domain="pbx.test"
    )
    (finding,) = diagnose([run])
    assert finding.cause == "sip.not_found"
    assert (
        "the registrar answers 404 for every user, so it gives no hint whether the user (alice) "
        "or the domain (pbx.test) is wrong"
    ) in finding.explanation
    assert finding.action == (
        "check both the SIP user alice and the domain pbx.test against the platform's account: "
        "the registrar answers 404 even for a user that cannot exist, so either may be wrong"
    )


def test_404_for_our_user_only_says_the_registrar_does_not_know_that_user() -> None:
    run = _register(
        _try("udp", "rejected", 404),
        baseline=_attempt(401, "challenged"),
        user="alice",
        domain="pbx.test",
    )
    (finding,) = diagnose([run])
    assert "the registrar does not know the user alice." in finding.explanation
    assert finding.action == (
        "check the SIP user alice against the platform's account: the registrar does not know it"
    )


def test_without_a_domain_in_the_details_the_registrar_host_is_named() -> None:
    run = _register(
        _try("udp", "rejected", 404), baseline=_attempt(404), registrar="sip:pbx.example.com:5070"
    )
    (finding,) = diagnose([run])
    assert "the domain pbx.example.com" in finding.action
    assert "or the domain (pbx.example.com) is wrong" in finding.explanation


def test_404_without_a_control_answer_names_both_without_a_verdict() -> None:
    run = _register(_try("udp", "rejected", 404), user="alice", domain="pbx.test")
    (finding,) = diagnose([run])
    assert finding.action == (
        "check the SIP user alice and the domain pbx.test against the platform's account"
    )


# ---- docs/diagnosis.md documents the rules and overrides as they are (the cause table is README's)


def _diagnosis_doc() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md").read_text()


def _when(rule: Any) -> str:
    if rule.condition:
        return str(rule.condition)
    order = [Status.FAIL, Status.WARN, Status.PASS, Status.ERROR]
    return "the check is " + " or ".join(s.value for s in order if s in rule.statuses)


def test_the_diagnosis_doc_lists_every_rule_in_order_with_its_condition_and_severity() -> None:
    rows = [line for line in _diagnosis_doc().splitlines() if line.count(" | ") == 3]
    expected = [f"| `{r.cause}` | `{r.check}` | {_when(r)} | {r.severity.value} |" for r in RULES]
    assert rows[1:] == expected  # rows[0] is the header


def test_the_diagnosis_doc_lists_every_override() -> None:
    from diag.diagnosis import OVERRIDES

    rows = [line for line in _diagnosis_doc().splitlines() if line.count(" | ") == 1]
    assert rows[1:] == [f"| `{o.cause}` | {o.contradiction} |" for o in OVERRIDES]


def test_the_readme_cause_table_quotes_each_causes_meaning_and_action() -> None:
    from pathlib import Path

    from diag.causes import CAUSES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for cause in CAUSES.values():  # that each cause has a row at all is test_meta's
        row = re.search(rf"^\| `{re.escape(cause.id)}` \| `[a-z_]+` \| .+ \|$", readme, re.M)
        if row:
            family = cause.family.value
            assert row[0] == f"| `{cause.id}` | `{family}` | {cause.meaning} | {cause.action} |"
