"""`sipdiag match`: what a report's sip.inbound and net.idle results add to a 403 or No Answer row
(evidence with its time), and the rows of sipdiag's own `--inbound-call` test, labelled.

The reports are real `sipdiag check` reports: runs against the inbound test bed (Kamailio routing
requests to users, baresip behind a NAT, an agent firewall: tests/README.md §Inbound), and, for
the results that bed cannot produce on demand, tests/logdata.py's reports (Kamailio on loopback)
with the two checks' results added as the report format carries them, written as sipdiag writes
reports (diag/report.py) or compact, as another tool might."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli
from logdata import RealReports, make_real_reports, skewed_copy
from peers.inbound import PASSWORD, InboundBed
from peers.kamailio import Kamailio

from diag.logs import inbound
from diag.render.match import MATCH_COLUMNS
from diag.report import rfc3339, to_json

HEADER = "Date/Time;Agent;Status;Call ID;Subject"
FORBIDDEN = "Failure (Rejected – SIP 403 Forbidden)"
NO_ANSWER = "Failure (No Answer)"
DECLINE = "Failure (Rejected – SIP 603 Decline)"
T = dt.datetime(2026, 11, 27, 14, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def reports(kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealReports]:
    yield make_real_reports(kamailio, tmp_path_factory.mktemp("match-inbound"))


def at(t: dt.datetime, seconds: float = 0) -> str:
    return rfc3339(t + dt.timedelta(seconds=seconds))


def check(cid: str, status: str, summary: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid, "title": f"title of {cid}", "status": status, "summary": summary,
        "hint": None, "duration_ms": 40, "details": details,
    }  # fmt: skip


def blocked_inbound(t: dt.datetime, method: str = "OPTIONS", **more: Any) -> dict[str, Any]:
    """sip.inbound as it reads when the platform took the request and no binding answered."""
    return check(
        "sip.inbound",
        "fail",
        "the platform took our OPTIONS for 1001 but no binding answered",
        {
            "mode": "softphone", "method": method, "transport": "udp", "token": "tok",
            "call_id": "opt-1@sipdiag", "call_ids": ["opt-1@sipdiag"], "run_id": "r",
            "request_uri": "sip:1001@pbx.test", "for_bindings": ["sip:1001@192.168.1.20:5060"],
            "seen_from": {"address": "203.0.113.9", "port": 40112, "transport": "udp"},
            "sent_at": at(t, 1), "provisional": [100],
            "final": {"code": 480, "reason": "Temporarily Unavailable", "by": "registrar",
                      "user_agent": None, "rtt_ms": 4012},
            "platform_took": True, "arrived": None, "problem": "network.inbound_blocked",
            **more,
        },
    )  # fmt: skip


def short_idle(t: dt.datetime) -> dict[str, Any]:
    """net.idle: inbound still arrived after 30 s of silence on UDP, not after 90 s."""
    period = {"transport": "udp", "skipped": None, "expires_granted": 600,
              "closed_by_network": False}  # fmt: skip
    return check(
        "net.idle",
        "fail",
        "inbound failed after 90 s idle on UDP",
        {
            "periods": [
                {**period, "seconds": 30, "arrived": True, "started_at": at(t, 5),
                 "checked_at": at(t, 35)},
                {**period, "seconds": 90, "arrived": False, "started_at": at(t, 36),
                 "checked_at": at(t, 126)},
            ],
            "registration_interval": 3600,
            "stun": None,
            "problem": "network.nat_binding_short",
        },
    )  # fmt: skip


def finding(cause: str, title: str) -> dict[str, Any]:
    return {"cause": cause, "family": "network_firewall", "severity": "critical", "title": title,
            "explanation": "e", "action": "a", "evidence": {"checks": ["sip.inbound"]}}  # fmt: skip


def report_with(
    real: dict[str, Any],
    run_id: str,
    agent: str,
    started: dt.datetime,
    checks: list[dict[str, Any]],
    findings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A real report, as if it had started at `started`, with these check results added."""
    doc = skewed_copy(real, 0, run_id)
    doc["agent"]["id"] = agent
    doc["started_at"], doc["finished_at"] = at(started), at(started, 130)
    doc["checks"] = [*doc["checks"], *checks]
    doc["findings"] = findings or []
    doc["correlation"]["call_ids"] = [
        c for r in checks for c in r["details"].get("call_ids", [])
    ]  # as diag/report.py gathers them from every check
    return doc


