"""Evidence -> findings. Checks measure; this module decides what the measurements mean.

The rules are data: support staff can read RULES as "cause <- check is <status> [and <condition>]".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diag.causes import CAUSES
from diag.model import SEVERITY_RANK, CheckRun, Finding, Severity, Status

Details = Mapping[str, Any]

_PROBLEM = frozenset({Status.WARN, Status.FAIL})
_FAIL = frozenset({Status.FAIL})


def _rejected(details: Details, want: Callable[[int], bool]) -> bool:
    """A REGISTER answer that really came from the registrar, with a matching code."""
    return any(
        a.get("outcome") == "rejected" and want(a.get("code", 0))
        for a in details.get("attempts", [])
    )


def _unreachable(details: Details) -> bool:
    """Every transport tried timed out, was refused or had no route: nothing answered."""
    attempts = details.get("attempts", [])
    return bool(attempts) and all(
        a.get("outcome") in ("timeout", "refused", "unreachable") for a in attempts
    )


@dataclass(frozen=True)
class Rule:
    cause: str
    check: str
    statuses: frozenset[Status]
    severity: Severity
    condition: str = ""  # the `when` predicate in words, for the README and support staff
    when: Callable[[Details], bool] | None = None


RULES: tuple[Rule, ...] = (
    Rule("host.vpn_active", "host.vpn", _PROBLEM, Severity.WARNING),
    Rule("host.clock_skew", "host.clock", _PROBLEM, Severity.WARNING),
    Rule(
        "sip.credentials_rejected",
        "sip.register",
        _FAIL,
        Severity.CRITICAL,
        "the registrar's final answer is 401/407",
        lambda d: _rejected(d, lambda c: c in (401, 407)),
    ),
    Rule(
        "sip.forbidden",
        "sip.register",
        _FAIL,
        Severity.CRITICAL,
        "the registrar answers 403",
        lambda d: _rejected(d, lambda c: c == 403),
    ),
    Rule(
        "sip.not_found",
        "sip.register",
        _FAIL,
        Severity.CRITICAL,
        "the registrar answers 404",
        lambda d: _rejected(d, lambda c: c == 404),
    ),
    Rule(
        "sip.server_error",
        "sip.register",
        _FAIL,
        Severity.CRITICAL,
        "the registrar answers 5xx",
        lambda d: _rejected(d, lambda c: 500 <= c < 600),
    ),
    Rule(
        "network.registrar_unreachable",
        "sip.register",
        _FAIL,
        Severity.CRITICAL,
        "no transport got any answer (timeouts, refused connections)",
        _unreachable,
    ),
)


def diagnose(runs: Sequence[CheckRun], rules: Iterable[Rule] = RULES) -> list[Finding]:
    by_id = {r.check.id: r for r in runs}
    matched: dict[str, tuple[Rule, list[CheckRun]]] = {}
    for rule in rules:
        run = by_id.get(rule.check)
        if run is None or run.result.status not in rule.statuses:
            continue
        if rule.when is not None and not rule.when(run.result.details):
            continue
        matched.setdefault(rule.cause, (rule, []))[1].append(run)
    findings = [_finding(rule, hits) for rule, hits in matched.values()]
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.cause))
    return findings


def _finding(rule: Rule, hits: list[CheckRun]) -> Finding:
    cause = CAUSES[rule.cause]
    observed = "; ".join(f"{h.check.id}: {h.result.summary}" for h in hits)
    hints = [h.result.hint for h in hits if h.result.hint]
    evidence: dict[str, Any] = {"checks": [h.check.id for h in hits]}
    for h in hits:
        evidence[h.check.id] = {
            "status": h.result.status.value,
            "summary": h.result.summary,
            **h.result.details,
        }
    return Finding(
        cause=cause.id,
        family=cause.family,
        severity=rule.severity,
        title=cause.title,
        explanation=f"{cause.meaning} Observed: {observed}.",
        # The check's hint names the concrete next step for this machine; the cause's action
        # is the general one.
        action=hints[0] if hints else cause.action,
        evidence=evidence,
    )


def verdict(findings: Iterable[Finding]) -> str:
    severities = {f.severity for f in findings}
    if Severity.CRITICAL in severities:
        return "failing"
    if Severity.WARNING in severities:
        return "degraded"
    return "healthy"
