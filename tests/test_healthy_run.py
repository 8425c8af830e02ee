"""A healthy registrar over UDP and TCP only, with the agent's softphone (a real baresip)
registered: a full check without audio is `healthy`, with zero findings, registers nothing and
leaves the softphone's binding as it was (issue "do no harm": no guessed transports, no false
alarms; issue 13: the platform's request reaches the softphone)."""

from __future__ import annotations

from pathlib import Path

from clihelp import CliResult, cli_process
from peers.baresip import Baresip
from peers.netns import NetnsPair

PASSWORD = "alice-secret"


def test_a_full_check_of_a_healthy_udp_and_tcp_registrar_is_healthy_with_no_findings(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    kam = netns_pair.start_kamailio(route_users=True)
    phone = Baresip.start(
        tmp_path / "baresip", f"{kam.host}:{kam.port}", "alice", PASSWORD,
        host=netns_pair.agent_ip, netns=netns_pair.agent,
    )  # fmt: skip
    before = kam.bindings("alice")
    try:
        r = _full_check(netns_pair, kam.host, kam.port)
        after = kam.bindings("alice")
    finally:
        phone.stop()
    report = r.json
    assert report["findings"] == [], report["findings"]
    assert report["verdict"] == "healthy"
    assert r.code == 0, r.err
    options = r.check("net.sip-options")["details"]
    assert sorted(options["transports"]) == ["tcp", "udp"]  # no guessed TLS on 5061
    assert r.check("sip.register")["status"] == "pass"
    assert r.check("sip.bindings")["status"] == "pass"
    inbound = r.check("sip.inbound")
    assert inbound["status"] == "pass", inbound
    assert inbound["details"]["final"]["user_agent"].startswith("baresip")
    same = ("Address", "Call-ID", "CSeq", "User-Agent")  # what a re-REGISTER would change
    assert len(before) == 1 and len(after) == 1, (before, after)
    assert [after[0].get(k) for k in same] == [before[0].get(k) for k in same]


def _full_check(netns_pair: NetnsPair, host: str, port: int) -> CliResult:
    return cli_process(
        "check", "--registrar", f"sip:{host}:{port}", "--user", "alice",
        "--transport", "udp", "--transport", "tcp", "--skip", "audio", "--format", "json",
        env={"SIPDIAG_PASSWORD": PASSWORD},
        prefix=tuple(netns_pair.exec_argv(netns_pair.agent, [])),
    )  # fmt: skip
