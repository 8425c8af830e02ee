"""Hostile saved reports: one bad file is skipped and listed, never the whole directory's
`fleet` or `match` (issue: hardening, defect 11)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli_process
from logdata import RealReports, make_real_reports
from peers.kamailio import Kamailio


@pytest.fixture(scope="module")
def reports(kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealReports]:
    yield make_real_reports(kamailio, tmp_path_factory.mktemp("hostile-reports"))


def hostile(report: dict[str, Any], run_id: str, change: str) -> dict[str, Any]:
    doc = copy.deepcopy(report)
    doc["run_id"] = run_id
    if change == "offset":
        doc["correlation"]["clock_offset_ms"] = 1e30
    elif change == "null-address":
        doc["correlation"]["public_addresses"] = [None]
    elif change == "null-number":
        doc["agent"]["numbers"] = [None, 5]
    return doc


@pytest.mark.parametrize("change", ["offset", "null-address", "null-number"])
def test_one_bad_report_is_skipped_and_listed_and_the_rest_still_count(
    reports: RealReports, tmp_path: Path, change: str
) -> None:
    root = tmp_path / "saved"
    root.mkdir()
    for name, report in (("ok", reports.ok), ("bad", reports.bad)):
        (root / f"{name}.json").write_text(json.dumps(report))
    evil = root / "evil.json"
    evil.write_text(json.dumps(hostile(reports.ok, "evil-run", change)))
    r = cli_process("fleet", str(root), "--format", "json")
    assert r.code == 0, r.err
    summary = r.json
    assert summary["reports_read"] == 2
    [skipped] = summary["skipped"]
    assert skipped["path"] == str(evil) and skipped["reason"].startswith("invalid sipdiag report")
    export = tmp_path / "export.csv"
    export.write_text(
        "time,agent,status\n"
        f"{reports.ok['started_at']},A-17,Failure (Rejected - SIP 403 Forbidden)\n"
    )
    m = cli_process("match", "--log", str(export), str(root), "--format", "json")
    assert m.code == 0, m.err
    assert [s["path"] for s in m.json["skipped_reports"]] == [str(evil)]
