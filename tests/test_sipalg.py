"""net.sip-alg: a router ALG emulated by a rewriting UDP relay, real Kamailio and pjsua2."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process, registered
from contexts import make_context
from peers.alg_relay import CONTACT, VIA, AlgRelay, alg_rewrite, alg_rewrite_sdp
from peers.kamailio import Kamailio
from peers.netns import NetnsPair

from checks.net.sip_alg import (
    check_sip_alg,
    contact_uri,
    hint,
    options_evidence,
    sent_by,
    split_contacts,
    via_changes,
)
from checks.wire import sip as sipmsg
from checks.wire import sip as sipwire
from checks.wire.dns import Target
from checks.wire.udp import Exchange
from diag.context import Check, Context
from diag.model import CheckResult, Status, passed

(CHECK,) = registered("net.sip-alg")
PASS_SUMMARY = "Via and Contact arrived unchanged"
SENT_VIA = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport"
SENT_CONTACT = "<sip:alice@10.0.0.5:5060;ob;sipdiag=run12345>"


def tls_only(results: Mapping[str, CheckResult]) -> Context:
    """No OPTIONS of our own (no ALG reads TLS): only the other checks' evidence counts."""
    return make_context(registrar="sip:192.0.2.10", results=results, transports=("tls",))


def register_result(via: str, contacts: list[str], first_ok: bool = True) -> CheckResult:
    """sip.register's attempt; ``first_ok``: the 2xx that answers ``sent`` (else the 2xx
    pjsua reported, which may answer its own re-REGISTER from the public address)."""
    attempt: dict[str, Any] = {
        "transport": "udp",
        "sent": {"via": SENT_VIA, "contact": SENT_CONTACT},
        "via_echoed": via,
        "bindings": contacts,
    }
    if first_ok:
        attempt["first_ok"] = {"via": via, "contacts": contacts}
    return CheckResult(Status.PASS, "registered", {"attempts": [attempt]})


def stun_result(*servers: dict[str, Any]) -> CheckResult:
    return CheckResult(Status.PASS, "mapped", {"servers": list(servers)})


# ---- the comparison rules


def test_a_via_that_only_gained_received_and_rport_is_unchanged() -> None:
    seen = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport=40000;received=203.0.113.9"
    assert via_changes(SENT_VIA, seen) == []


@pytest.mark.parametrize(
    ("seen", "changed"),
    [
        ("SIP/2.0/UDP 203.0.113.9:40000;branch=z9hG4bKabc;rport=40000", ["sent-by"]),
        ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKxyz;rport=5060", ["branch"]),
        ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport=5060;alg", ["params"]),
        ("SIP/2.0/TCP 10.0.0.5;branch=z9hG4bKabc", ["protocol", "sent-by"]),
        ("SIP/2.0/UDP 10.0.0.5:5060; branch=z9hG4bKabc;rport", ["branch"]),
    ],
)
def test_any_other_change_of_the_via_is_a_rewrite(seen: str, changed: list[str]) -> None:
    assert via_changes(SENT_VIA, seen) == changed


def test_sent_by_and_contacts_are_read_as_written() -> None:
    assert sent_by("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1") == "[2001:db8::1]:5060"
    values = ['<sip:a@h:1;sipdiag=x>;expires=60, "B, b" <sip:b@h>', "sip:c@h;expires=30"]
    assert split_contacts(values) == [
        "<sip:a@h:1;sipdiag=x>;expires=60",
        '"B, b" <sip:b@h>',
        "sip:c@h;expires=30",
    ]
    assert [contact_uri(c) for c in split_contacts(values)] == [
        "sip:a@h:1;sipdiag=x",
        "sip:b@h",
        "sip:c@h",
    ]


def test_the_alg_emulator_rewrites_only_via_and_contact_lines() -> None:
    request = (
        b"REGISTER sip:10.0.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;rport\r\n"
        b"From: <sip:alice@10.0.0.5:5060>\r\nm: <sip:alice@10.0.0.5:5060>\r\n"
        b"Content-Length: 15\r\n\r\nc=IN 10.0.0.5:5060"
    )
    out = alg_rewrite(request, ("10.0.0.5", 5060), ("203.0.113.9", 4000), (*VIA, *CONTACT))
    assert out == (
        b"REGISTER sip:10.0.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:4000;rport\r\n"
        b"From: <sip:alice@10.0.0.5:5060>\r\nm: <sip:alice@203.0.113.9:4000>\r\n"
        b"Content-Length: 15\r\n\r\nc=IN 10.0.0.5:5060"
    )


