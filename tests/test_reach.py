"""net.sip-options against a real Kamailio, a fake registrar socket and firewalled namespaces."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process, registered
from contexts import make_context
from peers.dnsmasq import DnsmasqFactory, host, srv
from peers.kamailio import Kamailio
from peers.netns import NetnsPair

from checks.net.sip_options import check_options, derived_port, plan_probes
from checks.net.sip_options_verdict import verdict
from checks.wire.dns import Target
from diag import __version__
from diag.config import build_settings
from diag.context import Context
from diag.model import CheckResult, Status
from diag.target import parse_registrar

(CHECK,) = registered("net.sip-options")
CA_HINT = "install the platform's CA certificate or pass --ca FILE"


def context(
    registrar: str,
    *,
    transports: tuple[str, ...] = (),
    ca: Path | None = None,
    targets: list[Target] | None = None,
    budget: float = 5.0,
    probe_all: bool = False,
) -> Context:
    """A run's context; ``targets`` stand in for net.dns's result (its details["targets"])."""
    results = {}
    if targets is not None:
        dns = CheckResult(Status.PASS, "resolved", {"targets": [t.as_dict() for t in targets]})
        results["net.dns"] = dns
    return make_context(
        registrar=registrar,
        transports=transports,
        ca=str(ca) if ca else None,
        probe_all_transports=probe_all,
        results=results,
        budget=budget,
    )


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved reports go to a temporary directory, not the real user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


def kamailio_targets(kam: Kamailio, host: str | None = None) -> list[Target]:
    return [Target(t, host or kam.host, kam.port_for(t), kam.host) for t in ("udp", "tcp", "tls")]


def transports(result: CheckResult) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = result.details["transports"]
    return found


def why_probed(details: Mapping[str, Any]) -> dict[str, str]:
    return {t: r["why_probed"] for t, r in details["transports"].items()}


def representative(transport: dict[str, Any]) -> dict[str, Any]:
    """A transport's summary without what only the transport has: its representative target."""
    return {k: v for k, v in transport.items() if k not in ("targets", "why_probed")}


def test_kamailio_answers_on_every_transport_and_its_self_signed_tls_is_untrusted(
    kamailio: Kamailio,
) -> None:
    ctx = context(
        f"sip:{kamailio.host}",
        transports=("tls",),
        targets=kamailio_targets(kamailio),
        probe_all=True,
    )
    result = check_options(ctx)
    t = transports(result)
    for name in ("udp", "tcp"):
        assert (t[name]["outcome"], t[name]["code"], t[name]["reason"]) == (
            "answered",
            200,
            "Keepalive",
        )
        assert t[name]["server"] == "testbed-pbx"
        assert t[name]["rport"] == int(t[name]["local"].rsplit(":", 1)[1])
    assert t["tcp"]["connect_ms"] is not None and t["udp"]["connect_ms"] is None
    tls = t["tls"]
    assert tls["outcome"] == "tls_untrusted"
    assert tls["code"] == 200  # the unverified retry still shows the port speaks SIP
    cert = tls["certificate"]
    assert (cert["verified"], cert["verify_error"]) == (False, "self-signed certificate")
    assert cert["subject"] == cert["issuer"] == "CN=127.0.0.1" and cert["self_signed"] is True
    assert cert["san"] == ["IP:127.0.0.1", "DNS:localhost"]
    assert cert["days_left"] in (1, 2)  # the fixture's certificate lives 2 days
    assert cert["not_after"].endswith("Z") and len(cert["sha256"]) == 64
    # The chain as the server sent it: just the self-signed leaf.
    assert [(c["subject"], c["issuer"]) for c in cert["chain"]] == [
        ("CN=127.0.0.1", "CN=127.0.0.1")
    ]
    assert result.status is Status.FAIL  # TLS is the configured transport
    assert result.summary.startswith("udp 200 Keepalive ")
    assert "; tls untrusted (self-signed certificate), unverified: 200 Keepalive " in result.summary
    assert result.hint is not None and result.hint.startswith(CA_HINT)
    assert result.details["configured_transports"] == ["tls"]
    assert result.details["probed_transports"] == ["udp", "tcp", "tls"]
    assert why_probed(result.details) == {
        "udp": "all_transports",
        "tcp": "all_transports",
        "tls": "configured",
    }
    assert result.details["local_address"] == "127.0.0.1"
    assert result.details["public_addresses"] == []  # Via received = our own address: no NAT
    assert result.details["call_ids"] == [f"{ctx.run_id}-{n}@127.0.0.1" for n in t]


