"""net.dns: RFC 3263 resolution against a real dnsmasq (records per test), and its check result."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process, registered
from contexts import make_context
from peers.dnsmasq import Dnsmasq, DnsmasqFactory, answers_dns, host, naptr, srv
from peers.kamailio import Kamailio
from peers.process import Daemon, free_port

from checks.net.dns import check_dns, dns_deadline, failure_outcome, targets_for
from checks.wire.dns import (
    NaptrRecord,
    Resolution,
    SrvRecord,
    Target,
    naptr_srv_names,
    parse_nameserver,
    resolve,
    srv_order,
)
from diag.model import CheckResult, Status
from diag.target import Registrar, parse_registrar

# pbx.test: NAPTR for all three transports, pointing at non-default SRV names; decoy well-known SRV
# names prove the NAPTR's names win.
PBX = (
    naptr("pbx.test", 10, 10, "SIP+D2U", "_sip._udp.edge.pbx.test"),
    naptr("pbx.test", 20, 10, "SIP+D2T", "_sip._tcp.edge.pbx.test"),
    naptr("pbx.test", 30, 10, "SIPS+D2T", "_sips._tcp.edge.pbx.test"),
    naptr("pbx.test", 40, 10, "E2U+sip", "!^.*$!sip:info@pbx.test!", flags="u"),  # not ours
    srv("_sip._udp.edge.pbx.test", "sip2.pbx.test", 5070, priority=20),
    srv("_sip._udp.edge.pbx.test", "sip1.pbx.test", 5060, priority=10),
    srv("_sip._tcp.edge.pbx.test", "sip1.pbx.test", 5060, priority=10),
    srv("_sips._tcp.edge.pbx.test", "sip1.pbx.test", 5061, priority=10),
    srv("_sip._udp.pbx.test", "decoy.pbx.test", 5060),
    host("sip1.pbx.test", "127.0.0.11", "::1"),
    host("sip2.pbx.test", "127.0.0.12"),
    host("decoy.pbx.test", "127.0.0.99"),
)
# srv.test: no NAPTR, SRV under the well-known names only.
SRV_ONLY = (
    srv("_sip._udp.srv.test", "b.srv.test", 5080, priority=10, weight=10),
    srv("_sip._udp.srv.test", "a.srv.test", 5080, priority=10, weight=10),
    srv("_sip._udp.srv.test", "c.srv.test", 5090, priority=10, weight=60),
    srv("_sip._tcp.srv.test", "a.srv.test", 5080, priority=5),
    srv("_sip._tcp.srv.test", "a.srv.test", 5080, priority=7),  # the same target twice
    host("a.srv.test", "127.0.0.21"),
    host("b.srv.test", "127.0.0.22"),
    host("c.srv.test", "127.0.0.23"),
)
PLAIN = (host("plain.test", "127.0.0.31"),)  # an address record and nothing else
UDP_ONLY = (  # udp SRV only, and no address record for the domain itself
    srv("_sip._udp.udponly.test", "sip.udponly.test", 5060),
    srv("_sip._tcp.notcp.test"),  # target ".": "TCP is not offered here" (RFC 2782)
    srv("_sip._udp.notcp.test", "sip.udponly.test", 5060),
    host("sip.udponly.test", "127.0.0.41"),
    host("notcp.test", "127.0.0.42"),
)


def registrar(text: str) -> Registrar:
    return parse_registrar(text)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def rows(res: Resolution) -> list[tuple[str, str, int, str]]:
    return [(t.transport, t.host, t.port, t.address) for t in res.targets]


def queried(res: Resolution) -> list[tuple[str, str]]:
    return [(q["type"], q["name"]) for q in res.lookups]


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """A UDP socket on 127.0.0.1 that receives DNS queries and never answers."""
    port = free_port(kinds=("udp",))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        yield f"127.0.0.1:{port}"


# Pure helpers


def test_naptr_gives_srv_names_per_transport_in_order_and_ignores_other_services() -> None:
    records = [
        NaptrRecord(20, 10, "S", "sip+d2t", "_sip._tcp.x"),
        NaptrRecord(10, 20, "s", "SIP+D2U", "_sip._udp.b.x"),
        NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.a.x"),
        NaptrRecord(5, 10, "u", "E2U+sip", ""),
        NaptrRecord(5, 10, "a", "SIPS+D2T", "tls.x"),  # not a terminal SRV pointer
        NaptrRecord(30, 10, "s", "SIP+D2S", "_sip._sctp.x"),  # SCTP: not a transport we test
    ]
    assert naptr_srv_names(records) == {
        "udp": ["_sip._udp.a.x", "_sip._udp.b.x"],
        "tcp": ["_sip._tcp.x"],
    }


def test_srv_records_sort_by_priority_then_heaviest_weight_then_name() -> None:
    records = [
        SrvRecord(20, 100, 5060, "a.x"),
        SrvRecord(10, 10, 5060, "c.x"),
        SrvRecord(10, 10, 5060, "b.x"),
        SrvRecord(10, 50, 5060, "z.x"),
    ]
    assert [r.target for r in srv_order(records)] == ["z.x", "b.x", "c.x", "a.x"]


def test_nameserver_is_an_ip_with_an_optional_port() -> None:
    assert parse_nameserver("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[2001:db8::53]:5300") == ("2001:db8::53", 5300)
    with pytest.raises(ValueError):
        parse_nameserver("dns.example.com")


def lookup(kind: str, name: str, error: str | None, source: str = "dns") -> dict[str, Any]:
    return {"type": kind, "name": name, "answers": [], "error": error, "ms": 1, "source": source}


@pytest.mark.parametrize(
    ("errors", "outcome"),
    [
        # NXDOMAIN for the name itself is definitive, even if another query went unanswered.
        ([("NAPTR", "x.test", "Timeout"), ("A", "x.test", "NXDOMAIN")], "nxdomain"),
        # NXDOMAIN for an SRV name only says that SRV name does not exist.
        ([("SRV", "_sip._udp.x.test", "NXDOMAIN"), ("A", "x.test", "Timeout")], "no_answer"),
        ([("NAPTR", "x.test", "NoAnswer"), ("A", "x.test", "NoNameservers")], "server_failure"),
        ([("NAPTR", "x.test", "NoAnswer"), ("A", "x.test", "deadline reached")], "unfinished"),
        ([("NAPTR", "x.test", "NoAnswer"), ("A", "x.test", "NoAnswer")], "no_records"),
    ],
)
def test_why_nothing_resolved_tells_a_silent_server_from_a_missing_name(
    errors: list[tuple[str, str, str]], outcome: str
) -> None:
    lookups = [lookup(*e) for e in errors]
    lookups.append(lookup("A/AAAA", "x.test", "EAI_NONAME", source="os"))  # never decides
    assert failure_outcome(lookups, "x.test", ["127.0.0.1:53"]) == outcome
    assert failure_outcome(lookups, "x.test", []) == "no_dns_server"


def test_ip_literal_registrar_needs_no_dns_and_gets_default_ports() -> None:
    res = resolve(registrar("sip:127.0.0.5"), ["udp", "tcp", "tls"], "127.0.0.1:9", soon())
    assert res.lookups == []
    assert rows(res) == [
        ("udp", "127.0.0.5", 5060, "127.0.0.5"),
        ("tcp", "127.0.0.5", 5060, "127.0.0.5"),
        ("tls", "127.0.0.5", 5061, "127.0.0.5"),
    ]
    ipv6 = resolve(registrar("[::1]:5070"), ["udp"], None, soon())
    assert rows(ipv6) == [("udp", "::1", 5070, "::1")]


def test_ip_literal_registrar_passes_the_check_without_dns() -> None:
    result = check_dns(make_context(registrar="sip:127.0.0.5:5080"))
    assert result.status is Status.PASS
    assert result.summary == "127.0.0.5 is an IP address; no DNS needed"
    assert result.details["lookups"] == []
    assert result.details["targets"] == [
        {
            "transport": "udp",
            "host": "127.0.0.5",
            "port": 5080,
            "address": "127.0.0.5",
            "source": "literal",
        }
    ]
    assert result.details["outcome"] == "ip_address"


def test_an_unknown_transport_is_a_precise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown transport 'sctp'"):
        resolve(registrar("127.0.0.1"), ["sctp"], None, soon())


# Against dnsmasq


def test_naptr_domain_resolves_each_transport_through_its_srv_records_in_priority_order(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*PBX)
    res = resolve(registrar("sip:pbx.test"), ["udp", "tcp", "tls"], server.server, soon())
    assert rows(res) == [
        ("udp", "sip1.pbx.test", 5060, "127.0.0.11"),
        ("udp", "sip1.pbx.test", 5060, "::1"),
        ("udp", "sip2.pbx.test", 5070, "127.0.0.12"),
        ("tcp", "sip1.pbx.test", 5060, "127.0.0.11"),
        ("tcp", "sip1.pbx.test", 5060, "::1"),
        ("tls", "sip1.pbx.test", 5061, "127.0.0.11"),
        ("tls", "sip1.pbx.test", 5061, "::1"),
    ]
    assert res.naptr_transports == ["udp", "tcp", "tls"]
    assert queried(res) == [
        ("NAPTR", "pbx.test"),
        ("SRV", "_sip._udp.edge.pbx.test"),
        ("A", "sip1.pbx.test"),
        ("AAAA", "sip1.pbx.test"),
        ("A", "sip2.pbx.test"),
        ("AAAA", "sip2.pbx.test"),
        ("SRV", "_sip._tcp.edge.pbx.test"),
        ("SRV", "_sips._tcp.edge.pbx.test"),
    ]
    naptr_lookup = res.lookups[0]
    assert naptr_lookup["error"] is None and len(naptr_lookup["answers"]) == 4
    assert res.lookups[5]["error"] == "NoAnswer"  # sip2 has no AAAA
    assert all(isinstance(q["ms"], int) for q in res.lookups)
    assert ("SRV", "_sip._udp.pbx.test") not in server.queries()  # the NAPTR's name won


def test_domain_without_naptr_uses_the_well_known_srv_names(dnsmasq: DnsmasqFactory) -> None:
    server = dnsmasq(*SRV_ONLY)
    res = resolve(registrar("srv.test"), ["udp", "tcp"], server.server, soon())
    assert rows(res) == [
        ("udp", "c.srv.test", 5090, "127.0.0.23"),  # heaviest weight first
        ("udp", "a.srv.test", 5080, "127.0.0.21"),  # equal weights: by name
        ("udp", "b.srv.test", 5080, "127.0.0.22"),
        ("tcp", "a.srv.test", 5080, "127.0.0.21"),  # two SRV records, one target
    ]
    assert res.naptr_transports == []
    # srv.test exists only as the parent of its SRV names: NOERROR without data, not NXDOMAIN.
    assert res.lookups[0] == {**res.lookups[0], "type": "NAPTR", "error": "NoAnswer"}
    assert queried(res)[1] == ("SRV", "_sip._udp.srv.test")
    assert res.routes["udp"].via == "SRV"


def test_domain_with_only_an_address_record_gets_the_default_ports(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*PLAIN)
    res = resolve(registrar("plain.test"), ["udp", "tcp", "tls"], server.server, soon())
    assert rows(res) == [
        ("udp", "plain.test", 5060, "127.0.0.31"),
        ("tcp", "plain.test", 5060, "127.0.0.31"),
        ("tls", "plain.test", 5061, "127.0.0.31"),
    ]
    assert queried(res) == [
        ("NAPTR", "plain.test"),
        ("SRV", "_sip._udp.plain.test"),
        ("A", "plain.test"),
        ("AAAA", "plain.test"),
        ("SRV", "_sip._tcp.plain.test"),
        ("SRV", "_sips._tcp.plain.test"),
    ]
    assert {t: r.via for t, r in res.routes.items()} == {t: "A/AAAA" for t in ("udp", "tcp", "tls")}


@pytest.mark.parametrize(
    ("transport", "srv_name", "port"), [("tcp", "_sip._tcp", 5062), ("tls", "_sips._tcp", 5063)]
)
def test_explicit_transport_parameter_skips_naptr_and_asks_that_transports_srv(
    dnsmasq: DnsmasqFactory, transport: str, srv_name: str, port: int
) -> None:
    # RFC 3263 4.1: the URI's ;transport= decides; the domain's NAPTR preferences do not count.
    server = dnsmasq(*PBX, srv(f"{srv_name}.pbx.test", "decoy.pbx.test", port))
    target = registrar(f"sip:pbx.test;transport={transport}")
    res = resolve(target, [transport], server.server, soon())
    assert rows(res) == [(transport, "decoy.pbx.test", port, "127.0.0.99")]
    assert queried(res) == [
        ("SRV", f"{srv_name}.pbx.test"),
        ("A", "decoy.pbx.test"),
        ("AAAA", "decoy.pbx.test"),
    ]
    assert res.naptr_transports == [] and res.routes[transport].via == "SRV"
    asked = [q for q in server.queries() if q[1] != "ready.invalid"]
    assert asked == queried(res) and not any(kind == "NAPTR" for kind, _ in asked)


def test_explicit_port_skips_naptr_and_srv(dnsmasq: DnsmasqFactory) -> None:
    server = dnsmasq(*PBX, host("pbx.test", "127.0.0.10"))
    res = resolve(registrar("sip:pbx.test:5999"), ["udp", "tcp"], server.server, soon())
    assert rows(res) == [
        ("udp", "pbx.test", 5999, "127.0.0.10"),
        ("tcp", "pbx.test", 5999, "127.0.0.10"),
    ]
    assert queried(res) == [("A", "pbx.test"), ("AAAA", "pbx.test")]
    assert [q for q in server.queries() if q[1] != "ready.invalid"] == [
        ("A", "pbx.test"),
        ("AAAA", "pbx.test"),
    ]


def test_srv_target_dot_means_not_offered_and_does_not_fall_back_to_addresses(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*UDP_ONLY)
    res = resolve(registrar("notcp.test"), ["tcp"], server.server, soon())
    assert res.targets == []
    assert ("A", "notcp.test") not in queried(res)


def test_check_passes_and_names_each_transports_first_target_and_source(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*PBX)
    result = check_dns(
        make_context(registrar="pbx.test", transports=("udp", "tls"), dns_server=server.server)
    )
    assert result.status is Status.PASS
    assert result.summary == (
        "pbx.test: udp → 127.0.0.11:5060 +2 more (NAPTR+SRV), tls → 127.0.0.11:5061 +1 more "
        "(NAPTR+SRV)"
    )
    assert result.hint is None
    details = result.details
    assert details["registrar"] == "pbx.test"
    assert details["nameserver"] == server.server
    assert details["naptr_transports"] == ["udp", "tcp", "tls"]
    assert details["via"] == {"udp": "NAPTR+SRV", "tls": "NAPTR+SRV"}
    assert details["targets"][0] == {
        "transport": "udp",
        "host": "sip1.pbx.test",
        "port": 5060,
        "address": "127.0.0.11",
        "source": "dns",
    }
    assert [q["type"] for q in details["lookups"]][:2] == ["NAPTR", "SRV"]
    # --dns-server is what the user asked about: the OS resolver is not asked.
    assert details["os_resolver"] is False and details["dns_servers"] == [server.server]
    assert {q["source"] for q in details["lookups"]} == {"dns"}
    assert (details["outcome"], details["remarks"]) == ("resolved", [])


def test_unknown_domain_fails_naming_every_name_tried_with_the_dns_hint(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*PBX)
    result = check_dns(make_context(registrar="sip:nowhere.test", dns_server=server.server))
    assert result.status is Status.FAIL
    assert result.summary == (
        "nowhere.test does not resolve: the name does not exist; tried NAPTR nowhere.test, "
        "SRV _sip._udp.nowhere.test, A nowhere.test, AAAA nowhere.test (NXDOMAIN)"
    )
    assert result.hint == (
        "check the registrar name and the DNS servers this machine uses (or pass --dns-server)"
    )
    assert result.details["targets"] == []
    assert result.details["outcome"] == "nxdomain"


def test_a_name_that_exists_without_usable_records_fails_as_no_records_not_as_missing(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*UDP_ONLY)  # notcp.test exists; its TCP SRV record says "not offered"
    result = check_dns(
        make_context(registrar="notcp.test", transports=("tcp",), dns_server=server.server)
    )
    assert result.status is Status.FAIL
    assert result.summary == (
        "notcp.test does not resolve: DNS has no usable records for it; tried NAPTR notcp.test, "
        "SRV _sip._tcp.notcp.test (NoAnswer)"
    )
    assert result.details["outcome"] == "no_records"


def test_tcp_asked_of_a_domain_with_only_udp_srv_warns_naming_the_missing_record(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*UDP_ONLY)
    result = check_dns(
        make_context(registrar="udponly.test", transports=("udp", "tcp"), dns_server=server.server)
    )
    assert result.status is Status.WARN
    assert result.summary == "udponly.test: udp → 127.0.0.41:5060 (SRV); no target for tcp"
    assert result.hint == "publish _sip._tcp.udponly.test SRV records or use --transport udp"
    assert [t["transport"] for t in result.details["targets"]] == ["udp"]


def test_unresponsive_nameserver_returns_within_the_deadline_with_a_timeout_recorded(
    silent_nameserver: str,
) -> None:
    started = time.monotonic()
    res = resolve(registrar("pbx.test"), ["udp"], silent_nameserver, started + 1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"took {elapsed:.2f} s"
    assert res.targets == []
    assert res.lookups[0]["type"] == "NAPTR" and res.lookups[0]["error"] == "Timeout"
    assert {q["error"] for q in res.lookups[1:]} == {"deadline reached"}


def test_a_query_that_would_need_a_second_try_still_ends_by_the_deadline(
    silent_nameserver: str,
) -> None:
    # dnspython's own 2 s tries and back-off would end this lookup at about 2.7 s.
    started = time.monotonic()
    res = resolve(registrar("pbx.test"), ["udp"], silent_nameserver, started + 2.5)
    elapsed = time.monotonic() - started
    assert 2.3 < elapsed < 2.6, f"took {elapsed:.2f} s"
    assert res.lookups[0]["error"] == "Timeout"


def test_net_dns_takes_half_of_what_is_left_and_at_least_a_second_before_its_margin() -> None:
    def at(now: float, deadline: float) -> float:
        ctx = make_context(monotonic=lambda: now, deadline=deadline)
        return dns_deadline(ctx)

    assert at(100.0, 110.0) == 105.0  # the default 10 s budget: 5 s for DNS
    assert at(100.0, 103.0) == 101.5  # --timeout 3: 1.5 s
    assert at(100.0, 101.8) == 101.0  # never less than 1 s ...
    assert at(100.0, 101.2) == pytest.approx(100.7)  # ... unless that passes deadline - 0.5
    assert at(100.0, 100.3) < 100.0  # nothing left: no query is made


def test_unresponsive_nameserver_fails_the_check_before_its_deadline(
    silent_nameserver: str,
) -> None:
    deadline = soon(1.0)
    result = check_dns(
        make_context(deadline=deadline, registrar="pbx.test", dns_server=silent_nameserver)
    )
    assert time.monotonic() < deadline
    assert result.status is Status.FAIL
    assert result.summary.startswith(
        f"pbx.test does not resolve: the DNS server {silent_nameserver} did not answer; tried "
    )
    assert "usable records" not in result.summary
    assert result.summary.endswith("(Timeout, deadline reached)")
    assert result.details["outcome"] == "no_answer"
    assert result.hint == (
        f"check that this machine reaches {silent_nameserver} on UDP and TCP port 53 (firewall, "
        "VPN), or pass --dns-server with a server that answers"
    )


def test_check_is_an_error_when_its_deadline_passed_before_any_query() -> None:
    result = check_dns(
        make_context(deadline=time.monotonic(), registrar="pbx.test", dns_server="127.0.0.1:9")
    )
    assert result.status is Status.ERROR
    assert result.hint == "re-run with a larger --timeout"
    assert {q["error"] for q in result.details["lookups"]} == {"deadline reached"}


def test_targets_for_reuses_net_dns_targets_or_resolves_now(dnsmasq: DnsmasqFactory) -> None:
    server = dnsmasq(*PLAIN)
    ctx = make_context(registrar="plain.test", dns_server=server.server)
    fresh = targets_for(ctx)
    assert fresh == [Target("udp", "plain.test", 5060, "127.0.0.31")]
    earlier = CheckResult(
        Status.PASS, "ok", {"targets": [Target("udp", "x", 1, "10.0.0.1").as_dict()]}
    )
    reused = targets_for(ctx.for_check(soon(), {"net.dns": earlier}))
    assert reused == [Target("udp", "x", 1, "10.0.0.1")]


# Through the CLI

NET_DNS = registered("net.dns")


def run_net_dns(server: Dnsmasq, registrar: str, *extra: str) -> Any:
    return cli(
        "check", "--dns-server", server.server, "--registrar", registrar, "--transport", "udp",
        "--format", "json", *extra,
        registry=NET_DNS,
    )  # fmt: skip


@pytest.fixture
def data_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved reports go to a temporary directory, not the real user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


@pytest.mark.usefixtures("data_home")
def test_cli_reports_the_registrars_targets_as_json(dnsmasq: DnsmasqFactory) -> None:
    server = dnsmasq(*PBX)
    r = run_net_dns(server, "pbx.test")
    assert r.code == 0, r.err
    (check,) = r.json["checks"]
    assert check["id"] == "net.dns" and check["status"] == "pass"
    assert check["summary"] == "pbx.test: udp → 127.0.0.11:5060 +2 more (NAPTR+SRV)"
    assert [t["address"] for t in check["details"]["targets"]] == [
        "127.0.0.11",
        "::1",
        "127.0.0.12",
    ]
    assert check["details"]["nameserver"] == server.server


@pytest.mark.usefixtures("data_home")
@pytest.mark.parametrize(("timeout", "budget"), [(("--timeout", "3"), 3.0), ((), 10.0)])
def test_cli_a_silent_nameserver_fails_net_dns_within_half_the_budget_with_its_finding(
    silent_nameserver: str, timeout: tuple[str, ...], budget: float
) -> None:
    started = time.monotonic()
    r = cli(
        "check", "--dns-server", silent_nameserver, "--registrar", "pbx.test",
        "--only", "net.dns", "--format", "json", *timeout,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert r.code == 1, r.err
    (check,) = r.json["checks"]
    assert check["status"] == "fail", check["summary"]
    assert check["duration_ms"] < (budget / 2 + 0.5) * 1000
    assert elapsed < budget / 2 + 1.5
    assert check["details"]["lookups"][0]["error"] == "Timeout"
    assert check["summary"].endswith("(Timeout, deadline reached)")
    assert check["details"]["outcome"] == "no_answer"
    finding = r.finding("network.dns_failure")
    assert f"net.dns: pbx.test does not resolve: the DNS server {silent_nameserver} did not " \
        "answer;" in finding["explanation"]  # fmt: skip
    assert finding["action"] == check["hint"]
    assert finding["action"].startswith(f"check that this machine reaches {silent_nameserver}")


@pytest.mark.usefixtures("data_home")
def test_cli_checks_waiting_for_a_silent_net_dns_still_get_half_the_budget(
    silent_nameserver: str,
) -> None:
    r = cli(
        "check", "--dns-server", silent_nameserver, "--registrar", "pbx.test",
        "--only", "net.dns", "--only", "net.sip-options", "--timeout", "3", "--format", "json",
    )  # fmt: skip
    by_id = {c["id"]: c for c in r.json["checks"]}
    assert by_id["net.dns"]["status"] == "fail"
    options = by_id["net.sip-options"]
    assert not options["summary"].startswith("timed out"), options["summary"]  # it ran, and
    assert options["details"]["registrar"] == "pbx.test"  # returned its own evidence
    assert by_id["net.dns"]["duration_ms"] + options["duration_ms"] < 3000


@pytest.mark.usefixtures("data_home")
def test_cli_exits_1_with_the_hint_when_the_registrar_does_not_resolve(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(*PBX)
    r = run_net_dns(server, "sip:nowhere.test")
    assert r.code == 1
    (check,) = r.json["checks"]
    assert check["status"] == "fail"
    assert check["hint"].startswith("check the registrar name and the DNS servers")
    finding = r.json["findings"][0]
    assert (finding["cause"], finding["family"], finding["severity"]) == (
        "network.dns_failure",
        "network_firewall",
        "critical",
    )
    assert "SRV _sip._udp.nowhere.test" in finding["explanation"]  # the names tried
    assert "nowhere.test does not resolve: the name does not exist;" in finding["explanation"]


def test_a_full_run_resolves_the_registrar_by_srv_and_registers_there(
    dnsmasq: DnsmasqFactory, kamailio: Kamailio
) -> None:
    # A domain whose SRV record points at the real Kamailio: sip.register follows net.dns.
    server = dnsmasq(
        srv("_sip._udp.cc.test", "pbx.cc.test", kamailio.port), host("pbx.cc.test", "127.0.0.1")
    )
    r = cli_process(
        "check",
        "--registrar",
        "sip:cc.test",
        "--user",
        "alice",
        "--dns-server",
        server.server,
        "--only",
        "net.dns",
        "--only",
        "sip.register",
        "--format",
        "json",
        env={"SIPDIAG_PASSWORD": "alice-secret"},
    )
    by_id = {c["id"]: c for c in r.json["checks"]}
    assert by_id["net.dns"]["details"]["targets"][0]["port"] == kamailio.port
    attempt = by_id["sip.register"]["details"]["attempts"][0]
    assert attempt["uri"] == f"sip:127.0.0.1:{kamailio.port}"
    assert attempt["outcome"] == "ok", attempt
    assert r.code == 0


# The OS resolver: a process with its own /etc/hosts and /etc/resolv.conf (a mount namespace)

HOSTS_ONLY = "pbx-hosts-only.test"


def _bindable(ip: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((ip, port))
            except OSError:
                return False
    return True


def free_port53_address() -> str:
    """A 127.0.0.x whose port 53 is free: resolv.conf names DNS servers without a port."""
    for x in random.sample(range(100, 250), 150):
        if _bindable(f"127.0.0.{x}", 53):
            return f"127.0.0.{x}"
    raise RuntimeError("no 127.0.0.x address has port 53 free")


@pytest.fixture
def silent_dns_on_53() -> Iterator[str]:
    """The address of a DNS server (UDP port 53) that receives queries and never answers."""
    ip = free_port53_address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 53))
        yield ip


@pytest.fixture
def nxdomain_dns_on_53(tmp_path: Path) -> Iterator[Dnsmasq]:
    """dnsmasq on port 53 that knows no name under .test: NXDOMAIN, as a working DNS says."""
    ip = free_port53_address()
    argv = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--bind-interfaces", f"--listen-address={ip}", "--port=53",
        f"--pid-file={tmp_path / 'dnsmasq53.pid'}", "--log-queries", "--log-facility=-",
        "--local=/test/",
    ]  # fmt: skip
    daemon = Daemon("dnsmasq53", argv, tmp_path, cwd=tmp_path)
    daemon.start(answers_dns(ip, 53))
    try:
        yield Dnsmasq(ip, 53, (), daemon)
    finally:
        daemon.stop()


def own_hosts_and_resolv_conf(tmp_path: Path, nameserver: str) -> list[str]:
    """An argv prefix: the command sees a hosts file that maps HOSTS_ONLY to 127.0.0.1 and a
    resolv.conf naming only ``nameserver`` (the mounts are private to its namespace)."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOSTS_ONLY}\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\n")
    mount = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2'
    return [
        "unshare",
        "--mount",
        "sh",
        "-c",
        f'{mount} && exec "$@"',
        "sh",
        str(hosts),
        str(resolv),
    ]


