"""number.dial-test: one real INVITE through pjsua2, against Kamailio's permitted-numbers table
and sipp scenarios; what was sent and when is read back from sipp's own message log."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process
from peers.kamailio import Kamailio
from peers.sipp import Sipp, SippFactory

PASSWORD = "alice-secret"
FORBIDDEN = "+442079460999"  # not in Kamailio's permitted htable
SIPP_CALLS = ["-m", "3"]  # the binding query, the REGISTER (+ un-REGISTER), the INVITE: 3 Call-IDs


def dial(registrar: str, number: str, *extra: str, password: str = PASSWORD) -> CliResult:
    return cli(
        "check", "--only", "number.dial-test", "--registrar", registrar, "--user", "alice",
        "--dial-test", number, "--format", "json", *extra,
        environ={"SIPDIAG_PASSWORD": password},
    )  # fmt: skip


def dial_check(r: CliResult) -> dict[str, Any]:
    check: dict[str, Any] = next(c for c in r.json["checks"] if c["id"] == "number.dial-test")
    return check


def sipp_log(sipp: Sipp) -> list[tuple[dt.datetime, str, str]]:
    """(time, 'sent'|'received', start line) of every message in sipp's -trace_msg log."""
    entries = []
    for block in re.split(r"^-{20,} ", sipp.messages(), flags=re.M)[1:]:
        stamp, _, rest = block.partition("\n")
        direction = "sent" if " message sent" in rest.split("\n", 1)[0] else "received"
        start = next(line for line in rest.split("\n")[1:] if line.strip())
        entries.append((dt.datetime.fromisoformat(stamp.strip()), direction, start.strip()))
    return entries


def when(log: list[tuple[dt.datetime, str, str]], direction: str, start: str) -> dt.datetime:
    return next(t for t, d, line in log if d == direction and line.startswith(start))


def test_kamailio_refuses_a_forbidden_number_and_the_finding_quotes_its_reason(
    kamailio: Kamailio,
) -> None:
    r = dial(kamailio.registrar_uri("udp"), FORBIDDEN)
    assert r.code == 1, r.err
    check = dial_check(r)
    assert check["status"] == "fail"
    warning = f'399 pbx.test "Destination {FORBIDDEN} is not in the permitted list"'
    reason = 'SIP;cause=403;text="Number Not Permitted"'
    assert (check["details"]["code"], check["details"]["reason"]) == (403, "Number Not Permitted")
    assert check["details"]["warning"] == [warning]
    assert check["details"]["reason_header"] == [reason]
    assert check["details"]["call"]["challenged"] is True  # Kamailio authenticates INVITEs
    [finding] = r.json["findings"]
    assert finding["cause"] == "number.not_permitted"
    assert (
        f"403 Number Not Permitted (Warning: {warning}; Reason: {reason})"
        in (finding["explanation"])
    )
    call_id = check["details"]["call"]["call_id"]
    assert r.json["correlation"]["call_ids"] == [call_id]
    assert kamailio.bindings("alice") == []  # the test call's binding was removed again
    assert PASSWORD not in r.out + r.err


def test_kamailio_routes_a_permitted_number_and_the_ringing_call_is_cancelled_at_once(
    kamailio: Kamailio, sipp_uas: SippFactory
) -> None:
    callee = sipp_uas("dial_183_cancel.xml")
    kamailio.kamcmd("htable.sets", "forward", "s:1000", f"sip:{callee.host}:{callee.port}")
    try:
        r = dial(kamailio.registrar_uri("udp"), "1000")
    finally:
        kamailio.kamcmd("htable.delete", "forward", "s:1000")
    assert r.code == 0, r.err
    check = dial_check(r)
    assert check["status"] == "pass"
    assert check["summary"] == (
        f"test call to sip:1000@{kamailio.host} reached the number: 183 Session Progress, "
        "cancelled at once"
    )
    assert callee.wait(5) == 0, callee.errors()
    log = sipp_log(callee)
    assert [line.split()[0] for _, d, line in log if d == "received"] == ["INVITE", "CANCEL", "ACK"]
    assert r.json["findings"] == []


def test_a_permitted_number_without_a_registered_phone_is_reachable_480(
    kamailio: Kamailio,
) -> None:
    r = dial(kamailio.registrar_uri("udp"), "1001")
    check = dial_check(r)
    assert (check["status"], check["details"]["code"]) == ("pass", 480)
    assert r.code == 0 and r.json["findings"] == []


def test_a_wrong_password_places_no_call_and_never_shows_the_password(kamailio: Kamailio) -> None:
    wrong = "not-alices-password-42"
    r = dial(kamailio.registrar_uri("udp"), FORBIDDEN, "--debug", password=wrong)
    check = dial_check(r)
    assert check["status"] == "warn"
    assert check["summary"] == "no test call placed: the account did not register (403 Forbidden)"
    assert check["details"]["call"] is None
    assert wrong not in r.out + r.err
    assert wrong not in json.dumps(r.saved_report())


def test_a_403_without_any_text_is_not_permitted(sipp_uas: SippFactory) -> None:
    sipp = sipp_uas("dial_403_plain.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123")
    assert r.code == 1
    check = dial_check(r)
    assert check["summary"] == "test call to sip:+442079460123@127.0.0.1 refused: 403 Forbidden"
    assert (check["details"]["warning"], check["details"]["reason_header"]) == ([], [])
    assert [f["cause"] for f in r.json["findings"]] == ["number.not_permitted"]
    assert sipp.wait(5) == 0, sipp.errors()


