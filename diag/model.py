"""The result vocabulary shared by checks, runner, diagnosis and renderers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Outcome of one check."""

    PASS = "pass"  # the healthy state holds
    WARN = "warn"  # works, but degrades calls or makes failures likely
    FAIL = "fail"  # the healthy state does not hold: explains failing calls
    SKIP = "skip"  # not applicable or not configured; the summary says why
    ERROR = "error"  # the probe itself broke (exception, timeout): no evidence either way


class Severity(str, enum.Enum):
    CRITICAL = "critical"  # explains failing calls
    WARNING = "warning"  # degrades calls or makes failures likely
    INFO = "info"


SEVERITY_RANK = {Severity.CRITICAL: 2, Severity.WARNING: 1, Severity.INFO: 0}


class Family(str, enum.Enum):
    AUDIO_DEVICE = "audio_device"
    NUMBER_PERMISSION = "number_permission"
    NETWORK_FIREWALL = "network_firewall"
    REGISTRATION = "registration"
    HOST = "host"
    OTHER = "other"


@dataclass(frozen=True)
class CheckResult:
    """What a check measured. Checks build these; they never print."""

    status: Status
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    hint: str | None = None
    duration_ms: int = 0
    traceback: str | None = None  # kept for --debug only, never in the report


def passed(summary: str, **details: Any) -> CheckResult:
    return CheckResult(Status.PASS, summary, details)


def warned(summary: str, hint: str, **details: Any) -> CheckResult:
    return CheckResult(Status.WARN, summary, details, hint)


def failed(summary: str, hint: str, **details: Any) -> CheckResult:
    return CheckResult(Status.FAIL, summary, details, hint)


def skipped(reason: str, hint: str | None = None, **details: Any) -> CheckResult:
    return CheckResult(Status.SKIP, reason, details, hint)


@dataclass(frozen=True)
class Finding:
    cause: str
    family: Family
    severity: Severity
    title: str
    explanation: str
    action: str
    evidence: Mapping[str, Any]
