"""sip.bindings and sip.inbound against real peers: Kamailio routing requests for users to their
bindings, real softphones (Debian's baresip, the pjsua2 test softphone) registered for the same
account, NAT and firewalls in network namespaces (tests/README.md §Inbound). Whatever sipdiag
does, the softphones' bindings survive it, and nothing rings unless --inbound-call asked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import CliResult, cli_process
from peers.inbound import (
    AGENT_IP,
    PASSWORD,
    ROUTER_OUTSIDE_IP,
    InboundBed,
    binding_replies,
)
from peers.kamailio import Kamailio

ENV = {"SIPDIAG_PASSWORD": PASSWORD}
SAME = ("Address", "Call-ID", "CSeq", "User-Agent")  # what a re-REGISTER would change


def sip_check(bed: InboundBed, *extra: str, transport: str = "udp") -> CliResult:
    return bed.run_sipdiag(
        [
            "check", "--registrar", bed.registrar(transport), "--user", "alice",
            "--only", "sip", "--format", "json", *extra,
        ],
        env=ENV,
    )  # fmt: skip


def kept(bed: InboundBed) -> list[tuple[str, ...]]:
    found = bed.bindings()
    for b in found:
        assert all(k in b for k in SAME), sorted(b)
    return sorted(tuple(b[k] for k in SAME) for b in found)


def rang(bed: InboundBed) -> bool:
    return any("Incoming call" in p.daemon.log_text() for p in bed.phones)


@pytest.fixture
def natted(tmp_path: Path) -> Iterator[InboundBed]:
    """baresip behind a NAT router, the platform with NAT fix-up: a healthy agent."""
    with InboundBed.start(tmp_path) as bed:
        yield bed


def test_the_platforms_options_reaches_baresip_through_the_nat_and_nothing_rings(
    natted: InboundBed,
) -> None:
    before = kept(natted)
    r = sip_check(natted)
    bindings, inbound = r.check("sip.bindings"), r.check("sip.inbound")
    assert bindings["status"] == "pass", bindings
    (binding,) = bindings["details"]["bindings"]
    assert binding["host"] == AGENT_IP and binding["address_class"] == "private"
    assert "received" in binding["nat_fixup"]  # Kamailio's fix_nated_register
    assert bindings["details"]["seen_from"]["address"] == ROUTER_OUTSIDE_IP
    assert inbound["status"] == "pass", inbound
    d = inbound["details"]
    assert (d["mode"], d["method"], d["final"]["code"], d["final"]["by"]) == (
        "softphone", "OPTIONS", 200, "binding",
    )  # fmt: skip
    assert d["final"]["user_agent"].startswith("baresip")
    assert d["call_id"] in r.json["correlation"]["call_ids"]
    assert r.causes() == []
    assert kept(natted) == before  # the softphone's registration is untouched
    assert not rang(natted)
    # The password answered two challenges (query, OPTIONS) and is in no output.
    assert PASSWORD not in r.out and PASSWORD not in r.err
    assert PASSWORD not in Path(r.json["saved_to"]).read_text() if "saved_to" in r.json else True


def test_a_firewall_that_drops_the_platforms_requests_is_inbound_blocked(tmp_path: Path) -> None:
    # Kamailio relays from its second address, which the agent never sent to: a stateful
    # firewall on the agent drops it, as a host firewall drops unsolicited inbound SIP.
    with InboundBed.start(tmp_path, nat=False, send_from=True, fr_timer_ms=3000) as bed:
        bed.stateful_firewall()
        before = kept(bed)
        r = sip_check(bed)
        inbound = r.check("sip.inbound")
        assert inbound["status"] == "fail", inbound
        d = inbound["details"]
        assert d["platform_took"] is True and d["final"]["code"] == 408, d
        assert d["for_bindings"] == [
            b["contact"] for b in r.check("sip.bindings")["details"]["bindings"]
        ]
        finding = r.finding("network.inbound_blocked")
        assert finding["severity"] == "critical"
        assert d["for_bindings"][0] in finding["explanation"]
        assert "allow inbound SIP over UDP" in finding["action"]
        assert kept(bed) == before
        # Without the firewall the same request arrives: the firewall was the cause.
        bed.agent_firewall()
        assert sip_check(bed).check("sip.inbound")["status"] == "pass"


def test_two_softphones_are_extra_bindings_and_both_survive(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path, softphones=2) as bed:
        before = kept(bed)
        assert len(before) == 2
        r = sip_check(bed)
        bindings = r.check("sip.bindings")
        assert bindings["status"] == "warn", bindings
        assert len(bindings["details"]["extra"]) == 2
        finding = r.finding("sip.extra_bindings")
        assert finding["severity"] == "warning"
        for contact in bindings["details"]["extra"]:
            assert contact in finding["action"]
        assert r.check("sip.inbound")["status"] == "pass"  # the fork reached a softphone
        assert kept(bed) == before
        assert not rang(bed)


def test_no_softphone_is_not_registered_and_our_own_binding_gets_the_request(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        r = sip_check(bed)
        assert r.check("sip.bindings")["status"] == "warn"
        assert r.finding("sip.not_registered")["severity"] == "warning"
        assert "logged in" in r.finding("sip.not_registered")["action"]
        inbound = r.check("sip.inbound")
        assert inbound["status"] == "pass", inbound
        d = inbound["details"]
        assert d["mode"] == "own_binding"
        # It came back through the NAT to the socket our binding registered from.
        assert d["arrived"]["source"].startswith("10.94.0.2:")
        assert d["registration"]["contact_rewritten"] is True  # as PJSIP rewrites its Contact
        assert d["registration"]["removed"] is True
        assert bed.bindings() == []  # nothing left behind


def test_a_running_but_unregistered_softphone_is_critical(tmp_path: Path) -> None:
    # baresip runs (its process is there) but is not registered: its account was removed.
    with InboundBed.start(tmp_path, softphones=1) as bed:
        bed.pbx.kamcmd("ul.rm", "location", "alice")
        r = sip_check(bed, "--only", "host.softphone", "--softphone-process", "baresip")
        assert r.check("host.softphone")["status"] == "pass"
        finding = r.finding("sip.not_registered")
        assert finding["severity"] == "critical"
        assert "runs but is not registered" in finding["action"]


def test_a_private_contact_without_nat_fixup_is_unroutable_and_blocked(tmp_path: Path) -> None:
    # A platform without NAT fix-up stores baresip's private contact as it is: the platform
    # sees 10.94.0.254 but is told 10.95.0.1, which it cannot route to.
    with InboundBed.start(tmp_path, nat_fixup=False, fr_timer_ms=3000) as bed:
        before = kept(bed)
        r = sip_check(bed)
        bindings = r.check("sip.bindings")
        assert bindings["details"]["unroutable"] == [bindings["details"]["bindings"][0]["contact"]]
        finding = r.finding("sip.binding_unroutable")
        assert ROUTER_OUTSIDE_IP in finding["action"] and AGENT_IP in finding["action"]
        assert r.check("sip.inbound")["status"] == "fail"
        # Its own action names the private contact, not a firewall rule.
        action = r.finding("network.inbound_blocked")["action"]
        assert "a private address it cannot reach" in action and AGENT_IP in action
        assert kept(bed) == before


def test_a_platform_that_answers_options_itself_skips_and_names_inbound_call(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path, options_self=True) as bed:
        r = sip_check(bed)
        inbound = r.check("sip.inbound")
        assert inbound["status"] == "skip", inbound
        assert "answers OPTIONS itself" in inbound["summary"]
        assert "--inbound-call" in inbound["summary"]
        assert inbound["details"]["final"]["by"] == "registrar"


def test_inbound_over_tcp_arrives_on_the_connection_we_registered_from(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        r = sip_check(bed, "--transport", "tcp", transport="tcp")
        d = r.check("sip.inbound")["details"]
        assert r.check("sip.inbound")["status"] == "pass", d
        assert (d["transport"], d["arrived"]["same_connection"]) == ("tcp", True)
        assert bed.bindings() == []


# ---- --inbound-call: one INVITE, the exact request a call offer is


def test_inbound_call_rings_baresip_for_a_moment_and_cancels_it(natted: InboundBed) -> None:
    before = kept(natted)
    r = sip_check(natted, "--inbound-call")
    inbound = r.check("sip.inbound")
    assert inbound["status"] == "pass", inbound
    d = inbound["details"]
    assert d["method"] == "INVITE" and d["cancelled"] is True and 180 in d["provisional"]
    assert "we cancelled it" in inbound["summary"]
    assert kept(natted) == before


def test_inbound_call_with_a_gruu_reaches_our_binding_alone_and_nothing_rings(
    natted: InboundBed,
) -> None:
    # Kamailio grants GRUUs (RFC 5627) by default: the INVITE to ours never forks to baresip.
    before = kept(natted)
    r = sip_check(natted, "--inbound-call", "--register-binding")
    d = r.check("sip.inbound")["details"]
    assert r.check("sip.inbound")["status"] == "pass", d
    assert d["registration"]["gruu"] and ";gr=urn:uuid:" in d["registration"]["gruu"]
    assert d["request_uri"] == d["registration"]["gruu"]
    assert (d["arrived"]["answered"], d["final"]["code"]) == (603, 603)
    assert [b.code for b in binding_replies(natted.pbx, d["call_id"])] == [603]  # ours only
    assert not rang(natted)
    assert kept(natted) == before


def test_inbound_call_with_our_binding_declines_and_cancels_the_softphones_branch(
    tmp_path: Path,
) -> None:
    # Without GRUUs the INVITE to the AOR forks to baresip too; our 603 cancels its branch.
    with InboundBed.start(tmp_path, gruu=False) as natted:
        _declines_and_cancels(natted)


def _declines_and_cancels(natted: InboundBed) -> None:
    before = kept(natted)
    # A budget that leaves sip.inbound its whole 4 s wait after sip.register's pjsua2 binding:
    # the 603 is relayed only once baresip's cancelled branch has ended (a loaded CI machine
    # took longer than the default budget left).
    r = sip_check(natted, "--inbound-call", "--register-binding", "--timeout", "20")
    inbound = r.check("sip.inbound")
    assert inbound["status"] == "pass", inbound
    d = inbound["details"]
    assert d["mode"] == "own_binding"
    assert (d["arrived"]["answered"], (d["final"] or {}).get("code")) == (603, 603), d
    run_id = r.json["run_id"]
    assert run_id in d["arrived"]["subject"] and d["arrived"]["run_header"] == run_id
    # Kamailio forked the INVITE to baresip as well and cancelled that branch on our 603.
    # baresip's branch ends in 487 Request Terminated: Kamailio cancelled it (RFC 3261 16.7).
    deadline = time.monotonic() + 3
    while not (codes := [b.code for b in binding_replies(natted.pbx, d["call_id"])]).count(487):
        assert time.monotonic() < deadline, codes
        time.sleep(0.05)
    assert 603 in codes  # and ours declined
    assert kept(natted) == before
    assert natted.bindings() and all("sipdiag=" not in b["Address"] for b in natted.bindings())


def test_inbound_call_is_refused_in_a_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('registrar = "127.0.0.1"\nuser = "alice"\ninbound_call = true\n')
    r = cli_process("check", "--profile", str(profile), "--only", "sip")
    assert r.code == 64, (r.out, r.err)  # a profile error (docs: exit codes)
    assert "unknown key(s): inbound_call" in r.err


# ---- the pjsua2 test softphone on loopback


@pytest.fixture(scope="module")
def routing_kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    server = Kamailio.start(tmp_path_factory.mktemp("kam-route"), route_users=True)
    yield server
    server.stop()


def test_the_pjsua2_softphone_answers_the_platforms_options(routing_kamailio: Kamailio) -> None:
    agent = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "peers" / "softphone.py"),
         routing_kamailio.registrar_uri("udp"), "alice", PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] not in ("registered", "") and "failed" not in lines[-1]:
            lines.append(agent.stdout.readline().strip())
        assert lines[-1] == "registered", lines
        before = routing_kamailio.bindings("alice")
        r = cli_process(
            "check", "--registrar", routing_kamailio.registrar_uri("udp"), "--user", "alice",
            "--only", "sip", "--format", "json", env=ENV,
        )  # fmt: skip
        inbound = r.check("sip.inbound")
        assert inbound["status"] == "pass", inbound
        # PJSUA answers OPTIONS without User-Agent, Server or Contact: not the registrar,
        # which names itself (testbed-pbx) in every answer of its own.
        assert inbound["details"]["final"]["by"] == "binding"
        replies = [
            line for line in routing_kamailio.log_text().splitlines()
            if "RPL 200" in line and inbound["details"]["call_id"] in line
        ]  # fmt: skip
        assert replies, "Kamailio relayed no 200 from the softphone's binding"
        after = routing_kamailio.bindings("alice")
        assert [b["Address"] for b in after] == [b["Address"] for b in before]
        assert [b["Call-ID"] for b in after] == [b["Call-ID"] for b in before]
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(10)


def test_a_platform_that_opens_a_new_tcp_connection_is_recorded_as_such(tmp_path: Path) -> None:
    # Kamailio relaying from its second address cannot use our connection (it ends on its
    # first): it connects to our Contact's port, where our binding also listens.
    with InboundBed.start(tmp_path, softphones=0, nat=False, send_from=True) as bed:
        r = sip_check(bed, "--transport", "tcp", transport="tcp")
        d = r.check("sip.inbound")["details"]
        assert r.check("sip.inbound")["status"] == "pass", d
        assert d["arrived"]["same_connection"] is False
        assert d["arrived"]["source"].startswith("10.94.0.3:")


def test_register_binding_on_a_one_binding_registrar_reports_the_replaced_softphone(
    tmp_path: Path,
) -> None:
    # Asked for (--register-binding): our binding for the INVITE replaces baresip's on a
    # registrar that keeps one per account. It is reported, with the action to re-register.
    with InboundBed.start(tmp_path, one_binding=True) as bed:
        phone = bed.bindings()[0]["Address"]
        r = sip_check(bed, "--inbound-call", "--register-binding", "--only", "sip.inbound")
        inbound = r.check("sip.inbound")
        assert inbound["status"] == "fail", inbound
        assert [b["contact"] for b in inbound["details"]["replaced_bindings"]] == [phone]
        assert "re-register the softphone now" in r.finding("sip.binding_replaced")["action"]


def test_silence_after_the_challenge_is_inbound_blocked_not_a_refusal(tmp_path: Path) -> None:
    # Kamailio's own 408 comes after 5 s, later than sip.inbound waits (4 s): what it saw is
    # the platform's challenge, our answer to it, then nothing.
    with InboundBed.start(tmp_path, nat=False, send_from=True) as bed:
        bed.stateful_firewall()
        r = sip_check(bed)
        d = r.check("sip.inbound")["details"]
        assert r.check("sip.inbound")["status"] == "fail", d
        assert (d["final"], d["challenged"], d["platform_took"]) == (None, True, True)
        assert "network.inbound_blocked" in r.causes()
