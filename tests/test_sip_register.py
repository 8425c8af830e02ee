"""sip.register through pjsua2 against a real Kamailio, sipp scenarios and firewalled namespaces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli_process
from peers.kamailio import Kamailio
from peers.netns import NetnsPair
from peers.sipp import SippFactory

from diag import __version__

PASSWORD = "alice-secret"
WRONG = "not-alices-password-42"


def register(
    registrar: str,
    *extra: str,
    password: str = PASSWORD,
    user: str = "alice",
    prefix: tuple[str, ...] = (),
    data: Path | None = None,
) -> CliResult:
    env = {"SIPDIAG_PASSWORD": password}
    if data is not None:
        env["XDG_DATA_HOME"] = str(data)
    return cli_process(
        "check",
        "--registrar",
        registrar,
        "--user",
        user,
        "--only",
        "sip",
        "--only",
        "host.clock",
        "--format",
        "json",
        *extra,
        env=env,
        prefix=prefix,
    )


def sip_check(r: CliResult) -> dict[str, Any]:
    check: dict[str, Any] = next(c for c in r.json["checks"] if c["id"] == "sip.register")
    return check


def causes(r: CliResult) -> list[str]:
    return [f["cause"] for f in r.json["findings"]]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_passes_and_leaves_no_binding(kamailio: Kamailio, transport: str) -> None:
    r = register(kamailio.registrar_uri(transport))
    check = sip_check(r)
    assert check["status"] == "pass", check
    attempt = check["details"]["attempts"][0]
    assert (attempt["transport"], attempt["code"], attempt["unregistered"]) == (
        transport,
        200,
        True,
    )
    assert attempt["received"] == "127.0.0.1" or attempt["received"] is None
    assert kamailio.bindings("alice") == []  # our binding was removed at once
    assert r.code == 0
    report = r.json
    assert report["correlation"]["call_ids"] == [attempt["call_id"]]
    assert report["correlation"]["user_agent"] == f"sipdiag/{__version__} run={report['run_id']}"
    assert report["target"]["transports"] == [transport]
    assert report["agent"]["sip_uri"] == "sip:alice@127.0.0.1"


def test_register_reads_the_registrar_clock_from_its_date_header(kamailio: Kamailio) -> None:
    r = register(kamailio.registrar_uri("udp"))
    clock = next(c for c in r.json["checks"] if c["id"] == "host.clock")
    assert clock["status"] == "pass", clock
    assert abs(clock["details"]["clock_offset_ms"]) <= 2000  # same machine: rounding only
    assert r.json["correlation"]["clock_offset_ms"] == clock["details"]["clock_offset_ms"]


def test_wrong_password_fails_with_the_registrars_warning(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    r = register(kamailio.registrar_uri("udp"), "--debug", password=WRONG, data=tmp_path)
    check = sip_check(r)
    assert check["status"] == "fail"
    attempt = check["details"]["attempts"][0]
    assert (attempt["code"], attempt["reason"]) == (403, "Forbidden")
    assert attempt["warning"] == ['399 pbx.test "Wrong password for alice"']
    assert "Wrong password for alice" in check["summary"]
    assert "sip.forbidden" in causes(r)
    assert r.json["verdict"] == "failing" and r.code == 1
    # The password is in no output, no saved report, no --debug text.
    saved = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert saved
    for text in (r.out, r.err, saved):
        assert WRONG not in text


def test_every_sip_request_carries_the_run_user_agent(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_403_warning.xml")
    r = register(uas.uri)
    uas.wait(10)
    run_id = r.json["run_id"]
    assert f"User-Agent: sipdiag/{__version__} run={run_id}" in uas.messages()
    check = sip_check(r)
    assert check["details"]["attempts"][0]["warning"] == [
        '399 sipp-pbx "Account suspended: outstanding balance"'
    ]
    assert check["details"]["attempts"][0]["server"] == "sipp-pbx"
    assert "sip.forbidden" in causes(r)


@pytest.mark.parametrize(
    ("scenario", "code", "cause"),
    [
        ("reg_404.xml", 404, "sip.not_found"),
        ("reg_503.xml", 503, "sip.server_error"),
    ],
)
def test_registrar_error_answers_map_to_sip_causes(
    sipp_uas: SippFactory, scenario: str, code: int, cause: str
) -> None:
    uas = sipp_uas(scenario)
    r = register(uas.uri)
    assert sip_check(r)["details"]["attempts"][0]["code"] == code
    assert cause in causes(r)
    assert r.code == 1


def test_a_silent_registrar_finishes_inside_the_budget(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_no_answer.xml", extra_args=["-d", "8000"])
    t0 = time.monotonic()
    r = register(uas.uri, "--timeout", "3")
    elapsed = time.monotonic() - t0
    assert elapsed < 3 + 1.5, elapsed  # interpreter start-up + the 3 s budget
    check = sip_check(r)
    attempt = check["details"]["attempts"][0]
    assert (attempt["outcome"], attempt["code"], attempt["remote"]) == ("timeout", 408, False)
    assert check["hint"] == (
        f"allow outbound SIP over UDP to 127.0.0.1:{uas.port} in the "
        "firewall/VPN, or re-run with --transport tcp"
    )
    assert causes(r) == ["network.registrar_unreachable"]
    assert r.json["complete"] is True


def test_a_budget_too_small_to_finish_is_an_error_not_network_evidence(
    sipp_uas: SippFactory,
) -> None:
    uas = sipp_uas("reg_no_answer.xml", extra_args=["-d", "5000"])
    r = register(uas.uri, "--timeout", "0.5")
    check = sip_check(r)
    assert check["status"] == "error"
    assert check["details"]["attempts"][0]["outcome"] == "not_finished"
    assert check["hint"] == "re-run with a larger --timeout"
    assert causes(r) == []


def test_udp_dropped_by_the_firewall_fails_udp_while_tcp_registers(
    netns_pair: NetnsPair,
) -> None:
    kam = netns_pair.start_kamailio()
    netns_pair.firewall(netns_pair.pbx, "udp-drop", [kam.port])
    t0 = time.monotonic()
    r = register(
        f"sip:{kam.host}:{kam.port}",
        "--transport",
        "udp",
        "--transport",
        "tcp",
        "--timeout",
        "4",
        prefix=tuple(netns_pair.exec_argv(netns_pair.agent, [])),
    )
    assert time.monotonic() - t0 < 4 + 1.5
    attempts = {a["transport"]: a for a in sip_check(r)["details"]["attempts"]}
    assert attempts["tcp"]["code"] == 200 and attempts["tcp"]["outcome"] == "ok"
    assert (attempts["udp"]["outcome"], attempts["udp"]["remote"]) == ("timeout", False)
    assert sip_check(r)["status"] == "fail"
    assert r.json["correlation"]["local_addresses"][0] == netns_pair.agent_ip


def test_without_pjsua2_the_sip_check_skips_with_an_install_hint(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    # Simulate a platform without the pjsua2 wheel: the import fails as it would there.
    blocker = tmp_path / "pjsua2.py"
    blocker.write_text("raise ImportError('No module named pjsua2')\n")
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--format",
        "json",
        env={"SIPDIAG_PASSWORD": PASSWORD, "PYTHONPATH": str(tmp_path)},
    )
    check = sip_check(r)
    assert check["status"] == "skip"
    assert "pjsua2 cannot be loaded" in check["summary"]
    assert check["hint"].startswith("install PJSIP's Python binding: pip install pjsua2-python")
    assert r.code == 0


def test_no_password_skips_with_where_to_put_it(kamailio: Kamailio) -> None:
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--format",
        "json",
        "--password-env",
        "NOPE_PW",
    )
    check = sip_check(r)
    assert (check["status"], check["summary"]) == ("skip", "no password available for alice")
    assert check["hint"].startswith("export NOPE_PW")


def test_the_saved_report_matches_stdout(kamailio: Kamailio, tmp_path: Path) -> None:
    r = register(kamailio.registrar_uri("udp"), data=tmp_path)
    saved = r.saved_report()
    assert saved == r.json
    assert json.dumps(saved).count(PASSWORD) == 0