# ---- evidence from sip.register and net.stun (no probe of our own: TLS only)


def test_a_registered_contact_with_another_address_is_a_rewrite() -> None:
    echoed = "SIP/2.0/UDP 203.0.113.9:4000;branch=z9hG4bKdef;rport=4000;received=203.0.113.9"
    binding = "<sip:alice@203.0.113.9:4000;ob;sipdiag=run12345>;expires=300"
    other = "<sip:alice@198.51.100.7:5060>;expires=3000"  # the agent's own softphone
    result = check_sip_alg(tls_only({"sip.register": register_result(echoed, [other, binding])}))
    assert result.status is Status.FAIL
    assert result.hint == (
        "disable SIP ALG ('SIP helper', 'SIP transformations') on the router/firewall "
        "between this machine and 192.0.2.10"
    )
    assert result.details["rewrites"] == [
        {
            "source": "register",
            "field": "Via",
            "sent": SENT_VIA,
            "seen": echoed,
            "changed": ["sent-by"],
            "transport": "udp",
        },
        {
            "source": "register",
            "field": "Contact",
            "sent": "sip:alice@10.0.0.5:5060;ob;sipdiag=run12345",
            "seen": "sip:alice@203.0.113.9:4000;ob;sipdiag=run12345",
            "changed": ["host:port"],
            "transport": "udp",
        },
    ]
    assert result.summary == (
        "a middlebox rewrites our signalling: Via sent-by 10.0.0.5:5060 arrived as "
        "203.0.113.9:4000 (REGISTER) (+1 more)"
    )
    assert result.details["probes"]["options"]["compared"] is False


def test_plain_nat_changes_neither_via_nor_contact() -> None:
    # Another branch (the REGISTER with credentials) and the NAT's received/rport: no ALG.
    echoed = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKdef;rport=4000;received=203.0.113.9"
    binding = "<sip:alice@10.0.0.5:5060;ob;sipdiag=run12345>;expires=300"
    result = check_sip_alg(tls_only({"sip.register": register_result(echoed, [binding])}))
    assert (result.status, result.summary) == (Status.PASS, PASS_SUMMARY)
    assert result.details["probes"]["register"] == [
        {"transport": "udp", "via": "unchanged", "contact": "unchanged", "basis": "first 2xx"}
    ]


def test_pjsuas_own_move_to_the_public_address_is_no_evidence_either_way() -> None:
    # Without first_ok, the reported 2xx may answer pjsua's re-REGISTER after a NAT.
    echoed = "SIP/2.0/UDP 203.0.113.9:4000;branch=z9hG4bKdef;rport=4000;received=203.0.113.9"
    binding = "<sip:alice@203.0.113.9:4000;ob;sipdiag=run12345>;expires=300"
    reg = register_result(echoed, [binding], first_ok=False)
    result = check_sip_alg(tls_only({"sip.register": reg}))
    assert result.status is Status.SKIP
    assert result.details["probes"]["register"] == [
        {"transport": "udp", "via": "ambiguous", "contact": "ambiguous", "basis": "reported 2xx"}
    ]
    assert "sip.register: pjsua re-registered from its public address" in result.summary


def test_a_reported_binding_at_an_address_the_registrar_never_saw_is_a_rewrite() -> None:
    echoed = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKdef;rport=4000;received=203.0.113.9"
    binding = "<sip:alice@198.51.100.1:5060;ob;sipdiag=run12345>;expires=300"
    reg = register_result(echoed, [binding], first_ok=False)
    result = check_sip_alg(tls_only({"sip.register": reg}))
    assert result.status is Status.FAIL
    assert [(w["field"], w["seen"]) for w in result.details["rewrites"]] == [
        ("Contact", "sip:alice@198.51.100.1:5060;ob;sipdiag=run12345")
    ]