def run_in_own_namespace(tmp_path: Path, nameserver: str, *args: str) -> CliResult:
    return cli_process(
        "check", "--format", "json", "--timeout", "3", *args,
        prefix=own_hosts_and_resolv_conf(tmp_path, nameserver),
    )  # fmt: skip


@pytest.mark.usefixtures("data_home")
def test_cli_a_registrar_only_the_hosts_file_knows_passes_net_dns_from_the_os_resolver(
    tmp_path: Path, nxdomain_dns_on_53: Dnsmasq
) -> None:
    dns_server = nxdomain_dns_on_53
    r = run_in_own_namespace(
        tmp_path, dns_server.host, "--registrar", HOSTS_ONLY, "--only", "net.dns"
    )
    check = r.check("net.dns")
    assert (r.code, check["status"]) == (0, "pass"), r.out + r.err
    remark = (
        f"{HOSTS_ONLY}'s address comes from the OS resolver (hosts file, mDNS or VPN DNS) only: "
        "DNS says the name does not exist"
    )
    assert check["summary"] == (
        f"{HOSTS_ONLY}: udp → 127.0.0.1:5060 (A/AAAA from the OS resolver); note: {remark}"
    )
    details = check["details"]
    assert details["targets"] == [
        {"transport": "udp", "host": HOSTS_ONLY, "port": 5060, "address": "127.0.0.1",
         "source": "os"}
    ]  # fmt: skip
    assert (details["os_resolver"], details["outcome"], details["remarks"]) == (
        True,
        "resolved",
        [remark],
    )
    assert details["dns_servers"] == [f"{dns_server.host}:53"]
    assert [(q["type"], q["source"], q["error"]) for q in details["lookups"]] == [
        ("NAPTR", "dns", "NXDOMAIN"),
        ("SRV", "dns", "NXDOMAIN"),
        ("A", "dns", "NXDOMAIN"),
        ("AAAA", "dns", "NXDOMAIN"),
        ("A/AAAA", "os", None),
    ]
    assert details["lookups"][-1]["answers"] == ["127.0.0.1"]
    assert ("NAPTR", HOSTS_ONLY) in dns_server.queries()  # DNS was really asked, and said no
    assert r.causes() == []


