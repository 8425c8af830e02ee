"""Evidence -> findings: rules, severities, verdict, and findings in the report."""

from __future__ import annotations

from typing import Any

import pytest

from diag.diagnosis import RULES, baseline_reading, diagnose, verdict
from diag.model import Check, CheckResult, CheckRun, Family, Severity, Status, passed


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
        (_attempt(404), _attempt(404), "knows no user in this domain"),
        (_attempt(404), _attempt(401, "challenged"), "this user is unknown"),
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


def test_an_untrusted_tls_certificate_is_critical_only_when_tls_is_configured() -> None:
    def options(configured: list[str]) -> CheckRun:
        transports = {"udp": {"outcome": "answered"}, "tls": {"outcome": "tls_untrusted"}}
        return _run(
            "net.sip-options", Status.WARN, transports=transports, configured_transports=configured
        )

    (finding,) = diagnose([options(["udp"])])
    assert (finding.cause, finding.severity) == ("network.tls_untrusted", Severity.WARNING)
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