def test_stun_mapped_address_unlike_the_xor_mapped_one_is_a_rewrite() -> None:
    stun = stun_result(
        {"server": "stun1:3478", "transport": "udp", "alg_suspected": False,
         "mapped": "203.0.113.9:4000", "mapped_plain": "203.0.113.9:4000"},
        {"server": "stun2:3478", "transport": "udp", "alg_suspected": True,
         "mapped": "203.0.113.9:4001", "mapped_plain": "10.0.0.5:5062"},
    )  # fmt: skip
    result = check_sip_alg(tls_only({"net.stun": stun}))
    assert result.status is Status.FAIL
    assert result.details["rewrites"] == [
        {
            "source": "stun",
            "field": "MAPPED-ADDRESS",
            "sent": "203.0.113.9:4001",
            "seen": "10.0.0.5:5062",
            "changed": ["address"],
            "server": "stun2:3478",
            "transport": "udp",
        }
    ]
    assert result.summary.endswith(
        "STUN server stun2:3478 sent MAPPED-ADDRESS 10.0.0.5:5062 "
        "but XOR-MAPPED-ADDRESS 203.0.113.9:4001"
    )


def test_with_nothing_to_compare_the_check_skips_and_says_why() -> None:
    result = check_sip_alg(tls_only({}))
    assert result.status is Status.SKIP
    assert result.summary == (
        "nothing to compare: no OPTIONS sent: signalling uses tls, which no ALG can read; "
        "sip.register did not run; net.stun did not run"
    )


# ---- our own OPTIONS, direct and through the ALG emulator (loopback)


@pytest.fixture
def alg(kamailio: Kamailio) -> Iterator[AlgRelay]:
    """The ALG in front of Kamailio: clients on 127.0.0.1, its outside address 127.0.0.2."""
    with AlgRelay("127.0.0.1", (kamailio.host, kamailio.port), "127.0.0.2").start() as relay:
        yield relay


def test_options_straight_to_kamailio_arrive_unchanged(kamailio: Kamailio) -> None:
    t0 = time.monotonic()
    result = check_sip_alg(make_context(registrar=f"sip:{kamailio.host}:{kamailio.port}"))
    assert (result.status, result.summary) == (Status.PASS, PASS_SUMMARY)
    options = result.details["probes"]["options"]
    assert options["compared"] is True and options["code"] == 200
    assert options["echoed_via"].startswith(options["sent_via"] + "=")  # ;rport=PORT;received=
    # Kamailio reflects the request (X-Sipdiag-Reflect): Contact and SDP arrived as sent.
    assert (options["reflected"], options["contact"], options["sdp"]) == (
        True,
        "unchanged",
        "unchanged",
    )
    assert time.monotonic() - t0 < 0.5


def test_a_server_that_does_not_reflect_leaves_contact_and_sdp_uncompared() -> None:
    sent = sipwire.options_request(
        "sip:192.0.2.10",
        "udp",
        "10.0.0.5",
        5060,
        "p1",
        "ua",
        sdp=sipwire.sdp_offer("10.0.0.5", 5060, "1"),
    )
    answer = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKp1;rport=5060\r\n"
        "Call-ID: p1@10.0.0.5\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    exchanged = Exchange("p1", lambda h, p: sent, request=sent, outcome="answered", code=200)
    exchanged.answer = sipmsg.parse(answer)
    probe, rewrites = options_evidence(
        exchanged, Target("udp", "192.0.2.10", 5060, "192.0.2.10"), "dns"
    )
    assert rewrites == []
    assert (probe["compared"], probe["reflected"], probe["contact"], probe["sdp"]) == (
        True,
        False,
        "not compared",
        "not compared",
    )


def test_the_alg_emulator_rewrites_the_sdp_addresses_and_fixes_the_length() -> None:
    body = sipwire.sdp_offer("10.0.0.5", 4000, "1").encode()
    request = b"OPTIONS sip:x SIP/2.0\r\nl: " + str(len(body)).encode() + b"\r\n\r\n" + body
    out = alg_rewrite_sdp(request, "10.0.0.5", "203.0.113.99")
    head, _, new_body = out.partition(b"\r\n\r\n")
    assert b"c=IN IP4 203.0.113.99" in new_body and b"o=sipdiag 1 1 IN IP4 203.0.113.99" in new_body
    assert b"10.0.0.5" not in new_body and head.endswith(b"l: " + str(len(new_body)).encode())


