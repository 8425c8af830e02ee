"""sip.register through pjsua2 against a real Kamailio, sipp scenarios and firewalled namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
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
        "sip.register",  # sip.bindings and sip.inbound: tests/test_inbound.py
        "--only",
        "host.clock",
        "--format",
        "json",
        *extra,
        env=env,
        prefix=prefix,
    )


def first_attempt(r: CliResult) -> dict[str, Any]:
    attempt: dict[str, Any] = r.check("sip.register")["details"]["attempts"][0]
    return attempt


# ---- Kamailio: the right password, over every transport


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_passes_and_leaves_no_binding(kamailio: Kamailio, transport: str) -> None:
    r = register(kamailio.registrar_uri(transport))
    check = r.check("sip.register")
    assert check["status"] == "pass", check
    attempt = first_attempt(r)
    assert (attempt["transport"], attempt["code"], attempt["unregistered"]) == (
        transport,
        200,
        True,
    )
    assert attempt["challenged"] is True
    assert attempt["challenge"] == {
        "scheme": "Digest",
        "realm": "pbx.test",
        "algorithm": "MD5",
        "qop": "auth",
    }
    assert any("sipdiag=" in b for b in attempt["bindings"])  # our own, distinct Contact
    assert kamailio.bindings("alice") == []  # and it was removed at once
    assert r.code == 0
    report = r.json
    assert check["details"]["baseline"] is None  # no control probe when nothing was refused
    # The binding query went first (no other binding, so ours could be made): both Call-IDs.
    query = check["details"]["queries"][0]
    assert (query["code"], query["bindings"], query["challenged"]) == (200, [], True)
    assert check["details"]["binding"]["reason"] == "the account has no other binding"
    assert report["correlation"]["call_ids"] == [query["call_id"], attempt["call_id"]]
    assert report["correlation"]["user_agent"] == f"sipdiag/{__version__} run={report['run_id']}"
    assert report["correlation"]["public_addresses"] == []  # no NAT on loopback
    assert report["target"]["transports"] == [transport]
    assert report["agent"]["sip_uri"] == "sip:alice@127.0.0.1"


def test_register_over_tls_is_untrusted_with_a_self_signed_certificate(kamailio: Kamailio) -> None:
    r = register(kamailio.registrar_uri("tls"))
    attempt = first_attempt(r)
    assert attempt["outcome"] == "tls_untrusted"
    assert "certificate" in attempt["reason"].lower()
    assert "network.tls_untrusted" in r.causes()
    assert r.check("sip.register")["hint"].startswith(
        "the registrar's TLS certificate is not trusted"
    )


def test_register_over_tls_passes_when_the_ca_is_given(kamailio: Kamailio) -> None:
    r = register(kamailio.registrar_uri("tls"), "--ca", str(kamailio.ca_cert))
    assert r.check("sip.register")["status"] == "pass", r.check("sip.register")
    assert first_attempt(r)["transport"] == "tls"
    assert kamailio.bindings("alice") == []


def test_register_reads_the_registrar_clock_from_its_date_header(kamailio: Kamailio) -> None:
    r = register(kamailio.registrar_uri("udp"))
    clock = next(c for c in r.json["checks"] if c["id"] == "host.clock")
    assert clock["status"] == "pass", clock
    assert abs(clock["details"]["clock_offset_ms"]) <= 2000  # same machine: rounding only
    assert r.json["correlation"]["clock_offset_ms"] == clock["details"]["clock_offset_ms"]


def test_no_register_only_queries_the_challenge_and_needs_no_password(kamailio: Kamailio) -> None:
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--no-register",
        "--format",
        "json",
    )
    check = r.check("sip.register")
    assert check["status"] == "pass", check
    assert check["details"]["mode"] == "challenge_only"
    attempt = first_attempt(r)
    assert (attempt["outcome"], attempt["code"], attempt["credentials"]) == (
        "challenged",
        401,
        False,
    )
    assert attempt["challenge"]["realm"] == "pbx.test"
    assert kamailio.bindings("alice") == []


def test_no_register_against_an_open_registrar_warns_and_registers_nothing(
    sipp_uas: SippFactory,
) -> None:
    uas = sipp_uas("reg_200_open.xml")
    r = cli_process(
        "check",
        "--registrar",
        uas.uri,
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--no-register",
        "--format",
        "json",
    )
    check = r.check("sip.register")
    assert check["status"] == "warn"
    assert "without asking for credentials" in check["summary"]
    assert "Contact:" not in uas.messages().split("REGISTER sip:", 1)[1].split("\n\n", 1)[0]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_agents_own_softphone_binding_survives_our_check(
    kamailio: Kamailio, transport: str
) -> None:
    # A default-configured pjsua2 softphone (SIP outbound, +sip.instance) holds alice's binding.
    agent = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / "peers" / "softphone.py"),
            kamailio.registrar_uri(transport),
            "alice",
            PASSWORD,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        lines: list[str] = []
        while (
            not lines or lines[-1] not in ("registered", "") and not lines[-1].startswith("failed")
        ):
            lines.append(agent.stdout.readline().strip())  # pjlib's banner comes first
        assert lines[-1] == "registered", lines
        before = kamailio.bindings("alice")
        assert len(before) == 1
        r = register(kamailio.registrar_uri(transport))
        assert r.check("sip.register")["status"] == "pass", r.check("sip.register")
        after = kamailio.bindings("alice")
        assert [b["Address"] for b in after] == [b["Address"] for b in before]
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(10)
    assert kamailio.bindings("alice") == []


# ---- Kamailio: the 403 sub-causes, with the control probe


def test_wrong_password_is_credentials_rejected_and_account_specific(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    r = register(kamailio.registrar_uri("udp"), "--debug", password=WRONG, data=tmp_path)
    check = r.check("sip.register")
    assert check["status"] == "fail"
    attempt = first_attempt(r)
    assert (attempt["code"], attempt["reason"], attempt["challenged"]) == (403, "Forbidden", True)
    assert attempt["warning"] == ['399 pbx.test "Wrong password for alice"']
    assert r.causes() == ["sip.credentials_rejected"]
    f = r.finding("sip.credentials_rejected")
    assert f["family"] == "registration" and f["severity"] == "critical"
    assert (
        'UDP REGISTER got 403 Forbidden (Warning: 399 pbx.test "Wrong password for alice") '
        "after a Digest challenge realm pbx.test that we answered"
    ) in f["explanation"]
    assert "specific to this account" in f["explanation"]
    assert f["action"] == (
        "check the SIP user, auth user and password with the platform administrator"
    )
    assert r.json["verdict"] == "failing" and r.code == 1
    # The password is in no output, no saved report, no --debug text.
    saved = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert saved
    for text in (r.out, r.err, saved):
        assert WRONG not in text


@pytest.mark.parametrize(
    ("user", "password", "warning"),
    [
        ("bob", "bob-secret", '399 pbx.test "Account bob is disabled"'),
        (
            "carol",
            "carol-secret",
            '399 pbx.test "Registration from 127.0.0.1 not allowed for carol"',
        ),
        ("mallory", "whatever", '399 pbx.test "Unknown user mallory"'),
    ],
)
def test_account_level_refusals_quote_the_registrars_warning(
    kamailio: Kamailio, user: str, password: str, warning: str
) -> None:
    r = register(kamailio.registrar_uri("udp"), user=user, password=password)
    attempt = first_attempt(r)
    assert (attempt["code"], attempt["challenged"], attempt["warning"]) == (403, True, [warning])
    assert r.causes() == ["sip.credentials_rejected"]
    assert warning in r.finding("sip.credentials_rejected")["explanation"]


@pytest.fixture
def blocked_source(kamailio: Kamailio) -> Iterator[None]:
    kamailio.kamcmd("htable.seti", "blocked_src", "127.0.0.1", "1")
    try:
        yield
    finally:
        kamailio.kamcmd("htable.delete", "blocked_src", "127.0.0.1")


def test_a_refused_source_is_forbidden_and_the_control_probe_says_so(
    kamailio: Kamailio, blocked_source: None
) -> None:
    r = register(kamailio.registrar_uri("udp"))
    attempt = first_attempt(r)
    assert (attempt["code"], attempt["challenged"]) == (403, False)
    baseline = r.check("sip.register")["details"]["baseline"]
    assert (baseline["code"], baseline["challenged"]) == (403, False)
    assert r.causes() == ["sip.forbidden"]
    explanation = r.finding("sip.forbidden")["explanation"]
    assert "without any challenge" in explanation
    assert "the registrar refuses this source" in explanation
    assert '"Source 127.0.0.1 is not allowed"' in explanation


# ---- sipp: scripted registrars


def test_every_sip_request_carries_the_run_user_agent(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_403_warning.xml", extra_args=["-m", "2"])  # ours + the control probe
    r = register(uas.uri)
    uas.wait(10)
    run_id = r.json["run_id"]
    assert f"User-Agent: sipdiag/{__version__} run={run_id}" in uas.messages()
    attempt = first_attempt(r)
    assert attempt["warning"] == ['399 sipp-pbx "Account suspended: outstanding balance"']
    assert (attempt["server"], attempt["challenged"]) == ("sipp-pbx", False)
    assert r.causes() == ["sip.forbidden"]
    # This registrar refuses everyone alike: the control probe shows it is not the account.
    assert "the registrar refuses this source" in r.finding("sip.forbidden")["explanation"]


def test_401_then_403_is_credentials_rejected(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_401_then_403.xml")
    r = register(uas.uri)
    attempt = first_attempt(r)
    assert (attempt["code"], attempt["challenged"]) == (403, True)
    assert attempt["challenge"]["realm"] == "sipp.test"
    assert r.causes() == ["sip.credentials_rejected"]
    assert "Authorization" not in json.dumps(r.json)  # digest responses are never kept


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
    assert first_attempt(r)["code"] == code
    assert cause in r.causes()
    assert r.code == 1


def test_a_silent_registrar_finishes_inside_the_budget(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_no_answer.xml", extra_args=["-d", "8000"])
    t0 = time.monotonic()
    r = register(uas.uri, "--timeout", "3")
    elapsed = time.monotonic() - t0
    assert elapsed < 3 + 1.5, elapsed  # interpreter start-up + the 3 s budget
    check = r.check("sip.register")
    attempt = first_attempt(r)
    # The binding query gave up after its retransmissions; PJSIP never had to wait.
    assert (attempt["outcome"], attempt["code"], attempt["remote"]) == ("timeout", 0, False)
    assert elapsed < 3, elapsed
    assert check["hint"] == (
        f"allow outbound SIP over UDP to 127.0.0.1:{uas.port} in the firewall/VPN"
    )  # no other transport answered in this run, so none is suggested
    assert check["details"]["baseline"] is None  # nothing to compare with
    assert r.causes() == ["network.registrar_unreachable"]
    assert r.json["complete"] is True


def test_a_budget_too_small_to_finish_is_an_error_not_network_evidence(
    sipp_uas: SippFactory,
) -> None:
    uas = sipp_uas("reg_no_answer.xml", extra_args=["-d", "5000"])
    r = register(uas.uri, "--timeout", "0.5")
    check = r.check("sip.register")
    assert check["status"] == "error"
    assert first_attempt(r)["outcome"] == "not_finished"
    assert check["hint"] == "re-run with a larger --timeout"
    assert r.causes() == []


def test_407_then_403_is_credentials_rejected(sipp_uas: SippFactory) -> None:
    r = register(sipp_uas("reg_407_403.xml").uri)
    attempt = first_attempt(r)
    assert (attempt["code"], attempt["challenged"]) == (403, True)
    assert attempt["challenge"]["realm"] == "sipp.test"
    assert r.causes() == ["sip.credentials_rejected"]


def test_a_repeated_401_is_credentials_rejected_and_every_user_is_challenged(
    sipp_uas: SippFactory,
) -> None:
    uas = sipp_uas("reg_401_loop.xml", extra_args=["-m", "2"])  # ours + the control probe
    r = register(uas.uri)
    attempt = first_attempt(r)
    assert attempt["code"] == 401 and attempt["challenges"] >= 2
    assert r.causes() == ["sip.credentials_rejected"]
    assert (
        "the registrar challenges every user"
        in r.finding("sip.credentials_rejected")["explanation"]
    )


def test_a_challenge_pjsip_cannot_answer_is_not_called_a_wrong_password(
    sipp_uas: SippFactory,
) -> None:
    r = register(sipp_uas("reg_401_aka.xml").uri, "--timeout", "4")
    attempt = first_attempt(r)
    assert attempt["code"] == 401 and attempt["challenges"] == 1
    assert "sip.credentials_rejected" not in r.causes()
    assert "algorithm AKAv1-MD5" in r.check("sip.register")["hint"]


def test_a_challenge_then_silence_is_no_transport_cause(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_401_silence.xml")
    r = register(uas.uri, "--timeout", "3")
    attempt = first_attempt(r)
    assert (attempt["outcome"], attempt["registrar_answered"], attempt["challenged"]) == (
        "timeout",
        True,
        True,
    )
    assert r.causes() == []
    assert (
        "answered the first REGISTER over UDP, then never the authenticated one"
        in r.check("sip.register")["hint"]
    )


def test_an_unanswered_unregister_warns_that_our_binding_stays(sipp_uas: SippFactory) -> None:
    # Two calls: the binding query (answered 200, no Contact: no other binding), then our
    # own REGISTER, whose un-REGISTER the scenario ignores.
    r = register(sipp_uas("reg_200_nounreg.xml", extra_args=["-m", "2"]).uri, "--timeout", "4")
    check = r.check("sip.register")
    assert check["status"] == "warn"
    assert first_attempt(r)["unregistered"] is False
    assert "un-REGISTER over udp got no answer" in check["summary"]


# ---- network namespaces with nftables


def _in_agent(netns_pair: NetnsPair) -> tuple[str, ...]:
    return tuple(netns_pair.exec_argv(netns_pair.agent, []))


def test_udp_dropped_by_the_firewall_is_udp_blocked_while_tcp_registers(
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
        prefix=_in_agent(netns_pair),
    )
    assert time.monotonic() - t0 < 4 + 1.5
    attempts = {a["transport"]: a for a in r.check("sip.register")["details"]["attempts"]}
    assert attempts["tcp"]["code"] == 200 and attempts["tcp"]["outcome"] == "ok", attempts
    assert (attempts["udp"]["outcome"], attempts["udp"]["remote"]) == ("timeout", False)
    assert r.check("sip.register")["status"] == "fail"
    assert r.causes() == ["network.udp_blocked"]
    assert r.finding("network.udp_blocked")["family"] == "network_firewall"
    assert r.json["correlation"]["local_addresses"][0] == netns_pair.agent_ip


def test_a_tcp_reset_is_refused_at_once(netns_pair: NetnsPair) -> None:
    kam = netns_pair.start_kamailio()
    netns_pair.firewall(netns_pair.pbx, "tcp-rst", [kam.port])
    r = register(
        f"sip:{kam.host}:{kam.port}",
        "--transport",
        "tcp",
        "--transport",
        "udp",
        prefix=_in_agent(netns_pair),
    )
    attempts = {a["transport"]: a for a in r.check("sip.register")["details"]["attempts"]}
    assert attempts["tcp"]["outcome"] == "refused" and attempts["tcp"]["duration_ms"] < 500
    assert attempts["udp"]["outcome"] == "ok"
    # A refusal is the far end saying nothing listens there, not a block: no tcp_blocked, but
    # the softphone's TCP is not offered; UDP registers, so that is the way out.
    assert r.causes() == ["sip.transport_not_offered"]
    host = f"{kam.host}:{kam.port}"
    assert r.finding("sip.transport_not_offered")["action"] == (
        f"nothing listens on TCP {host}; UDP reaches the registrar: switch the softphone to "
        "UDP, or ask the platform which port serves TCP"
    )
    assert r.check("sip.register")["hint"] == (
        f"nothing listens on {host} over TCP: check the registrar address and port with the "
        "platform, or switch the softphone to UDP, which answers"
    )
    assert "tcp: refused; udp: 200 OK" in r.check("sip.register")["summary"]


def test_everything_dropped_is_registrar_unreachable_within_the_budget(
    netns_pair: NetnsPair,
) -> None:
    kam = netns_pair.start_kamailio()
    netns_pair.firewall(netns_pair.pbx, "drop-all")
    t0 = time.monotonic()
    r = register(
        f"sip:{kam.host}:{kam.port}",
        "--transport",
        "udp",
        "--transport",
        "tcp",
        "--timeout",
        "4",
        prefix=_in_agent(netns_pair),
    )
    assert time.monotonic() - t0 < 4 + 1.5
    assert {a["outcome"] for a in r.check("sip.register")["details"]["attempts"]} == {"timeout"}
    assert r.causes() == ["network.registrar_unreachable"]


# ---- without pjsua2, without a password


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
    check = r.check("sip.register")
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
    check = r.check("sip.register")
    assert (check["status"], check["summary"]) == ("skip", "no password available for alice")
    assert check["hint"].startswith("export NOPE_PW")


def test_the_saved_report_matches_stdout(kamailio: Kamailio, tmp_path: Path) -> None:
    r = register(kamailio.registrar_uri("udp"), data=tmp_path)
    saved = r.saved_report()
    assert saved == r.json
    assert json.dumps(saved).count(PASSWORD) == 0


def test_a_pjsip_crash_is_an_error_result_and_the_report_is_still_written(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    # A native abort() inside PJSIP (as an assertion would do) takes only the worker process.
    (tmp_path / "pjsua2.py").write_text("import os\nos.abort()\n")
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--only",
        "host.os",
        "--format",
        "json",
        env={
            "SIPDIAG_PASSWORD": PASSWORD,
            "PYTHONPATH": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "data"),
        },
    )
    check = r.check("sip.register")
    assert check["status"] == "error"
    assert first_attempt(r)["reason"].startswith("PJSIP crashed (signal 6)")
    assert next(c for c in r.json["checks"] if c["id"] == "host.os")["status"] == "pass"
    assert r.saved_report()["run_id"] == r.json["run_id"] and r.code == 1
    assert PASSWORD not in r.out + r.err