@pytest.mark.usefixtures("data_home")
def test_cli_a_hosts_file_name_resolves_even_when_the_dns_server_is_silent(
    tmp_path: Path, silent_dns_on_53: str
) -> None:
    r = run_in_own_namespace(
        tmp_path, silent_dns_on_53, "--registrar", HOSTS_ONLY, "--only", "net.dns"
    )
    check = r.check("net.dns")
    assert (r.code, check["status"]) == (0, "pass"), r.out + r.err
    assert check["details"]["targets"][0]["source"] == "os"
    assert check["details"]["remarks"] == [
        f"the DNS server {silent_dns_on_53}:53 did not answer NAPTR {HOSTS_ONLY}",
        f"{HOSTS_ONLY}'s address comes from the OS resolver (hosts file, mDNS or VPN DNS) only: "
        "DNS did not answer",
    ]
    assert check["duration_ms"] < 2000  # --timeout 3: DNS gets 1.5 s
    assert "network.dns_failure" not in r.causes()


@pytest.mark.usefixtures("data_home")
def test_cli_a_name_nobody_knows_behind_a_silent_dns_server_fails_by_its_deadline(
    tmp_path: Path, silent_dns_on_53: str
) -> None:
    # getaddrinfo() itself waits for the silent server far longer (glibc: 5 s per try, 2 tries).
    started = time.monotonic()
    r = run_in_own_namespace(
        tmp_path, silent_dns_on_53, "--registrar", "nobody.test", "--only", "net.dns"
    )
    elapsed = time.monotonic() - started
    check = r.check("net.dns")
    assert (r.code, check["status"]) == (1, "fail"), r.out + r.err
    assert check["summary"] == (
        f"nobody.test does not resolve: the DNS server {silent_dns_on_53}:53 did not answer; "
        "tried NAPTR nobody.test, SRV _sip._udp.nobody.test, A nobody.test, AAAA nobody.test, "
        "OS resolver nobody.test (Timeout, deadline reached)"
    )
    assert check["details"]["outcome"] == "no_answer"
    os_lookup = check["details"]["lookups"][-1]
    assert (os_lookup["source"], os_lookup["error"]) == ("os", "Timeout")
    assert check["duration_ms"] < 2000 and elapsed < 5.0
    assert "network.dns_failure" in r.causes()


