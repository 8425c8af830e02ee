"""Real reports for `match` and `fleet` tests: `sipdiag check` runs against the test Kamailio."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clihelp import cli_process
from peers.kamailio import Kamailio

PASSWORD = "alice-secret"
WRONG = "not-alices-password-42"


@dataclass
class RealReports:
    directory: Path
    ok: dict[str, Any]  # A-17, right password: healthy, with Call-IDs
    bad: dict[str, Any]  # A-18, wrong password: failing with sip.credentials_rejected
    later: dict[str, Any]  # A-17 again, wrong password: its verdict changes to failing
    host: dict[str, Any]  # A-19, host checks only (no SIP)

    def path(self, report: dict[str, Any]) -> Path:
        return self.directory / f"{report['run_id']}.json"


def check_run(directory: Path, name: str, *args: str, password: str = PASSWORD) -> dict[str, Any]:
    out = directory / f"{name}.json"
    r = cli_process(
        "check",
        *args,
        "--format",
        "json",
        "--out",
        str(out),
        env={"SIPDIAG_PASSWORD": password, "XDG_DATA_HOME": str(directory.parent / "data")},
    )
    assert r.code in (0, 1), r.err
    report: dict[str, Any] = json.loads(out.read_text())
    out.rename(directory / f"{report['run_id']}.json")
    return report


def make_real_reports(kamailio: Kamailio, base: Path) -> RealReports:
    directory = base / "reports"
    directory.mkdir(parents=True)
    # sip.register alone: no softphone is registered here, so sip.bindings would warn.
    sip = (
        "--registrar", kamailio.registrar_uri("udp"), "--user", "alice", "--only", "sip.register",
    )  # fmt: skip
    ok = check_run(directory, "ok", *sip, "--agent-id", "A-17", "--number", "+442071234567")
    bad = check_run(directory, "bad", *sip, "--agent-id", "A-18", password=WRONG)
    later = check_run(directory, "later", *sip, "--agent-id", "A-17", password=WRONG)
    host = check_run(directory, "host", "--only", "host", "--agent-id", "A-19")
    return RealReports(directory, ok, bad, later, host)


def started(report: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(report["started_at"].replace("Z", "+00:00"))


def skewed_copy(report: dict[str, Any], offset_ms: int, run_id: str) -> dict[str, Any]:
    """The report as a machine whose clock is `offset_ms` ahead would have written it: its own
    timestamps shifted by the offset, and the offset it measured against the registrar."""
    copy = json.loads(json.dumps(report))
    shift = dt.timedelta(milliseconds=offset_ms)
    for key in ("started_at", "finished_at"):
        t = dt.datetime.fromisoformat(copy[key].replace("Z", "+00:00")) + shift
        copy[key] = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    copy["run_id"] = run_id
    copy["correlation"]["clock_offset_ms"] = offset_ms
    copy["correlation"]["call_ids"] = []
    return copy