def save(directory: Path, doc: dict[str, Any], sipdiag_layout: bool = True) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{doc['run_id']}.json"
    path.write_text(to_json(doc) if sipdiag_layout else json.dumps(doc))
    return path


def export(path: Path, rows: list[tuple[dt.datetime, str, str, str, str]]) -> Path:
    lines = [";".join((t.strftime("%d/%m/%Y %H:%M:%S"), *rest)) for t, *rest in rows]
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def match(log: Path, *args: str) -> CliResult:
    r = cli("match", "--log", str(log), *args)
    assert r.code == 0, r.err
    return r


def by_line(result: CliResult) -> dict[int, dict[str, Any]]:
    return {row["line"]: row for row in result.json["rows"]}


BLOCKED_AT_14_00 = (
    "at 14:00 UTC, requests from the platform did not reach this machine (sip.inbound: "
    "network.inbound_blocked, OPTIONS over UDP, the platform answered 480 Temporarily "
    "Unavailable)"
)
IDLE_AT_14_02 = (
    "at 14:02 UTC, inbound failed after 90 s idle on UDP but still arrived after 30 s "
    "(registration interval 3600 s, net.idle: network.nat_binding_short)"
)


@pytest.mark.parametrize("sipdiag_layout", [True, False], ids=["sipdiag-layout", "compact"])
def test_a_403_and_a_no_answer_row_carry_what_sip_inbound_and_net_idle_found(
    reports: RealReports, tmp_path: Path, sipdiag_layout: bool
) -> None:
    run_id = "0b1e5a1e-0000-4000-8000-00000000b10c"
    title = "Requests from the platform do not reach this machine"
    doc = report_with(
        reports.ok, run_id, "A-90", T, [blocked_inbound(T), short_idle(T)],
        [finding("network.inbound_blocked", title)],
    )  # fmt: skip
    save(tmp_path / "reports", doc, sipdiag_layout)
    log = export(
        tmp_path / "audit.csv",
        [
            (T + dt.timedelta(minutes=10), "A-90", FORBIDDEN, "c1@platform", ""),  # line 2
            (T + dt.timedelta(minutes=20), "A-90", NO_ANSWER, "c2@platform", ""),  # line 3
            (T + dt.timedelta(minutes=30), "A-90", DECLINE, "c3@platform", ""),  # line 4
        ],
    )
    rows = by_line(match(log, str(tmp_path / "reports"), "--format", "json"))
    for line in (2, 3):
        assert rows[line]["run_id"] == run_id and rows[line]["label"] is None
        assert rows[line]["evidence"] == [BLOCKED_AT_14_00, IDLE_AT_14_02]
        assert rows[line]["likely_cause"].startswith(
            "network.inbound_blocked (Requests from the platform do not reach this machine) in "
            "report 0b1e5a1e"
        )
    # A Decline is the agent's (or another device's) doing: the inbound leg is no evidence on it.
    assert rows[4]["run_id"] == run_id and rows[4]["evidence"] == []

    text = match(log, str(tmp_path / "reports")).out.splitlines()
    assert text[0].startswith("2026-11-27T14:10:00Z  A-90  Failure (Rejected – SIP 403 Forbidden)")
    assert text[1:3] == [f"      evidence: {BLOCKED_AT_14_00}", f"      evidence: {IDLE_AT_14_02}"]
    assert text[3].startswith("2026-11-27T14:20:00Z  A-90  Failure (No Answer)")
    assert text[6].startswith("2026-11-27T14:30:00Z  A-90  Failure (Rejected – SIP 603 Decline)")
    assert not text[7].startswith("      evidence")

    table = list(
        csv.reader(io.StringIO(match(log, str(tmp_path / "reports"), "--format", "csv").out))
    )
    assert table[0] == list(MATCH_COLUMNS) and table[0][-2:] == ["label", "evidence"]
    assert table[1][-1] == f"{BLOCKED_AT_14_00}; {IDLE_AT_14_02}" and table[3][-1] == ""