@pytest.mark.usefixtures("data_home")
def test_cli_sip_register_goes_to_the_address_only_the_hosts_file_knows(
    tmp_path: Path, nxdomain_dns_on_53: Dnsmasq, kamailio: Kamailio
) -> None:
    r = run_in_own_namespace(
        tmp_path, nxdomain_dns_on_53.host,
        "--registrar", f"sip:{HOSTS_ONLY}:{kamailio.port}", "--user", "alice", "--no-register",
        "--only", "net.dns", "--only", "sip.register",
    )  # fmt: skip
    dns_check = r.check("net.dns")
    assert dns_check["status"] == "pass", dns_check["summary"]
    assert dns_check["details"]["targets"] == [
        {"transport": "udp", "host": HOSTS_ONLY, "port": kamailio.port, "address": "127.0.0.1",
         "source": "os"}
    ]  # fmt: skip
    register = r.check("sip.register")
    assert register["status"] == "pass", register
    (attempt,) = register["details"]["attempts"]
    assert attempt["target"] == {"host": HOSTS_ONLY, "port": kamailio.port, "address": "127.0.0.1"}
    assert (attempt["outcome"], attempt["code"]) == ("challenged", 401)
    assert r.code == 0 and r.causes() == []


def test_a_name_that_resolves_only_to_a_multicast_address_is_never_a_target(
    dnsmasq: DnsmasqFactory,
) -> None:
    server = dnsmasq(host("mcast.pbx.test", "224.0.0.5"))
    r = run_net_dns(server, "sip:mcast.pbx.test:5060")
    (check,) = r.json["checks"]
    assert check["status"] == "fail", check
    assert check["details"]["targets"] == []
    assert check["details"]["outcome"] == "not_unicast"
    assert check["details"]["refused_addresses"] == [
        {"name": "mcast.pbx.test", "address": "224.0.0.5", "why": "a multicast address"}
    ]
    assert "224.0.0.5: a multicast address" in check["summary"]
    assert "network.dns_failure" in [f["cause"] for f in r.json["findings"]]
