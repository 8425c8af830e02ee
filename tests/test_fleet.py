"""`sipdiag fleet` over reports of real `sipdiag check` runs (Kamailio registrar on loopback)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli, cli_process
from logdata import PASSWORD, WRONG, RealReports, make_real_reports, skewed_copy, started
from peers.kamailio import Kamailio
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def reports(kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealReports]:
    yield make_real_reports(kamailio, tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def tree(reports: RealReports, tmp_path: Path) -> Path:
    """The reports spread over nested directories, plus files that are not reports."""
    root = tmp_path / "saved"
    (root / "site-a" / "2026").mkdir(parents=True)
    (root / "site-b").mkdir()
    for i, report in enumerate((reports.ok, reports.bad, reports.later, reports.host)):
        where = root / "site-a" / "2026" if i % 2 else root / "site-b"
        shutil.copy(reports.path(report), where / f"r{i}.json")
    (root / "site-b" / "notes.txt").write_text("not json, and not *.json either")
    (root / "site-b" / "package.json").write_text('{"name": "something else"}')
    (root / "site-a" / "broken.json").write_text('{"schema_version": 1, "run_id": ')
    (root / "site-a" / "dangling.json").symlink_to(tmp_path / "gone.json")
    return root


def fleet(*args: str) -> Any:
    r = cli("fleet", *args)
    assert r.code == 0, r.err
    return r


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_fleet_json_aggregates_verdicts_causes_and_changes(
    tree: Path, reports: RealReports
) -> None:
    s = fleet(str(tree), "--format", "json").json
    assert s["reports_read"] == 4
    assert s["verdicts"] == {"healthy": 2, "degraded": 0, "failing": 2}
    assert s["agent_verdicts"] == {"healthy": 1, "degraded": 0, "failing": 2}  # A-17 now fails
    assert s["findings_by_cause"] == [
        {"cause": "sip.credentials_rejected", "family": "registration", "reports": 2, "agents": 2}
    ]
    assert s["findings_by_family"] == {"registration": 2}
    (changed,) = s["verdict_changed"]
    assert changed["agent"] == "A-17" and changed["run_id"] == reports.later["run_id"]
    assert (changed["previous_verdict"], changed["verdict"]) == ("healthy", "failing")
    assert [a["agent"] for a in s["agents"]] == ["A-17", "A-18", "A-19"]
    assert sum(d["reports"] for d in s["by_day"]) == 4
    assert s["by_day"][0]["day"] == reports.ok["started_at"][:10]


def test_unreadable_and_foreign_json_is_skipped_and_counted_with_paths(tree: Path) -> None:
    s = fleet(str(tree), "--format", "json").json
    assert s["reports_skipped"] == 3
    assert [(Path(x["path"]).name, x["reason"]) for x in s["skipped"]] == [
        ("broken.json", "not valid JSON"),
        ("dangling.json", "unreadable"),
        ("package.json", "not a sipdiag report"),
    ]
    text = fleet(str(tree)).out
    assert "reports 4 (skipped 3)" in text
    assert f"skipped {tree / 'site-b' / 'package.json'}: not a sipdiag report" in text


def test_prom_output_parses_and_is_deterministic(tree: Path, reports: RealReports) -> None:
    first = fleet(str(tree), "--format", "prom").out
    assert first == fleet(str(tree), "--format", "prom").out
    got = samples(first)
    cause = (("cause", "sip.credentials_rejected"), ("family", "registration"))
    assert got[("sipdiag_findings", cause)] == 2
    assert got[("sipdiag_agents", (("verdict", "failing"),))] == 2
    assert got[("sipdiag_reports_skipped", ())] == 3
    last = got[("sipdiag_last_run_timestamp_seconds", (("agent", "A-17"),))]
    assert last == pytest.approx(started(reports.later).timestamp(), abs=0.001)
    assert got[("sipdiag_agent_verdict", (("agent", "A-19"), ("verdict", "healthy")))] == 1
    assert got[("sipdiag_agent_verdict", (("agent", "A-19"), ("verdict", "failing")))] == 0


def test_prom_escapes_awkward_agent_ids(reports: RealReports, tmp_path: Path) -> None:
    odd = skewed_copy(reports.host, 0, "0b1e5a1e-0000-4000-8000-0000000000aa")
    odd["agent"]["id"] = 'Smith, "J"\\desk\n2'
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    got = samples(fleet(str(tmp_path), "--format", "prom").out)
    assert (("sipdiag_last_run_timestamp_seconds", (("agent", odd["agent"]["id"]),))) in got


def test_ndjson_has_one_ecs_document_per_run_and_per_finding(
    tree: Path, reports: RealReports
) -> None:
    lines = fleet(str(tree), "--format", "ndjson").out.splitlines()
    every = [json.loads(line) for line in lines]
    runs = [d for d in every if d["event"]["dataset"] == "sipdiag.run"]
    docs = [d for d in every if d["event"]["dataset"] == "sipdiag.finding"]
    # Every report is a run document, healthy ones too, so dashboards can count them.
    all_reports = [reports.ok, reports.bad, reports.later, reports.host]
    assert sorted(d["event"]["id"] for d in runs) == sorted(r["run_id"] for r in all_reports)
    by_id = {d["event"]["id"]: d for d in runs}
    ok, bad = by_id[reports.ok["run_id"]], by_id[reports.bad["run_id"]]
    assert (ok["event"]["outcome"], ok["sipdiag"]["verdict"], ok["sipdiag"]["findings"]) == (
        "success", "healthy", 0,
    )  # fmt: skip
    assert (bad["event"]["outcome"], bad["log"]["level"]) == ("failure", "critical")
    assert bad["sipdiag"]["causes"] == ["sip.credentials_rejected"]
    assert every.index(bad) + 1 == every.index(
        next(d for d in docs if d["labels"]["run_id"] == reports.bad["run_id"])
    )  # a run's findings follow it
    assert len(docs) == 2  # the two reports with sip.credentials_rejected
    for doc in docs:
        assert doc["event"]["code"] == "sip.credentials_rejected"
        assert doc["event"]["kind"] == "event" and doc["event"]["category"] == ["authentication"]
        assert doc["event"]["dataset"] == "sipdiag.finding"
        assert doc["host"]["name"] == reports.bad["host"]["hostname"]
        assert doc["log"]["level"] == "critical" and doc["ecs"]["version"]
    assert [d["@timestamp"] for d in docs] == [
        reports.bad["started_at"],
        reports.later["started_at"],
    ]
    assert {d["user"]["id"] for d in docs} == {"A-17", "A-18"}


def test_since_keeps_only_newer_reports(reports: RealReports, tmp_path: Path) -> None:
    old = skewed_copy(reports.bad, -10 * 86_400_000, "0b1e5a1e-0000-4000-8000-0000000000bb")
    old["correlation"]["clock_offset_ms"] = None
    shutil.copy(reports.path(reports.ok), tmp_path / "ok.json")
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert fleet(str(tmp_path), "--format", "json").json["reports_read"] == 2
    for since in ("3d", reports.ok["started_at"][:10]):
        s = fleet(str(tmp_path), "--format", "json", "--since", since).json
        assert (s["reports_read"], s["excluded_by_since"]) == (1, 1), since


def test_md_and_text_name_the_failing_agents(tree: Path) -> None:
    md = fleet(str(tree), "--format", "md").out
    assert md.startswith("# sipdiag fleet\n")
    assert "| `sip.credentials_rejected` | registration | 2 | 2 |" in md
    assert "| A-18 | failing |" in md
    text = fleet(str(tree)).out
    assert "A-17: healthy -> failing" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "last tuesday"), "invalid --since 'last tuesday'"),
        (("--format", "xml"), "unknown --format 'xml'"),
    ],
)
def test_bad_options_exit_64(tree: Path, args: tuple[str, ...], message: str) -> None:
    r = cli("fleet", str(tree), *args)
    assert r.code == 64 and r.err.startswith(f"sipdiag: error: {message} (hint: ")


def test_a_missing_path_exits_64_and_an_empty_directory_reports_nothing(tmp_path: Path) -> None:
    r = cli("fleet", str(tmp_path / "nowhere"))
    assert r.code == 64 and "nowhere does not exist" in r.err
    s = fleet(str(tmp_path), "--format", "json").json
    assert (s["reports_read"], s["reports_skipped"], s["agents"]) == (0, 0, [])


def test_fleet_prom_as_a_real_process_for_a_textfile_collector(tree: Path) -> None:
    r = cli_process("fleet", "--format", "prom", str(tree))
    assert r.code == 0 and r.err == ""
    assert r.out.endswith("\n") and "sipdiag_findings{" in r.out


def test_no_password_reaches_any_fleet_output(tree: Path) -> None:
    for fmt in ("text", "json", "md", "prom", "ndjson"):
        out = fleet(str(tree), "--format", fmt).out
        assert PASSWORD not in out and WRONG not in out


def test_match_and_fleet_are_in_the_help_and_need_no_native_libraries(
    tree: Path, tmp_path: Path
) -> None:
    blockers = tmp_path / "blockers"
    blockers.mkdir()
    for name in ("pjsua2", "sounddevice", "psutil", "numpy"):
        (blockers / f"{name}.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
    help_text = cli_process("--help").out
    assert "match" in help_text and "fleet" in help_text
    r = cli_process("fleet", str(tree), "--format", "json", env={"PYTHONPATH": str(blockers)})
    assert r.code == 0 and "blocked by the test" not in r.err
    assert json.loads(r.out)["reports_read"] == 4


def test_skipping_the_checks_array_reads_the_same_report(reports: RealReports) -> None:
    from diag.logs.report_set import _without_checks

    for report in (reports.ok, reports.bad, reports.host):
        raw = reports.path(report).read_bytes()
        trimmed = json.loads(_without_checks(raw))
        assert "checks" not in trimmed and len(_without_checks(raw)) < len(raw)
        assert trimmed == {k: v for k, v in json.loads(raw).items() if k != "checks"}
    minified = json.dumps(reports.ok).encode()  # another layout: parsed whole
    assert _without_checks(minified) == minified