def test_with_the_platform_ca_tls_verifies_and_the_check_passes(kamailio: Kamailio) -> None:
    ctx = context(
        f"sip:{kamailio.host}",
        transports=("udp", "tls"),
        ca=kamailio.ca_cert,
        targets=kamailio_targets(kamailio),
    )
    result = check_options(ctx)
    tls = transports(result)["tls"]
    assert (tls["outcome"], tls["code"]) == ("answered", 200)
    assert tls["certificate"]["verified"] is True and tls["certificate"]["verify_error"] is None
    assert tls["tls_version"] in ("TLSv1.2", "TLSv1.3") and tls["handshake_ms"] is not None
    assert result.status is Status.PASS, result.summary
    assert result.hint is None
    # net.dns's TCP target is no reason to probe TCP: it is neither configured nor an SRV target.
    assert result.details["probed_transports"] == ["udp", "tls"]


def test_the_certificate_must_name_the_registrar_not_just_its_address(kamailio: Kamailio) -> None:
    ctx = context(
        "sip:pbx.test",
        transports=("tls",),
        ca=kamailio.ca_cert,
        targets=kamailio_targets(kamailio, host="pbx.test"),
    )
    result = check_options(ctx)
    cert = transports(result)["tls"]["certificate"]
    assert cert["verify_error"].startswith("Hostname mismatch")
    assert result.status is Status.FAIL
    assert result.hint == (
        "the certificate is not valid for pbx.test (it names IP:127.0.0.1, DNS:localhost): "
        "use a registrar name the certificate names, or ask the platform to fix its certificate"
    )


def test_an_unreadable_ca_file_is_reported_as_such_not_as_a_network_problem(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    bad_ca = tmp_path / "not-a-ca.pem"
    bad_ca.write_text("this is not a certificate\n")
    ctx = context(
        f"sip:{kamailio.host}", transports=("tls",), ca=bad_ca, targets=kamailio_targets(kamailio)
    )
    result = check_options(ctx)
    tls = transports(result)["tls"]
    assert tls["outcome"] == "error" and tls["error"].startswith(
        f"cannot load the --ca file {bad_ca}"
    )
    assert result.hint == "give --ca a PEM file that holds the platform's CA certificate"


def run_options(*args: str) -> tuple[CliResult, dict[str, Any]]:
    """net.sip-options alone through the CLI: the run and the check's JSON."""
    r = cli("check", "--only", "net.sip-options", "--format", "json", *args, registry=[CHECK])
    check: dict[str, Any] = r.json["checks"][0]
    return r, check


@pytest.mark.usefixtures("data_home")
def test_a_registrar_without_tls_passes_on_its_configured_transports_and_no_tls_is_guessed(
    kamailio: Kamailio,
) -> None:
    # An IP and a port: no DNS to publish anything, so only UDP and TCP, as configured.
    r, check = run_options(
        "--registrar", f"sip:{kamailio.host}:{kamailio.port}", "--transport", "udp",
        "--transport", "tcp",
    )  # fmt: skip
    t = check["details"]["transports"]
    assert check["status"] == "pass" and r.code == 0, check["summary"]
    assert check["hint"] is None
    assert check["details"]["probed_transports"] == ["udp", "tcp"]
    assert check["details"]["configured_transports"] == ["udp", "tcp"]
    assert why_probed(check["details"]) == {"udp": "configured", "tcp": "configured"}
    assert [t[n]["outcome"] for n in ("udp", "tcp")] == ["answered", "answered"]
    assert "tls" not in t and "tls" not in check["summary"]
    assert [c.rsplit("@")[0].rsplit("-", 1)[1] for c in check["details"]["call_ids"]] == [
        "udp",
        "tcp",
    ]
    assert r.json["correlation"]["call_ids"] == check["details"]["call_ids"]
    assert "127.0.0.1" in r.json["correlation"]["local_addresses"]


@pytest.mark.usefixtures("data_home")
def test_probing_all_transports_reports_a_missing_tls_listener_without_warning(
    kamailio: Kamailio,
) -> None:
    # UDP configured; TCP and TLS only because they were asked for: TCP at the URI's port
    # (its port group), TLS at 5061, where nothing listens.
    r, check = run_options(
        "--registrar", f"sip:{kamailio.host}:{kamailio.port}", "--probe-all-transports"
    )
    t = check["details"]["transports"]
    assert [t[n]["outcome"] for n in ("udp", "tcp", "tls")] == ["answered", "answered", "refused"]
    assert t["tls"]["target"] == "127.0.0.1:5061" and t["tls"]["target_source"] == "derived"
    assert why_probed(check["details"]) == {
        "udp": "configured",
        "tcp": "all_transports",
        "tls": "all_transports",
    }
    assert check["details"]["probed_transports"] == ["udp", "tcp", "tls"]
    assert check["status"] == "pass" and r.code == 0 and check["hint"] is None
    assert check["summary"].endswith(
        "; tls refused: nothing listens on 127.0.0.1:5061 over TLS "
        "(informational: neither configured nor published in DNS)"
    )


@pytest.mark.usefixtures("data_home")
def test_a_configured_tcp_port_where_nothing_listens_fails_without_blaming_a_firewall() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: the kernel answers with RST
        port = closed.getsockname()[1]
        r, check = run_options("--registrar", f"sip:127.0.0.1:{port}", "--transport", "tcp")
    tcp = check["details"]["transports"]["tcp"]
    assert (tcp["outcome"], tcp["why_probed"]) == ("refused", "configured")
    assert check["details"]["probed_transports"] == ["tcp"]
    assert check["status"] == "fail" and r.code == 1
    assert check["summary"] == f"tcp refused: nothing listens on 127.0.0.1:{port} over TCP"
    assert check["hint"] == (
        f"nothing listens on 127.0.0.1:{port} over TCP: check the registrar's TCP port with "
        "the platform"
    )
    assert "firewall" not in check["hint"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("probe_all_transports = true\n", True), ("probe_all_transports = false\n", False)],
)
def test_probe_all_transports_is_a_profile_key(tmp_path: Path, text: str, expected: bool) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('registrar = "sip:pbx.test"\n' + text)
    settings = build_settings(profile, {})
    assert settings.probe_all_transports is expected


