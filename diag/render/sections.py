"""What every human report shows, in one place, so text, Markdown and HTML agree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUSES = ("pass", "warn", "fail", "error", "skip")


def status_counts(report: Mapping[str, Any]) -> dict[str, int]:
    return {s: sum(c["status"] == s for c in report["checks"]) for s in STATUSES}


def _join(values: Any) -> str:
    if not values:
        return "none"
    return ", ".join(str(v) for v in values)


def run_facts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run in a few lines: when, where, against what."""
    host = report.get("host") or {}
    agent = report.get("agent") or {}
    target = report.get("target") or {}
    rows = [
        (
            "Run",
            f"{report['run_id']} ({report.get('started_at', '?')}, "
            f"{report.get('duration_ms', 0)} ms)",
        ),
        (
            "Host",
            f"{host.get('hostname', '?')} ({host.get('os', '?')} "
            f"{host.get('os_version', '')})".replace(" )", ")"),
        ),
        (
            "Registrar",
            f"{target.get('registrar') or 'not configured'}"
            + (
                f" ({', '.join(target.get('transports') or [])})" if target.get("registrar") else ""
            ),
        ),
    ]
    if agent.get("id") or agent.get("sip_uri") or agent.get("numbers"):
        parts = [agent.get("id") or "", agent.get("sip_uri") or "", *(agent.get("numbers") or [])]
        rows.append(("Agent", " ".join(p for p in parts if p)))
    rows.append(("sipdiag", str((report.get("tool") or {}).get("version", "?"))))
    return rows


def correlation_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What to search the platform's central logs for."""
    corr = report.get("correlation") or {}
    offset = corr.get("clock_offset_ms")
    return [
        ("Run id", str(report["run_id"])),
        ("User-Agent", str(corr.get("user_agent", ""))),
        ("Call-IDs", _join(corr.get("call_ids"))),
        ("Local addresses", _join(corr.get("local_addresses"))),
        ("Public addresses", _join(corr.get("public_addresses"))),
        ("Clock offset", "unknown" if offset is None else f"{offset:+d} ms"),
    ]
