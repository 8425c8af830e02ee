"""A healthy registrar over UDP and TCP only: a full check without audio is `healthy`, with zero
findings, and registers nothing (issue "do no harm": no guessed transports, no false alarms)."""

from __future__ import annotations

from clihelp import cli_process
from peers.netns import NetnsPair

PASSWORD = "alice-secret"


def test_a_full_check_of_a_healthy_udp_and_tcp_registrar_is_healthy_with_no_findings(
    netns_pair: NetnsPair,
) -> None:
    kam = netns_pair.start_kamailio()
    r = cli_process(
        "check", "--registrar", f"sip:{kam.host}:{kam.port}", "--user", "alice",
        "--transport", "udp", "--transport", "tcp", "--skip", "audio", "--format", "json",
        env={"SIPDIAG_PASSWORD": PASSWORD},
        prefix=tuple(netns_pair.exec_argv(netns_pair.agent, [])),
    )  # fmt: skip
    report = r.json
    assert report["findings"] == [], report["findings"]
    assert report["verdict"] == "healthy"
    assert r.code == 0, r.err
    options = r.check("net.sip-options")["details"]
    assert sorted(options["transports"]) == ["tcp", "udp"]  # no guessed TLS on 5061
    register = r.check("sip.register")
    assert register["status"] == "pass"
    assert kam.bindings("alice") == []