def test_probe_all_transports_in_a_profile_must_be_true_or_false(tmp_path: Path) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('registrar = "sip:pbx.test"\nprobe_all_transports = "yes"\n')
    r = cli("check", "--profile", str(profile))
    assert r.code == 64
    assert "'probe_all_transports' must be true or false" in r.err


NET_DNS, AFTER_DNS = registered("net.dns", "net.sip-options")


def run_with_dns_server(server: str, registrar: str, *args: str) -> dict[str, Any]:
    """net.dns then net.sip-options through the CLI with --dns-server: the options check."""
    r = cli(
        "check", "--registrar", registrar, "--dns-server", server, "--format", "json", *args,
        registry=[NET_DNS, AFTER_DNS],
    )  # fmt: skip
    by_id = {c["id"]: c for c in r.json["checks"]}
    options: dict[str, Any] = by_id["net.sip-options"]
    return options


@pytest.mark.usefixtures("data_home")
def test_derived_targets_are_resolved_by_the_dns_server_given_not_the_os(
    dnsmasq: DnsmasqFactory, kamailio: Kamailio
) -> None:
    # UDP by SRV to Kamailio; TCP and TLS "not offered here" (SRV target "."), so only
    # --probe-all-transports probes them, derived from cc.test, a name only this dnsmasq knows.
    server = dnsmasq(
        srv("_sip._udp.cc.test", "pbx.cc.test", kamailio.port),
        srv("_sip._tcp.cc.test"),
        srv("_sips._tcp.cc.test"),
        host("pbx.cc.test", "127.0.0.1"),
        host("cc.test", "127.0.0.1"),
    )
    check = run_with_dns_server(server.server, "sip:cc.test", "--probe-all-transports")
    t = check["details"]["transports"]
    assert (t["udp"]["outcome"], t["udp"]["target_source"]) == ("answered", "dns")
    assert check["status"] == "pass", check["summary"]  # what TCP and TLS do is information
    for name, port in (("tcp", 5060), ("tls", 5061)):
        assert (t[name]["target_source"], t[name]["why_probed"]) == ("derived", "all_transports")
        assert (t[name]["target"], t[name]["address"]) == (f"cc.test:{port}", "127.0.0.1")
        assert t[name]["outcome"] != "error", t[name]  # it was sent: refused, most likely
    lookups = check["details"]["host_lookups"]
    assert [(q["type"], q["name"], q["answers"]) for q in lookups][0] == (
        "A",
        "cc.test",
        ["127.0.0.1"],
    )
    assert ("A", "cc.test") in server.queries()