@pytest.mark.parametrize(("scenario", "code"), [("dial_404.xml", 404), ("dial_484.xml", 484)])
def test_404_and_484_are_number_invalid(sipp_uas: SippFactory, scenario: str, code: int) -> None:
    sipp = sipp_uas(scenario, extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123")
    check = dial_check(r)
    assert (check["status"], check["details"]["code"]) == ("fail", code)
    assert [f["cause"] for f in r.json["findings"]] == ["number.invalid"]
    assert "the platform does not know this number" in check["summary"]
    assert sipp.wait(5) == 0, sipp.errors()


def test_486_busy_means_the_number_is_reachable(sipp_uas: SippFactory) -> None:
    sipp = sipp_uas("dial_486.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "020 7946 0123", "--region", "GB")
    check = dial_check(r)
    assert check["status"] == "pass"
    assert check["summary"] == (
        "test call to sip:+442079460123@127.0.0.1 reached the number: 486 Busy Here"
    )
    assert sipp.wait(5) == 0, sipp.errors()


def test_183_is_cancelled_at_once_within_the_maximum_duration(sipp_uas: SippFactory) -> None:
    sipp = sipp_uas("dial_183_cancel.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123", "--dial-max-duration", "3")
    check = dial_check(r)
    assert check["status"] == "pass" and check["details"]["ended_by"] == "cancel"
    assert sipp.wait(5) == 0, sipp.errors()
    log = sipp_log(sipp)
    invite = when(log, "received", "INVITE ")
    progress = when(log, "sent", "SIP/2.0 183 ")
    cancel = when(log, "received", "CANCEL ")
    assert invite <= progress <= cancel
    assert (cancel - invite).total_seconds() <= 3  # sent within the limit, from sipp's clock
    assert r.json["correlation"]["call_ids"] == [check["details"]["call"]["call_id"]]


def test_a_200_is_hung_up_at_once_with_bye(sipp_uas: SippFactory) -> None:
    sipp = sipp_uas("dial_200_bye.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123", "--dial-max-duration", "3")
    check = dial_check(r)
    assert check["status"] == "pass" and check["details"]["ended_by"] == "bye"
    assert sipp.wait(5) == 0, sipp.errors()
    log = sipp_log(sipp)
    assert (when(log, "received", "BYE ") - when(log, "received", "INVITE ")).total_seconds() <= 3


def test_no_call_outlives_the_maximum_duration(sipp_uas: SippFactory) -> None:
    """The far end only ever says 100 Trying: the call is cancelled at the maximum duration."""
    sipp = sipp_uas("dial_100_only.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123", "--dial-max-duration", "1")
    check = dial_check(r)
    assert check["status"] == "warn"
    assert check["summary"] == (
        "test call to sip:+442079460123@127.0.0.1: no answer beyond 100 Trying within 1 s"
    )
    assert check["details"]["ended_by"] == "max_duration"
    assert sipp.wait(5) == 0, sipp.errors()
    log = sipp_log(sipp)
    lasted = (when(log, "received", "CANCEL ") - when(log, "received", "INVITE ")).total_seconds()
    assert lasted <= 1.0


def test_without_dial_test_no_invite_is_ever_sent(sipp_uas: SippFactory, tmp_path: Path) -> None:
    sipp = sipp_uas("dial_183_cancel.xml", extra_args=SIPP_CALLS)
    r = cli(
        "check", "--only", "number", "--registrar", sipp.uri, "--user", "alice",
        "--number", "+442079460123", "--format", "json",
        environ={"SIPDIAG_PASSWORD": PASSWORD},
    )  # fmt: skip
    check = dial_check(r)
    assert (check["status"], check["summary"]) == ("skip", "no test-call number configured")
    assert "INVITE" not in sipp.messages()


def test_the_test_call_is_cut_short_to_fit_the_run_timeout(sipp_uas: SippFactory) -> None:
    sipp = sipp_uas("dial_100_only.xml", extra_args=SIPP_CALLS)
    r = dial(sipp.uri, "+442079460123", "--dial-max-duration", "5", "--timeout", "2")
    check = dial_check(r)
    assert check["status"] == "warn"
    assert check["summary"].endswith("(cut short to fit --timeout)")
    assert check["details"]["call"]["max_duration_s"] < 2
    assert sipp.wait(5) == 0, sipp.errors()
    log = sipp_log(sipp)
    lasted = (when(log, "received", "CANCEL ") - when(log, "received", "INVITE ")).total_seconds()
    assert lasted < 2


def test_acceptance_policy_and_the_platforms_real_answer_in_one_run(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    """`sipdiag check --only number --number … --policy … --registrar … --dial-test …` as a
    real process: the policy's verdict and Kamailio's own 403 side by side."""
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n[deny]\nnumbers = ["+442079460999"]\n')
    r = cli_process(
        "check", "--only", "number", "--number", FORBIDDEN, "--policy", str(policy),
        "--registrar", kamailio.registrar_uri("udp"), "--user", "alice",
        "--dial-test", FORBIDDEN, "--format", "json",
        env={"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    assert r.code == 1, r.err
    statuses = {c["id"]: c["status"] for c in r.json["checks"]}
    assert statuses == {
        "number.format": "pass",
        "number.policy": "fail",
        "number.identity": "skip",  # alice is not a number
        "number.dial-test": "fail",
    }
    [finding] = r.json["findings"]
    assert finding["cause"] == "number.not_permitted"
    assert finding["evidence"]["checks"] == ["number.policy", "number.dial-test"]
    assert 'deny.numbers "+442079460999"' in finding["explanation"]
    assert "403 Number Not Permitted" in finding["explanation"]
    assert PASSWORD not in r.out + r.err + json.dumps(r.saved_report())
