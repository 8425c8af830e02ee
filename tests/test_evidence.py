"""The typed evidence records (diag/evidence.py) hold what the probes really build: every key a
TypedDict declares Required is in a real producer's output, so the types cannot drift from it.

Real peers: Kamailio (sip.register, net.sip-options and net.dns from one CLI run); net.stun's
verdict and the STUN records it starts from (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clihelp import CliResult, cli_process
from peers.kamailio import Kamailio

from checks.net.stun import Server, new_record
from checks.net.stun import verdict as stun_verdict
from diag import evidence as ev

PASSWORD = "alice-secret"


def missing(record: Mapping[str, Any], typed: Any) -> list[str]:
    """The keys ``typed`` declares Required that ``record`` lacks."""
    return sorted(set(typed.__required_keys__) - set(record))


def run(kamailio: Kamailio) -> CliResult:
    return cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip",
        "--only",
        "net.dns",
        "--only",
        "net.sip-options",
        "--format",
        "json",
        env={"SIPDIAG_PASSWORD": PASSWORD},
    )


def test_every_required_key_of_the_typed_evidence_is_in_a_real_run_against_kamailio(
    kamailio: Kamailio,
) -> None:
    r = run(kamailio)
    register = r.check("sip.register")["details"]
    assert missing(register, ev.RegisterDetails) == []
    requests = [*register["attempts"], *register.get("queries", [])]
    assert requests, register
    for attempt in requests:
        assert missing(attempt, ev.RegisterAttempt) == [], attempt
        assert missing(attempt["target"], ev.RegisterTarget) == [], attempt
    assert missing(register["binding"], ev.BindingPlan) == []

    dns = r.check("net.dns")["details"]
    assert missing(dns, ev.DnsDetails) == []
    assert dns["targets"]
    for target in dns["targets"]:
        assert missing(target, ev.DnsTarget) == [], target

    options = r.check("net.sip-options")["details"]
    assert missing(options, ev.OptionsDetails) == []
    assert options["transports"]
    for per in options["transports"].values():
        assert missing(per, ev.OptionsTransport) == [], per
        for target in per["targets"]:
            assert missing(target, ev.OptionsResult) == [], target


def test_net_stun_records_carry_every_key_net_sip_alg_and_net_nat_read() -> None:
    server = Server("stun.invalid", "stun.invalid", 3478)
    records = [new_record(server, "udp"), new_record(server, "tcp")]
    details = stun_verdict(records, [server]).details
    assert missing(details, ev.StunDetails) == []
    for mapping in details["servers"]:
        assert missing(mapping, ev.StunMapping) == [], mapping


def test_the_dial_test_evidence_quotes_the_platforms_own_words() -> None:
    call: ev.TestCall = {
        "uri": "sip:+4930123@pbx",
        "max_duration_s": 5.0,
        "outcome": "answered",
        "reason": "Number Not Permitted",
        "code": 403,
        "warning": ['399 pbx "not permitted"'],
        "reason_header": ["Q.850;cause=21"],
    }
    assert ev.evidence_text(call) == (
        '403 Number Not Permitted (Warning: 399 pbx "not permitted"; Reason: Q.850;cause=21)'
    )
    assert ev.evidence_text(None) == ""