@pytest.mark.usefixtures("data_home")
def test_a_derived_target_the_dns_server_cannot_resolve_is_an_error_with_the_dns_hint(
    dnsmasq: DnsmasqFactory, kamailio: Kamailio
) -> None:
    # TCP is configured but DNS offers no TCP target: derived from cc.test, which has no address.
    server = dnsmasq(
        srv("_sip._udp.cc.test", "pbx.cc.test", kamailio.port),
        srv("_sip._tcp.cc.test"),
        srv("_sips._tcp.cc.test"),
        host("pbx.cc.test", "127.0.0.1"),
    )
    check = run_with_dns_server(
        server.server, "sip:cc.test", "--transport", "udp", "--transport", "tcp"
    )
    t = check["details"]["transports"]
    assert t["udp"]["outcome"] == "answered"
    assert t["tcp"]["outcome"] == "error" and t["tcp"]["address"] is None
    assert t["tcp"]["error"].startswith("cannot resolve cc.test: tried A cc.test, AAAA cc.test")
    assert "tls" not in t  # its SRV target "." says TLS is not offered: nothing to probe
    assert check["status"] == "fail"
    assert check["hint"] == (
        "check the registrar name and the DNS servers this machine uses (or pass --dns-server)"
    )


def localhost_records(kam: Kamailio, *udp: tuple[str, int, int]) -> list[str]:
    """SRV records for the registrar ``localhost`` (a name Kamailio's certificate holds, so TLS
    verifies with its CA): ``udp`` as (target, port, priority); TCP and TLS to Kamailio."""
    return [
        *(srv("_sip._udp.localhost", name, port, priority) for name, port, priority in udp),
        srv("_sip._tcp.localhost", "pbx2.localhost", kam.port),
        srv("_sips._tcp.localhost", "pbx2.localhost", kam.tls_port),
        host("pbx1.localhost", "127.0.0.1"),
        host("pbx2.localhost", "127.0.0.1"),
    ]


