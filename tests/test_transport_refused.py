"""A configured transport nothing listens on, while another answers: sip.transport_not_offered.

Real peers: Kamailio in the ``pbx`` namespace, its TCP port answering with a reset (nftables
``tcp-rst``), net.sip-options run from the ``agent`` namespace.
"""

from __future__ import annotations

from pathlib import Path

from clihelp import cli_process
from peers.netns import NetnsPair

from checks.sip.register import _attempt_text


def test_the_register_summary_says_what_happened_to_an_attempt_without_an_answer() -> None:
    timeout = {"transport": "udp", "outcome": "timeout", "code": 0, "reason": None}
    assert _attempt_text(timeout) == "no answer (timeout)"
    refused = {"transport": "tcp", "outcome": "refused", "code": 503, "remote": False}
    assert _attempt_text({**refused, "reason": "Connection refused"}) == "refused"
    answered = {"outcome": "rejected", "code": 403, "reason": "Forbidden", "remote": True}
    assert _attempt_text(answered) == "403 Forbidden"


def test_tcp_only_refused_while_udp_answers_is_transport_not_offered_and_not_healthy(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    kam = netns_pair.start_kamailio()
    netns_pair.firewall(netns_pair.pbx, "tcp-rst", [kam.port])
    # The softphone uses TCP only; UDP is probed because --probe-all-transports asks for it.
    r = cli_process(
        "check", "--only", "net.sip-options", "--format", "json",
        "--registrar", f"sip:{kam.host}:{kam.port}", "--transport", "tcp",
        "--probe-all-transports", "--timeout", "4",
        env={"XDG_DATA_HOME": str(tmp_path / "data")},
        prefix=netns_pair.exec_argv(netns_pair.agent, []),
    )  # fmt: skip
    check = r.check("net.sip-options")
    transports = check["details"]["transports"]
    assert transports["tcp"]["outcome"] == "refused", check["summary"]
    assert transports["udp"]["outcome"] == "answered", check["summary"]
    assert check["status"] == "fail"
    assert r.causes() == ["sip.transport_not_offered"]
    finding = r.finding("sip.transport_not_offered")
    assert (finding["family"], finding["severity"]) == ("registration", "critical")
    assert finding["action"] == (
        f"nothing listens on TCP {kam.host}:{kam.port}; UDP reaches the registrar: switch the "
        "softphone to UDP, or ask the platform which port serves TCP"
    )
    assert r.json["verdict"] == "failing" and r.code == 1