def test_options_through_the_alg_show_the_rewritten_via(alg: AlgRelay) -> None:
    result = check_sip_alg(make_context(registrar=f"sip:127.0.0.1:{alg.port}"))
    assert result.status is Status.FAIL and alg.rewritten == 1
    via, contact, sdp = result.details["rewrites"]
    local = result.details["probes"]["options"]["local"]
    assert (via["source"], via["field"], via["changed"]) == ("options", "Via", ["sent-by"])
    assert sent_by(via["sent"]) == local
    assert sent_by(via["seen"]).startswith("127.0.0.2:")
    assert result.summary.startswith(f"a middlebox rewrites our signalling: Via sent-by {local}")
    # The reflected request shows what the ALG did to the Contact and the SDP.
    assert (contact["field"], contact["changed"], contact["seen_in"]) == (
        "Contact",
        ["host:port"],
        "reflection",
    )
    assert contact["sent"].startswith(f"sip:sipdiag@{local}") and "127.0.0.2:" in contact["seen"]
    assert (sdp["field"], sdp["changed"]) == ("SDP", ["o=", "c="])
    assert sdp["sent"] == "o=sipdiag 1 1 IN IP4 127.0.0.1 / c=IN IP4 127.0.0.1"
    assert sdp["seen"] == "o=sipdiag 1 1 IN IP4 127.0.0.2 / c=IN IP4 127.0.0.2"


def test_an_alg_that_restores_the_via_is_caught_by_the_reflected_request(
    kamailio: Kamailio,
) -> None:
    upstream = (kamailio.host, kamailio.port)
    with AlgRelay("127.0.0.1", upstream, "127.0.0.2", restore_via=True).start() as relay:
        result = check_sip_alg(make_context(registrar=f"sip:127.0.0.1:{relay.port}"))
    assert result.status is Status.FAIL
    rewrites = result.details["rewrites"]
    assert [(w["field"], w["seen_in"]) for w in rewrites] == [
        ("Via", "reflection"),
        ("Contact", "reflection"),
        ("SDP", "reflection"),
    ]
    assert result.details["probes"]["options"]["echoed_via"] is not None  # restored: no help
    assert result.summary.endswith("(OPTIONS) (+2 more)") and "127.0.0.2" in result.summary


def test_an_alg_rewriting_only_the_sdp_is_found(kamailio: Kamailio) -> None:
    upstream = (kamailio.host, kamailio.port)
    with AlgRelay("127.0.0.1", upstream, "127.0.0.2", rewrite_headers=False).start() as relay:
        result = check_sip_alg(make_context(registrar=f"sip:127.0.0.1:{relay.port}"))
    assert result.status is Status.FAIL and relay.rewritten == 1
    assert [w["field"] for w in result.details["rewrites"]] == ["SDP"]
    assert result.summary == (
        "a middlebox rewrites our signalling: SDP o=sipdiag 1 1 IN IP4 127.0.0.1 / "
        "c=IN IP4 127.0.0.1 arrived as o=sipdiag 1 1 IN IP4 127.0.0.2 / c=IN IP4 127.0.0.2 "
        "(OPTIONS)"
    )
    options = result.details["probes"]["options"]
    assert (options["contact"], options["sdp"]) == ("unchanged", "rewritten")