@pytest.mark.usefixtures("data_home")
def test_a_silent_preferred_srv_target_warns_that_softphones_fail_over_slowly_over_udp(
    dnsmasq: DnsmasqFactory, kamailio: Kamailio
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes OPTIONS, never answers
    with silent:
        silent.bind(("127.0.0.1", 0))
        quiet = silent.getsockname()[1]
        records = localhost_records(
            kamailio, ("pbx1.localhost", quiet, 10), ("pbx2.localhost", kamailio.port, 20)
        )
        server = dnsmasq(*records, local_domains=("localhost",))
        check = run_with_dns_server(server.server, "sip:localhost", "--ca", str(kamailio.ca_cert))
        silent.settimeout(0)
        received = [silent.recv(65535) for _ in range(2)]  # the request and its retransmission
    t = check["details"]["transports"]
    udp = t["udp"]
    first, second = udp["targets"]
    assert (first["target"], first["outcome"]) == (f"pbx1.localhost:{quiet}", "timeout")
    assert first["error"] == "no answer within 2.0 s" and first["retransmitted"] is True
    assert (second["target"], second["outcome"], second["code"]) == (
        f"pbx2.localhost:{kamailio.port}",
        "answered",
        200,
    )
    # The summary is the target that answered, as diagnosis reads it.
    assert representative(udp) == second
    assert all("targets" not in r for r in udp["targets"])
    assert [len(t[n]["targets"]) for n in ("tcp", "tls")] == [1, 1]
    assert t["tls"]["certificate"]["verified"] is True
    # TCP and TLS are not configured, but their SRV records publish them: probed as "dns".
    assert why_probed(check["details"]) == {"udp": "configured", "tcp": "dns", "tls": "dns"}
    assert check["status"] == "warn"
    assert re.fullmatch(
        rf"udp 200 Keepalive \d+ ms via pbx2\.localhost:{kamailio.port} "
        rf"\(pbx1\.localhost:{quiet} timed out\); tcp 200 Keepalive \d+ ms; "
        r"tls 200 Keepalive \d+ ms",
        check["summary"],
    ), check["summary"]
    assert check["hint"] == (
        f"the preferred SRV target pbx1.localhost:{quiet} does not answer over UDP, so "
        f"softphones try it first and fail over to pbx2.localhost:{kamailio.port} slowly: ask "
        "the platform to fix it or to remove it from the SRV records"
    )
    run_id = t["tcp"]["call_id"].split("@")[0].removesuffix("-tcp")
    assert check["details"]["call_ids"] == [
        f"{run_id}-{label}@127.0.0.1" for label in ("udp", "udp-2", "tcp", "tls")
    ]
    assert all(f"Call-ID: {run_id}-udp@127.0.0.1" in d.decode() for d in received)


@pytest.mark.usefixtures("data_home")
def test_one_srv_target_per_transport_passes_with_that_target_listed(
    dnsmasq: DnsmasqFactory, kamailio: Kamailio
) -> None:
    server = dnsmasq(
        *localhost_records(kamailio, ("pbx2.localhost", kamailio.port, 10)),
        local_domains=("localhost",),
    )
    check = run_with_dns_server(server.server, "sip:localhost", "--ca", str(kamailio.ca_cert))
    t = check["details"]["transports"]
    assert check["status"] == "pass" and check["hint"] is None, check["summary"]
    for name in ("udp", "tcp", "tls"):
        (only,) = t[name]["targets"]
        assert representative(t[name]) == only
        assert (only["outcome"], only["target_source"]) == ("answered", "dns")
    assert " via " not in check["summary"]
    assert len(check["details"]["call_ids"]) == 3
    assert check["details"]["probed_transports"] == ["udp", "tcp", "tls"]


def test_at_most_three_targets_per_transport_are_probed_in_preference_order() -> None:
    dns = [Target("udp", f"pbx{n}.test", 5060, f"192.0.2.{n}") for n in range(1, 5)]
    ctx = context("sip:pbx.test", targets=dns, probe_all=True)
    plans = plan_probes(ctx, dns, host_address="192.0.2.99")
    udp = [p for p in plans if p.transport == "udp"]
    assert [(p.host, p.address) for p in udp] == [
        (f"pbx{n}.test", f"192.0.2.{n}") for n in (1, 2, 3)
    ]
    assert [p.probe_id for p in udp] == [
        f"{ctx.run_id}-udp",
        f"{ctx.run_id}-udp-2",
        f"{ctx.run_id}-udp-3",
    ]
    others = [(p.transport, p.source, p.address, p.probe_id) for p in plans if p.transport != "udp"]
    assert others == [
        ("tcp", "derived", "192.0.2.99", f"{ctx.run_id}-tcp"),
        ("tls", "derived", "192.0.2.99", f"{ctx.run_id}-tls"),
    ]


def test_only_configured_and_dns_published_transports_are_planned_by_default() -> None:
    dns = [
        Target("udp", "pbx.test", 5060, "192.0.2.1"),
        Target("tls", "tls.pbx.test", 5061, "192.0.2.2"),
    ]
    ctx = context("sip:pbx.test", targets=dns)
    assert [p.transport for p in plan_probes(ctx, dns, host_address="192.0.2.99")] == ["udp"]
    published = plan_probes(ctx, dns, host_address="192.0.2.99", discovered=("tls",))
    assert [(p.transport, p.host, p.source) for p in published] == [
        ("udp", "pbx.test", "dns"),
        ("tls", "tls.pbx.test", "dns"),
    ]


def probe_result(target: str, outcome: str, code: int | None = None, **more: Any) -> dict[str, Any]:
    """One probe's result as optionsprobe.Probe records it (the keys the verdict reads)."""
    answered = code is not None
    return {
        "target": target,
        "target_source": "dns",
        "address": "192.0.2.1",
        "local": "192.0.2.200:40000",
        "outcome": outcome,
        "code": code,
        "reason": "OK" if answered else None,
        "rtt_ms": 3 if answered else None,
        "connect_ms": None,
        "received": None,
        "call_id": None,
        "error": None if answered else "no answer within 2.0 s",
        **more,
    }


def test_failing_over_on_a_transport_not_configured_is_told_but_does_not_warn() -> None:
    per_target = {
        "udp": [probe_result("pbx.test:5060", "answered", 200)],
        "tcp": [
            probe_result("pbx1.test:5060", "refused", error="Connection refused"),
            probe_result("pbx2.test:5060", "answered", 200),
        ],
    }
    result = verdict(per_target, ("udp",), parse_registrar("sip:pbx.test"))
    assert result.status is Status.PASS and result.hint is None
    assert result.summary == (
        "udp 200 OK 3 ms; tcp 200 OK 3 ms via pbx2.test:5060 (pbx1.test:5060 refused)"
    )
    assert result.details["transports"]["tcp"]["target"] == "pbx2.test:5060"


def test_failing_over_between_addresses_of_one_host_names_them_next_to_a_broken_spare() -> None:
    per_target = {
        "udp": [
            probe_result("pbx.test:5060", "timeout", address="192.0.2.1"),
            probe_result("pbx.test:5060", "timeout", address="192.0.2.2"),
            probe_result("pbx.test:5060", "answered", 200, address="192.0.2.3"),
        ],
        "tcp": [
            probe_result("pbx.test:5060", "timeout", address="192.0.2.1"),
            probe_result("pbx.test:5060", "refused", address="192.0.2.2", error="Refused"),
        ],
    }
    result = verdict(per_target, ("udp",), parse_registrar("sip:pbx.test"))
    assert result.status is Status.WARN
    assert result.summary == (
        "udp 200 OK 3 ms via pbx.test:5060 at 192.0.2.3 (pbx.test:5060 at 192.0.2.1 timed out, "
        "pbx.test:5060 at 192.0.2.2 timed out); tcp no answer (+1 other target, none answered)"
    )
    assert result.hint == (
        "UDP works; TCP would not: allow outbound TCP 5060 to pbx.test in the firewall; also "
        "the preferred addresses pbx.test:5060 at 192.0.2.1 and pbx.test:5060 at 192.0.2.2 do "
        "not answer over UDP, so softphones try them first and fail over to pbx.test:5060 at "
        "192.0.2.3 slowly: ask the platform to fix them or to remove them from the A/AAAA "
        "records of pbx.test"
    )


def test_a_transport_only_probe_all_asked_for_is_information_whatever_its_result() -> None:
    per_target = {
        "udp": [probe_result("pbx.test:5060", "answered", 200)],
        "tcp": [probe_result("pbx.test:5060", "timeout")],
        "tls": [probe_result("pbx.test:5061", "refused", error="Connection refused")],
    }
    why = {"udp": "configured", "tcp": "all_transports", "tls": "all_transports"}
    result = verdict(per_target, ("udp",), parse_registrar("sip:pbx.test"), why_probed=why)
    assert result.status is Status.PASS and result.hint is None
    informational = " (informational: neither configured nor published in DNS)"
    assert result.summary == (
        f"udp 200 OK 3 ms; tcp no answer{informational}; "
        f"tls refused: nothing listens on pbx.test:5061 over TLS{informational}"
    )
    assert why_probed(result.details) == why
    assert result.details["probed_transports"] == ["udp", "tcp", "tls"]


def test_a_dns_published_transport_where_nothing_listens_warns_without_blaming_a_firewall() -> None:
    per_target = {
        "udp": [probe_result("pbx.test:5060", "answered", 200)],
        "tls": [probe_result("tls.pbx.test:5061", "refused", error="Connection refused")],
    }
    why = {"udp": "configured", "tls": "dns"}
    result = verdict(per_target, ("udp",), parse_registrar("sip:pbx.test"), why_probed=why)
    assert result.status is Status.WARN
    assert result.hint == (
        "UDP works; TLS would not: nothing listens on tls.pbx.test:5061 over TLS: check the "
        "registrar's TLS port with the platform"
    )


def test_a_preferred_target_that_ran_out_of_budget_is_no_evidence_of_failover() -> None:
    per_target = {
        "udp": [
            probe_result("pbx1.test:5060", "not_finished", error="still running at the deadline"),
            probe_result("pbx2.test:5060", "answered", 200),
        ]
    }
    result = verdict(per_target, ("udp",), parse_registrar("sip:pbx.test"))
    assert result.status is Status.PASS
    assert result.summary == "udp 200 OK 3 ms via pbx2.test:5060 (pbx1.test:5060 not finished)"


def test_explicit_uri_port_belongs_to_the_configured_transports_class() -> None:
    configured_udp = ("udp",)
    assert derived_port(parse_registrar("sip:pbx:5080"), "tcp", configured_udp) == 5080
    assert derived_port(parse_registrar("sip:pbx:5080"), "tls", configured_udp) == 5061
    assert derived_port(parse_registrar("sips:pbx:5071"), "udp", ("tls",)) == 5060
    assert derived_port(parse_registrar("sip:pbx"), "tls", configured_udp) == 5061


class FakeRegistrar:
    """A UDP socket playing registrar: records what arrives, answers the second copy only."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        data, peer = self.sock.recvfrom(65535)  # the first copy goes unanswered
        self.received.append(data)
        data, peer = self.sock.recvfrom(65535)  # the retransmission after 500 ms
        self.received.append(data)
        head = data.decode().split("\r\n")
        via = next(h for h in head if h.startswith("Via: "))
        echoed = [h for h in head if h.split(":", 1)[0] in ("From", "To", "Call-ID", "CSeq")]
        stray = via.replace(";branch=z9hG4bK", ";branch=z9hG4bKnot-ours-")
        nat_via = via.replace(";rport", ";rport=40999;received=203.0.113.9")
        for v in (stray, nat_via):  # an answer to someone else first: it must be skipped
            answer = [
                "SIP/2.0 404 Not Here" if v is stray else "SIP/2.0 200 OK",
                v,
                *echoed,
                "Allow: INVITE, OPTIONS",
                "Server: fake-registrar",
                "Content-Length: 0",
            ]
            self.sock.sendto(("\r\n".join(answer) + "\r\n\r\n").encode(), peer)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_wire_carries_the_run_user_agent_and_the_answer_is_matched_by_probe_id(
    host: str,
) -> None:
    registrar = FakeRegistrar(host)
    literal = f"[{host}]" if ":" in host else host
    try:
        ctx = context(f"sip:{literal}:{registrar.port}")
        result = check_options(ctx)
    finally:
        registrar.close()
    first, second = registrar.received
    assert first == second  # a retransmission is the same request
    lines = first.decode().split("\r\n")
    assert lines[0] == f"OPTIONS sip:{literal}:{registrar.port} SIP/2.0"
    assert f"Call-ID: {ctx.run_id}-udp@{literal}" in lines
    assert f"User-Agent: sipdiag/{__version__} run={ctx.run_id}" in lines
    assert any(f";branch=z9hG4bK{ctx.run_id}-udp;rport" in line for line in lines)
    udp = transports(result)["udp"]
    assert (udp["outcome"], udp["code"], udp["server"]) == ("answered", 200, "fake-registrar")
    assert udp["retransmitted"] is True and udp["rtt_ms"] >= 450
    assert udp["ignored"] == ["an answer to another request"]
    assert udp["allow"] == ["INVITE", "OPTIONS"]
    assert (udp["received"], udp["rport"]) == ("203.0.113.9", 40999)
    assert result.details["public_addresses"] == ["203.0.113.9"]  # the NAT evidence
    assert result.details["local_address"] == host


@pytest.mark.parametrize(
    ("budget", "status", "outcome"),
    [(1.0, Status.ERROR, "not_finished"), (2.5, Status.FAIL, "timeout")],
)
def test_a_silent_registrar_returns_before_the_deadline_and_a_short_budget_is_no_evidence(
    budget: float, status: Status, outcome: str
) -> None:
    # UDP never answered; TCP and TLS accepted by the kernel, then nothing (no SIP, no TLS).
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp, tls = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    with udp, tcp, tls:
        udp.bind(("127.0.0.1", 0))
        ports = {"udp": udp, "tcp": tcp, "tls": tls}
        targets = [
            Target(t, "127.0.0.1", s.getsockname()[1], "127.0.0.1") for t, s in ports.items()
        ]
        ctx = context("sip:127.0.0.1", transports=tuple(ports), targets=targets, budget=budget)
        result = check_options(ctx)
        returned_at = time.monotonic()
    assert returned_at < ctx.deadline
    t = transports(result)
    assert {t[n]["target_source"] for n in t} == {"dns"}
    assert {n: t[n]["outcome"] for n in t} == dict.fromkeys(("udp", "tcp", "tls"), outcome)
    assert result.status is status
    if status is Status.ERROR:
        assert result.hint == "re-run with a larger --timeout"
    else:
        assert result.summary == (
            "udp no answer; tcp no answer (connected, then silence); "
            "tls no answer (connected, then silence)"
        )
        assert t["tls"]["handshake_ms"] is None  # the TLS handshake itself got no answer


def run_in_agent(pair: NetnsPair, tmp_path: Path, *args: str) -> CliResult:
    """The CLI's net.sip-options inside the agent namespace."""
    return cli_process(
        "check", "--only", "net.sip-options", "--format", "json", *args,
        env={"XDG_DATA_HOME": str(tmp_path / "data")}, prefix=pair.exec_argv(pair.agent, []),
    )  # fmt: skip


def serve_default_ports(pair: NetnsPair, kam: Kamailio) -> None:
    """In ``pbx``, send 5060/5061 to Kamailio's free ports, so ``sip:PBX_IP`` needs no port.

    The firewall profiles filter after this (input hook), on Kamailio's own ports.
    """
    rules = f"""table ip sdnat {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {kam.host} udp dport 5060 dnat to {kam.host}:{kam.port}
    ip daddr {kam.host} tcp dport 5060 dnat to {kam.host}:{kam.port}
    ip daddr {kam.host} tcp dport 5061 dnat to {kam.host}:{kam.tls_port}
  }}
}}
"""
    done = subprocess.run(
        pair.exec_argv(pair.pbx, ["nft", "-f", "-"]),
        input=rules,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("profile", "expected", "max_seconds"),
    [
        ("open", {"udp": "answered", "tcp": "answered", "tls": "answered"}, 1.0),
        ("udp-drop", {"udp": "timeout", "tcp": "answered", "tls": "answered"}, 2.5),
        ("udp-reject", {"udp": "refused", "tcp": "answered", "tls": "answered"}, 1.0),
        ("tcp-rst", {"udp": "answered", "tcp": "refused", "tls": "refused"}, 1.0),
        ("drop-all", {"udp": "timeout", "tcp": "timeout", "tls": "timeout"}, 2.5),
    ],
)
def test_firewall_profiles_show_per_transport_from_the_agent_namespace(
    netns_pair: NetnsPair,
    tmp_path: Path,
    profile: str,
    expected: dict[str, str],
    max_seconds: float,
) -> None:
    kam = netns_pair.start_kamailio()
    serve_default_ports(netns_pair, kam)
    netns_pair.firewall(netns_pair.pbx, profile)
    ca = tmp_path / "pbx-ca.pem"
    ca.write_bytes(kam.ca_cert.read_bytes())
    # UDP is configured (the default); TCP and TLS are probed because they are asked for.
    r = run_in_agent(
        netns_pair, tmp_path, "--registrar", f"sip:{kam.host}", "--ca", str(ca), "--timeout", "4",
        "--probe-all-transports",
    )  # fmt: skip
    check = r.json["checks"][0]
    t = check["details"]["transports"]
    assert {n: t[n]["outcome"] for n in t} == expected, check["summary"]
    assert check["duration_ms"] < max_seconds * 1000  # ICMP and RST come back at once
    assert t["udp"]["target"] == f"{kam.host}:5060" and t["tls"]["target"] == f"{kam.host}:5061"
    assert check["details"]["local_address"] == netns_pair.agent_ip
    host = kam.host
    if profile == "open":
        assert check["status"] == "pass" and t["tls"]["certificate"]["verified"] is True
    elif profile == "udp-drop":
        assert check["status"] == "fail" and r.code == 1
        assert t["udp"]["error"] == "no answer within 2.0 s"
        assert check["hint"] == (
            f"allow outbound UDP 5060 to {host} in the firewall, or re-run with --transport tcp"
        )
    elif profile == "udp-reject":
        # A reject rule answers like a closed port (ICMP port unreachable): what the probe saw.
        assert check["status"] == "fail" and r.code == 1
        assert check["summary"].startswith(
            f"udp refused: nothing listens on {host}:5060 over UDP; tcp 200 Keepalive"
        )
        assert check["hint"] == (
            f"nothing listens on {host}:5060 over UDP: check the registrar's UDP port with the "
            "platform, or re-run with --transport tcp"
        )
    elif profile == "tcp-rst":
        assert check["status"] == "pass" and r.code == 0  # the configured UDP works
        assert check["hint"] is None  # TCP and TLS were only asked for: information
        refused = f"tcp refused: nothing listens on {host}:5060 over TCP (informational"
        assert refused in check["summary"]
    else:
        assert check["status"] == "fail"
        assert t["tcp"]["connect_ms"] is None  # not even the TCP handshake got through
        assert check["hint"] == (
            f"nothing answers at {host}: allow outbound UDP 5060 to it in the firewall/VPN, and "
            "check that it is the right registrar"
        )
        assert r.json["complete"] is True


def count_guesses(pair: NetnsPair, *, read: bool = False) -> int:
    """In ``pbx``, count TCP/UDP packets to any port but 5060 (before the DNAT): ``read`` gives
    the count so far; otherwise the counter is set up (at 0)."""
    if read:
        argv = ["nft", "-j", "list", "counter", "ip", "sdcount", "guessed"]
        done = subprocess.run(
            pair.exec_argv(pair.pbx, argv), capture_output=True, text=True, timeout=10, check=True
        )
        counters = [x["counter"] for x in json.loads(done.stdout)["nftables"] if "counter" in x]
        return int(counters[0]["packets"])
    rules = """table ip sdcount {
  counter guessed { }
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    meta l4proto { tcp, udp } th dport != 5060 counter name "guessed"
  }
}
"""
    done = subprocess.run(
        pair.exec_argv(pair.pbx, ["nft", "-f", "-"]),
        input=rules,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return 0


def test_nothing_is_sent_to_a_guessed_tls_port_unless_all_transports_are_asked_for(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    kam = netns_pair.start_kamailio()
    serve_default_ports(netns_pair, kam)
    count_guesses(netns_pair)
    registrar = ("--registrar", f"sip:{kam.host}", "--timeout", "4")
    r = run_in_agent(netns_pair, tmp_path, *registrar, "--transport", "udp", "--transport", "tcp")
    check = r.json["checks"][0]
    assert check["status"] == "pass", check["summary"]
    assert check["details"]["probed_transports"] == ["udp", "tcp"]
    assert count_guesses(netns_pair, read=True) == 0  # not one packet to 5061, or elsewhere
    # The control: asked for, TLS goes to 5061 (and the counter sees it).
    r = run_in_agent(netns_pair, tmp_path, *registrar, "--probe-all-transports")
    check = r.json["checks"][0]
    tls = check["details"]["transports"]["tls"]
    assert (tls["target"], tls["why_probed"]) == (f"{kam.host}:5061", "all_transports")
    assert tls["outcome"] == "tls_untrusted"  # Kamailio's own CA was not given
    assert check["status"] == "pass" and check["hint"] is None
    assert count_guesses(netns_pair, read=True) > 0