def test_a_passing_inbound_test_is_evidence_too_and_a_row_on_another_day_gets_the_date(
    reports: RealReports, tmp_path: Path
) -> None:
    late = dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.timezone.utc)
    reached = check(
        "sip.inbound",
        "pass",
        "the softphone answered our OPTIONS through the platform",
        {
            "mode": "softphone", "method": "OPTIONS", "transport": "tls", "sent_at": at(late, 2),
            "final": {"code": 200, "reason": "OK", "by": "binding",
                      "user_agent": "baresip v2.9.0 (x86_64/Linux)", "rtt_ms": 31},
            "platform_took": True, "problem": None,
        },
    )  # fmt: skip
    doc = report_with(reports.ok, "0b1e5a1e-0000-4000-8000-0000000000de", "A-91", late, [reached])
    save(tmp_path / "reports", doc)
    next_day = dt.datetime(2026, 11, 28, 0, 15, tzinfo=dt.timezone.utc)
    log = export(
        tmp_path / "audit.csv",
        [
            (late + dt.timedelta(minutes=5), "A-91", NO_ANSWER, "c1@platform", ""),
            (next_day, "A-91", NO_ANSWER, "c2@platform", ""),
        ],
    )
    reached_line = (
        "a request from the platform reached the softphone (sip.inbound: OPTIONS over TLS, "
        "200 OK from baresip v2.9.0 (x86_64/Linux))"
    )
    rows = by_line(match(log, str(tmp_path / "reports"), "--format", "json"))
    assert rows[2]["evidence"] == [f"at 23:30 UTC, {reached_line}"]
    assert rows[3]["evidence"] == [f"at 2026-11-27 23:30 UTC, {reached_line}"]
    assert rows[3]["likely_cause"].startswith("report 0b1e5a1e found nothing that explains it")


def test_the_rows_of_sipdiags_own_inbound_test_call_are_labelled_in_text_and_json(
    reports: RealReports, tmp_path: Path
) -> None:
    """By the INVITE's Call-ID (the row is paired with its report by it), or by a column that
    holds "sipdiag inbound test", or the run id of a report whose sip.inbound sent an INVITE (in
    a column that says "sipdiag", as its User-Agent does, or one named after sipdiag)."""
    run_id = "0b1e5a1e-0000-4000-8000-00000000ca11"
    invite = blocked_inbound(
        T, "INVITE", call_id="inbound-test-7@sipdiag", call_ids=["inbound-test-7@sipdiag"],
        problem=None, final={"code": 603, "reason": "Decline", "by": "binding"},
    )  # fmt: skip
    invite["status"] = "pass"
    save(tmp_path / "reports", report_with(reports.ok, run_id, "A-92", T, [invite]))
    other = "0b1e5a1e-0000-4000-8000-00000000ca12"  # an OPTIONS test only: never labels a row
    save(tmp_path / "reports", report_with(reports.ok, other, "A-93", T, [blocked_inbound(T)]))
    minute = dt.timedelta(minutes=1)
    ua = "sipdiag/0.1.0 run="  # the User-Agent of every request sipdiag sends, our 603 included
    rows = [
        ("A-92", "inbound-test-7@sipdiag", "", ""),  # line 2: the INVITE's Call-ID
        ("A-92", "x1@platform", ua + run_id, ""),  # line 3: the run id, in any column
        ("A-99", "x2@platform", "", run_id),  # line 4: in a column named after sipdiag's header
        ("A-99", "x3@platform", "sipdiag inbound test", ""),  # line 5: the Subject's words
        ("A-92", "x4@platform", "Sales", ""),  # line 6: the agent pressed Decline
        ("A-93", "opt-1@sipdiag", ua + other, ""),  # line 7: sipdiag's OPTIONS, not a call
    ]
    log = tmp_path / "audit.csv"
    log.write_text(
        "Date/Time;Agent;Status;Call ID;Notes;X-Sipdiag-Run\n"
        + "".join(
            f"{(T + (i + 1) * minute).strftime('%d/%m/%Y %H:%M:%S')};{agent};{DECLINE};{cid};"
            f"{notes};{header}\n"
            for i, (agent, cid, notes, header) in enumerate(rows)
        )
    )
    result = match(log, str(tmp_path / "reports"), "--format", "json")
    assert result.json["summary"]["inbound_tests"] == 4
    found = by_line(result)
    test_call = (
        "sipdiag inbound test: the INVITE of `sipdiag check --inbound-call` in report 0b1e5a1e, "
        "declined by sipdiag on purpose; not an offer to the agent that failed"
    )
    assert found[2]["matched_by"] == "call_id" and found[2]["run_id"] == run_id
    for line in (2, 3, 4):
        assert (found[line]["label"], found[line]["likely_cause"]) == (inbound.LABEL, test_call)
    assert found[4]["run_id"] is None  # no report of agent A-99: the run id still names it
    assert found[5]["label"] == inbound.LABEL and found[5]["run_id"] is None
    assert found[5]["likely_cause"] == test_call.replace(" in report 0b1e5a1e", "")
    for line in (6, 7):
        assert found[line]["label"] is None
        assert found[line]["likely_cause"].startswith("agent action: The agent pressed Decline")

    text = match(log, str(tmp_path / "reports")).out.splitlines()
    assert [line.split("  -> ")[1].startswith(inbound.LABEL) for line in text[:6]] == [
        True, True, True, True, False, False,
    ]  # fmt: skip
    assert (
        "labelled 4 as sipdiag inbound test (sipdiag's own test calls, not failed offers)" in text
    )