def test_a_stun_check_that_saw_an_alg_fails_the_run_through_the_cli(
    kamailio: Kamailio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    servers = [{"server": "127.0.0.1:3478", "alg_suspected": True, "mapped": "192.0.2.1:4000",
                "mapped_plain": "10.1.1.1:4000"}]  # fmt: skip
    fake_stun = Check("net.stun", "STUN works", lambda ctx: passed("mapped", servers=servers))
    r = cli(
        "check", "--registrar", f"sip:{kamailio.host}:{kamailio.port}", "--format", "json",
        registry=[fake_stun, CHECK],
    )  # fmt: skip
    check = next(c for c in r.json["checks"] if c["id"] == "net.sip-alg")
    assert check["status"] == "fail" and r.code == 1
    assert [(w["source"], w["seen"]) for w in check["details"]["rewrites"]] == [
        ("stun", "10.1.1.1:4000")
    ]
    assert check["details"]["probes"]["options"]["compared"] is True  # and OPTIONS saw nothing
    assert check["hint"] == hint(kamailio.host)


# ---- pjsua2's REGISTER and our OPTIONS from the agent namespace, the ALG in the pbx one


def run_in_agent(pair: NetnsPair, tmp_path: Path, registrar: str) -> CliResult:
    return cli_process(
        "check", "--registrar", registrar, "--user", "alice",
        "--only", "sip.register", "--only", "net.sip-alg", "--format", "json",
        env={"XDG_DATA_HOME": str(tmp_path / "data"), "SIPDIAG_PASSWORD": "alice-secret"},
        timeout=60, prefix=pair.exec_argv(pair.agent, []),
    )  # fmt: skip


OPTIONS_VIA, REGISTER_VIA, REGISTER_CONTACT = (
    ("options", "Via"),
    ("register", "Via"),
    ("register", "Contact"),
)
# What the request Kamailio reflects shows (the OPTIONS's Via is there only when its echo did not
# already show it).
REFLECTED = [("options", "Contact"), ("options", "SDP")]


@pytest.mark.parametrize(
    ("alg", "expected", "register_seen", "with_first_ok"),
    [
        ("none", [], ("unchanged", "unchanged"), []),
        # The relay as a plain NAT: a new source address, nothing rewritten. pjsua re-registers
        # from the public address, so the 2xx it reports cannot tell a NAT from an ALG.
        ("nat", [], ("ambiguous", "ambiguous"), []),
        (
            "rewrite",
            [OPTIONS_VIA, *REFLECTED],
            ("ambiguous", "ambiguous"),
            [OPTIONS_VIA, *REFLECTED, REGISTER_VIA, REGISTER_CONTACT],
        ),
        # An ALG that puts our Via back in responses hides from the OPTIONS's echo, not from the
        # request Kamailio reflects; the 2xx to the REGISTER it rewrote (sip.register's
        # "first_ok") lists the Contact it stored.
        (
            "rewrite, restore Via",
            [OPTIONS_VIA, *REFLECTED],
            ("unchanged", "ambiguous"),
            [OPTIONS_VIA, *REFLECTED, REGISTER_CONTACT],
        ),
    ],
)
def test_from_the_agent_namespace_an_alg_shows_and_a_nat_does_not(
    netns_pair: NetnsPair,
    tmp_path: Path,
    alg: str,
    expected: list[tuple[str, str]],
    register_seen: tuple[str, str],
    with_first_ok: list[tuple[str, str]],
) -> None:
    kam = netns_pair.start_kamailio()
    registrar = f"sip:{kam.host}:{kam.port}"
    relay = None
    if alg != "none":
        relay = AlgRelay(
            kam.host,
            (kam.host, kam.port),
            kam.host,
            netns_pair.pbx,
            rewrite=alg != "nat",
            restore_via="Via" in alg,
        ).start()
        registrar = f"sip:{kam.host}:{relay.port}"
    try:
        r = run_in_agent(netns_pair, tmp_path, registrar)
    finally:
        if relay is not None:
            relay.stop()
    checks = {c["id"]: c for c in r.json["checks"]}
    assert checks["sip.register"]["status"] == "pass", checks["sip.register"]
    check = checks["net.sip-alg"]
    [register] = check["details"]["probes"]["register"]
    if "first_ok" in checks["sip.register"]["details"]["attempts"][0]:
        expected, register_seen = with_first_ok, ("unchanged", "unchanged")  # answers `sent`
        assert register["basis"] == "first 2xx"
    rewrites = check["details"]["rewrites"]
    assert [(w["source"], w["field"]) for w in rewrites] == expected, check
    for w in rewrites:
        assert netns_pair.agent_ip in w["sent"] and netns_pair.pbx_ip in w["seen"]
    if expected:
        assert check["status"] == "fail" and r.code == 1
        assert check["hint"] == hint(kam.host)
    else:
        assert (check["status"], check["summary"]) == ("pass", PASS_SUMMARY)
        options = check["details"]["probes"]["options"]
        assert options["compared"] is True
        seen_from = netns_pair.agent_ip if alg == "none" else netns_pair.pbx_ip
        assert options["echoed_via"].endswith(f";received={seen_from}")  # a NAT, and no ALG
    if (REGISTER_VIA not in expected) and (REGISTER_CONTACT not in expected):
        assert (register["via"], register["contact"]) == register_seen
    assert kam.bindings("alice") == []  # sip.register removed its binding, even through the ALG
