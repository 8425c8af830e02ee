"""Report contract v1: building the JSON document, writing it atomically, where it lives."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from checks import e164
from diag import __version__
from diag.config import Settings
from diag.context import CheckRun
from diag.model import Finding

SCHEMA_VERSION = 1


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_agent(run_id: str) -> str:
    """What every SIP request of the run carries, so central SIP logs can be searched for it."""
    return f"sipdiag/{__version__} run={run_id}"


def schema() -> dict[str, Any]:
    text = resources.files("diag").joinpath("report-schema-v1.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _correlation(runs: Sequence[CheckRun], host: Mapping[str, Any], ua: str) -> dict[str, Any]:
    call_ids: list[str] = []
    public: list[str] = []
    local: list[str] = []
    offset: int | None = None
    for run in runs:
        d = run.result.details
        call_ids += [c for c in d.get("call_ids", []) if c not in call_ids]
        public += [a for a in d.get("public_addresses", []) if a not in public]
        if d.get("local_address") and d["local_address"] not in local:
            local.append(d["local_address"])
        # host.clock's reading wins; any other check's (sip.register) fills in without it.
        if isinstance(d.get("clock_offset_ms"), int) and (
            offset is None or run.check.id == "host.clock"
        ):
            offset = d["clock_offset_ms"]
    for iface in host.get("interfaces", []):
        if iface["is_up"]:
            local += [a for a in iface["addresses"] if a not in local and not _loopback(a)]
    return {
        "user_agent": ua,
        "call_ids": call_ids,
        "local_addresses": local,
        "public_addresses": public,
        "clock_offset_ms": offset,
    }


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def build(
    *,
    run_id: str,
    settings: Settings,
    runs: Sequence[CheckRun],
    findings: Sequence[Finding],
    verdict: str,
    host: Mapping[str, Any],
    started_at: dt.datetime,
    finished_at: dt.datetime,
    duration_ms: int,
    complete: bool,
) -> dict[str, Any]:
    ua = user_agent(run_id)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "sipdiag", "version": __version__},
        "run_id": run_id,
        "started_at": rfc3339(started_at),
        "finished_at": rfc3339(finished_at),
        "duration_ms": duration_ms,
        "complete": complete,
        "host": dict(host),
        "agent": {
            "id": settings.agent_id,
            "sip_uri": settings.sip_uri,
            "numbers": list(settings.numbers),  # as typed: the contract
            "numbers_e164": [e164(n, settings.region) for n in settings.numbers],
        },
        "target": {
            "registrar": settings.registrar,
            "domain": settings.domain,
            "transports": list(settings.effective_transports),
            "ws_url": settings.ws_url,
        },
        "checks": [
            {
                "id": r.check.id,
                "title": r.check.title,
                "status": r.result.status.value,
                "summary": r.result.summary,
                "hint": r.result.hint,
                "duration_ms": r.result.duration_ms,
                "details": dict(r.result.details),
            }
            for r in runs
        ],
        "findings": [
            {
                "cause": f.cause,
                "family": f.family.value,
                "severity": f.severity.value,
                "title": f.title,
                "explanation": f.explanation,
                "action": f.action,
                "evidence": dict(f.evidence),
            }
            for f in findings
        ],
        "correlation": _correlation(runs, host, ua),
        "verdict": verdict,
    }


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: a crash never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def saved_report_path(run_id: str, started_at: dt.datetime) -> Path:
    """Every run's JSON report, under the user data directory (XDG_DATA_HOME on Linux)."""
    stamp = started_at.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return reports_dir() / f"sipdiag-{stamp}-{run_id[:8]}.json"


def reports_dir() -> Path:
    """Where every run's report (and its SIP trace, `<report>.sip.log`) is saved."""
    import platformdirs

    return Path(platformdirs.user_data_dir("sipdiag", appauthor=False)) / "reports"


def sip_log_path(report_path: Path) -> Path:
    """The run's scrubbed SIP message trace, saved next to its report."""
    return report_path.with_suffix(".sip.log")