def test_a_json_lines_export_is_searched_for_the_label_in_every_field(
    reports: RealReports, tmp_path: Path
) -> None:
    save(tmp_path / "reports", report_with(reports.ok, "0b1e5a1e-0000-4000-8000-0000000000aa",
                                           "A-94", T, [short_idle(T)]))  # fmt: skip
    log = tmp_path / "events.jsonl.gz"
    events = [
        {"ts": at(T, 60), "user": "A-94", "result": DECLINE,
         "sip": {"subject": "sipdiag inbound test run=0b1e5a1e"}},
        {"ts": at(T, 90), "user": "A-94", "result": NO_ANSWER, "note": "caller hung up"},
    ]  # fmt: skip
    with gzip.open(log, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events)
    rows = by_line(match(log, str(tmp_path / "reports"), "--format", "json"))
    assert rows[1]["label"] == inbound.LABEL and rows[2]["label"] is None
    assert rows[2]["evidence"] == [IDLE_AT_14_02]


# ---- reports of real runs against the inbound test bed


def bed_report(bed: InboundBed, directory: Path, agent: str, *extra: str) -> dict[str, Any]:
    """`sipdiag check --only sip` in the bed's agent namespace; its report saved in `directory`
    as the run printed it (sipdiag's own layout)."""
    r = bed.run_sipdiag(
        ["check", "--registrar", bed.registrar("udp"), "--user", "alice", "--only", "sip",
         "--agent-id", agent, "--format", "json", *extra],
        env={"SIPDIAG_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert r.code in (0, 1), r.err
    directory.mkdir(exist_ok=True)
    (directory / "report.json").write_text(r.out)
    loaded: dict[str, Any] = r.json
    return loaded


def shown_at(when: str, offset_ms: float | None, row: dt.datetime) -> str:
    """How match shows an evidence time: the report's clock corrected by its offset, in UTC,
    with the date only when it is not the row's."""
    t = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    t -= dt.timedelta(milliseconds=int(offset_ms or 0))
    return t.strftime("%H:%M" if t.date() == row.date() else "%Y-%m-%d %H:%M") + " UTC"


def test_a_403_row_carries_a_real_blocked_inbound_test_of_that_agent(tmp_path: Path) -> None:
    """Kamailio relays from an address the agent never sent to, and the agent's stateful
    firewall drops it: the report's sip.inbound is network.inbound_blocked, and so is the
    403 row's evidence."""
    with InboundBed.start(tmp_path / "bed", nat=False, send_from=True, fr_timer_ms=3000) as bed:
        bed.stateful_firewall()
        report = bed_report(bed, tmp_path / "reports", "A-95")
    d = next(c for c in report["checks"] if c["id"] == "sip.inbound")["details"]
    assert (d["problem"], d["final"]["code"]) == ("network.inbound_blocked", 408), d
    row_time = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    log = export(tmp_path / "audit.csv", [(row_time, "A-95", FORBIDDEN, "c1@platform", "")])
    (row,) = match(log, str(tmp_path / "reports"), "--format", "json").json["rows"]
    assert row["run_id"] == report["run_id"]
    assert row["likely_cause"].startswith("network.inbound_blocked (")
    offset = report["correlation"]["clock_offset_ms"]
    assert row["evidence"] == [
        f"at {shown_at(d['sent_at'], offset, row_time)}, requests from the platform did not reach "
        "this machine (sip.inbound: network.inbound_blocked, OPTIONS over UDP, the platform "
        f"answered 408 {d['final']['reason']})"
    ]


def test_the_rows_of_a_real_inbound_call_are_labelled_by_call_id_and_subject(
    tmp_path: Path,
) -> None:
    """`--inbound-call --register-binding`: our binding declines the INVITE with 603 (the
    softphone's branch is cancelled), so the platform may log a declined offer for it. The
    INVITE's Call-ID, and the Subject our binding received, each label a row."""
    with InboundBed.start(tmp_path / "bed") as bed:
        report = bed_report(
            bed, tmp_path / "reports", "A-96", "--inbound-call", "--register-binding"
        )
    d = next(c for c in report["checks"] if c["id"] == "sip.inbound")["details"]
    assert (d["method"], d["final"]["code"]) == ("INVITE", 603), d
    subject = d["arrived"]["subject"]
    assert subject.startswith("sipdiag inbound test ") and report["run_id"] in subject
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    log = export(
        tmp_path / "audit.csv",
        [
            (now, "A-96", DECLINE, d["call_id"], ""),  # line 2
            (now, "A-96", DECLINE, "c2@platform", subject),  # line 3
            (now, "A-96", DECLINE, "c3@platform", "Sales"),  # line 4: the agent pressed Decline
        ],
    )
    rows = by_line(match(log, str(tmp_path / "reports"), "--format", "json"))
    assert [rows[n]["label"] for n in (2, 3, 4)] == [inbound.LABEL, inbound.LABEL, None]
    assert rows[2]["matched_by"] == "call_id" and rows[2]["run_id"] == report["run_id"]
    assert rows[3]["likely_cause"].startswith(
        f"sipdiag inbound test: the INVITE of `sipdiag check --inbound-call` in report "
        f"{report['run_id'][:8]}"
    )


# ---- what each kind of result says, and what is ignored (reports of this shape, no peer needed)


def minimal(run_id: str, agent: str, checks: list[dict[str, Any]], offset_ms: float = 0) -> Any:
    """The fields match reads of a report, with these check results."""
    return {
        "schema_version": 1, "tool": {"name": "sipdiag", "version": "0.1.0"}, "run_id": run_id,
        "started_at": at(T), "host": {"hostname": "pc1", "os": "Linux"},
        "agent": {"id": agent, "sip_uri": None, "numbers": []}, "checks": checks,
        "findings": [], "correlation": {"call_ids": [], "clock_offset_ms": offset_ms},
        "verdict": "healthy",
    }  # fmt: skip


def evidence_of(tmp_path: Path, *docs: dict[str, Any]) -> dict[str, list[str]]:
    """The evidence a No Answer row of each report's agent gets, 10 minutes after it."""
    for doc in docs:
        save(tmp_path / "reports", doc)
    rows = [(T + dt.timedelta(minutes=10), d["agent"]["id"], NO_ANSWER, "c@p", "") for d in docs]
    result = match(
        export(tmp_path / "audit.csv", rows), str(tmp_path / "reports"), "--format", "json"
    )
    return {row["agent"]: row["evidence"] for row in result.json["rows"]}


def test_a_closed_tcp_connection_and_the_stun_lifetime_are_said_as_such(tmp_path: Path) -> None:
    idle = short_idle(T)
    idle["details"]["periods"] = [
        {"seconds": 30, "transport": "tcp", "arrived": False, "closed_by_network": True,
         "checked_at": at(T, 60)},
        {"seconds": 300, "transport": "udp", "arrived": True, "checked_at": at(T, 330)},
        {"seconds": 900, "transport": "udp", "arrived": None, "skipped": "out of time"},
    ]  # fmt: skip
    idle["details"]["registration_interval"] = None
    idle["details"]["stun"] = {
        "server": "stun.example.net:3478", "lifetime_at_least": 60, "lifetime_at_most": 120,
        "mapping_changed": True,
    }  # fmt: skip
    found = evidence_of(tmp_path, minimal("0b1e5a1e-0000-4000-8000-0000000000a1", "A-1", [idle]))
    assert found["A-1"] == [
        "at 14:01 UTC, the network closed the TCP connection after 30 s idle "
        "(net.idle: network.nat_binding_short)",
        "at 14:05 UTC, inbound still arrived after 300 s idle on UDP",
        "the network's UDP mapping lasted between 60 and 120 s "
        "(net.idle, STUN, then the public address changed)",
    ]


def test_an_own_binding_a_skip_a_warning_and_wrong_types_say_what_they_can(
    tmp_path: Path,
) -> None:
    own = check("sip.inbound", "pass", "s", {
        "mode": "own_binding", "method": "OPTIONS", "transport": "udp", "sent_at": at(T, 1),
        "arrived": {"source": "192.0.2.1:5060", "after_ms": 12.5},
    })  # fmt: skip
    skip = check("sip.inbound", "skip", "the platform answers OPTIONS itself", {"final": None})
    warn = check("sip.inbound", "warn", "odd\n  answer " + "x" * 100, {"sent_at": "soon"})
    hostile = check("sip.inbound", "fail", "s", {
        "final": "408", "transport": 5, "method": [], "problem": "network.inbound_blocked",
    })  # fmt: skip
    hostile_idle = check("net.idle", "fail", "s", {
        "periods": [{"seconds": "ninety", "transport": "udp", "arrived": False}, None, 7],
        "registration_interval": "long", "stun": [1],
    })  # fmt: skip
    found = evidence_of(
        tmp_path,
        minimal("0b1e5a1e-0000-4000-8000-0000000000b1", "A-1", [own]),
        minimal("0b1e5a1e-0000-4000-8000-0000000000b2", "A-2", [skip]),
        # An unreadable time: the report's own, corrected by its offset (90 s ahead).
        minimal("0b1e5a1e-0000-4000-8000-0000000000b3", "A-3", [warn], offset_ms=90_000),
        minimal("0b1e5a1e-0000-4000-8000-0000000000b4", "A-4", [hostile, hostile_idle]),
    )
    assert found["A-1"] == [
        "at 14:00 UTC, a request from the platform reached this machine (sip.inbound: OPTIONS "
        "over UDP after 12.5 ms)"
    ]
    assert found["A-2"] == []
    assert found["A-3"] == [f"at 13:58 UTC, sip.inbound warn: odd answer {'x' * 68}…"]
    # A field of the wrong type reads as missing, or, where text is expected, as its JSON text
    # (cut to 80 characters); the report is still read.
    assert found["A-4"] == [
        "at 14:00 UTC, requests from the platform did not reach this machine (sip.inbound: "
        "network.inbound_blocked, [] over 5, no answer)"
    ]


def test_the_two_checks_are_found_in_sipdiags_layout_and_in_any_other() -> None:
    doc = {"run_id": "r", "checks": [check("net.dns", "pass", "s", {"x": "sip.inbound"}),
                                     blocked_inbound(T), short_idle(T)]}  # fmt: skip
    expected = {"sip.inbound": doc["checks"][1], "net.idle": doc["checks"][2]}

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    def found(raw: bytes) -> dict[str, Any]:
        objects = inbound.check_objects(raw, json.loads, dumps)
        assert all(b"\n" not in v for v in objects.values())  # one line each
        return {k: json.loads(v) for k, v in objects.items()}

    laid_out = to_json(doc).encode()  # as sipdiag writes reports: found without parsing the rest
    assert found(laid_out) == expected
    assert found(json.dumps(doc).encode()) == expected  # any other layout: parsed whole
    damaged = laid_out.replace(b'"platform_took": true', b'"platform_took": tru')
    assert set(found(damaged)) == {"net.idle"}  # a damaged result costs only itself
    assert found(b"not json") == {}
