"""The inbound test bed itself (tests/peers/inbound.py, tests/README.md §Inbound): requests from
the platform's Kamailio reach a real softphone (baresip) behind a real kernel NAT, and stop
reaching it when the NAT forgets the mapping or a stateful firewall drops them. These tests
prove the bed the sip.inbound, sip.bindings and net.idle tests stand on."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.inbound import (
    AGENT_IP,
    PLATFORM_IP,
    PLATFORM_SEND_IP,
    ROUTER_OUTSIDE_IP,
    Exchange,
    InboundBed,
    ask,
)
from peers.kamailio import Kamailio
from peers.process import PeerStartError

pytestmark = pytest.mark.integration
MakeBed = Callable[..., InboundBed]
BARESIP = "baresip v1.0.0"


@pytest.fixture
def make_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeBed]:
    """``make_bed(**InboundBed.start options)``; every bed made is torn down afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the inbound test bed needs root (network namespaces, nftables)")
    made: list[InboundBed] = []

    def make(**options: Any) -> InboundBed:
        bed = InboundBed.start(tmp_path_factory.mktemp("inbound"), **options)
        made.append(bed)
        return bed

    try:
        yield make
    finally:
        for bed in made:
            bed.stop()
        for bed in made:
            assert not Path("/run/netns", bed.agent).exists()


def logs(bed: InboundBed) -> str:
    """The tail of every peer log, for assertion messages."""
    return "\n".join(
        f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        for path in bed.log_paths()
    )


def answered_by_softphone(bed: InboundBed, exchange: Exchange) -> None:
    assert exchange.codes[0] == 407, (exchange.codes, logs(bed))  # the platform authenticates
    assert exchange.code == 200, (exchange.codes, logs(bed))
    assert (exchange.header("Server") or "").startswith(BARESIP), exchange.final


def timed_out_at_platform(bed: InboundBed, exchange: Exchange) -> None:
    """Kamailio relayed the request, no binding answered, tm's fr_timer (5 s) gave 408."""
    assert exchange.code == 408, (exchange.codes, logs(bed))
    assert exchange.header("Server") == "testbed-pbx", exchange.final
    assert exchange.elapsed is not None and 4.5 <= exchange.elapsed <= 6.0, exchange.elapsed
    assert bed.binding_replies(exchange) == [], logs(bed)
    assert f"{exchange.call_id}}} <script>: FWD OPTIONS" in bed.pbx.log_text(), logs(bed)


def test_a_request_from_the_platform_reaches_the_softphone_behind_the_nat(
    make_bed: MakeBed,
) -> None:
    bed = make_bed()
    [binding] = bed.bindings()
    assert binding["Address"].startswith("sip:alice-") and f"@{AGENT_IP}:" in binding["Address"]
    assert binding["User-Agent"].startswith(BARESIP), binding
    # nathelper's fix-up: the binding keeps where the REGISTER came from, the router's address
    received = binding["Received"]
    assert received.startswith(f"sip:{ROUTER_OUTSIDE_IP}:"), binding
    exchange = bed.ask("OPTIONS", "alice")
    answered_by_softphone(bed, exchange)
    assert exchange.elapsed is not None and exchange.elapsed < 1.0
    [reply] = bed.binding_replies(exchange)
    assert (reply.code, f"sip:{reply.source}", reply.transport) == (200, received, "udp")
    assert reply.received_on == f"{PLATFORM_IP}:{bed.pbx.port}"


@pytest.mark.parametrize(("udp_timeout", "expected"), [(5, 408), (None, 200)])
def test_a_nat_with_a_short_udp_timeout_forgets_the_softphone_after_silence(
    make_bed: MakeBed, udp_timeout: int | None, expected: int
) -> None:
    bed = make_bed(udp_timeout=udp_timeout, regint=600)
    answered_by_softphone(bed, bed.ask())  # the mapping works right after registering
    time.sleep(8)  # nothing crosses the NAT: baresip re-registers only after regint
    after = bed.ask()
    if expected == 408:
        timed_out_at_platform(bed, after)
    else:
        answered_by_softphone(bed, after)
    assert bed.softphone.registrations() == 1, logs(bed)


def test_a_stateful_firewall_drops_requests_the_platform_sends_from_another_address(
    make_bed: MakeBed,
) -> None:
    bed = make_bed(nat=False, send_from=True)
    [binding] = bed.bindings()
    assert binding["Received"].startswith(f"sip:{AGENT_IP}:"), binding  # routed, no NAT
    bed.stateful_firewall()  # only flows the agent started come in
    timed_out_at_platform(bed, bed.ask())
    bed.agent_firewall()  # no firewall
    exchange = bed.ask()
    answered_by_softphone(bed, exchange)
    [reply] = bed.binding_replies(exchange)
    assert reply.received_on == f"{PLATFORM_SEND_IP}:{bed.pbx.port}", reply  # sent from .3


def test_the_same_firewall_admits_requests_from_the_address_registered_to(
    make_bed: MakeBed,
) -> None:
    bed = make_bed(nat=False)
    bed.stateful_firewall()  # after the softphone registered: its flow is established
    answered_by_softphone(bed, bed.ask())


def test_behind_the_nat_a_request_from_another_address_never_arrives(make_bed: MakeBed) -> None:
    """Linux masquerade filters by address and port: no firewall is needed for the drop."""
    bed = make_bed(send_from=True)
    timed_out_at_platform(bed, bed.ask())


def test_a_platform_that_answers_options_itself_never_forks_them(make_bed: MakeBed) -> None:
    bed = make_bed(options_self=True)
    exchange = bed.ask()
    assert exchange.codes == [407, 200], (exchange.codes, logs(bed))
    assert exchange.header("Server") == "testbed-pbx", exchange.final
    assert bed.binding_replies(exchange) == []
    assert len(bed.bindings()) == 1
    # INVITE still goes to the softphone
    invite = bed.ask("INVITE", cancel_on_ringing=True)
    assert invite.code == 487 and 180 in invite.provisional, (invite.codes, logs(bed))


def test_an_invite_rings_the_softphone_and_a_cancel_stops_it(make_bed: MakeBed) -> None:
    bed = make_bed()
    exchange = bed.ask("INVITE", cancel_on_ringing=True)
    assert exchange.codes == [407, 100, 180, 487], (exchange.codes, logs(bed))
    assert exchange.cancelled and exchange.cancel_answer is not None
    assert exchange.cancel_answer.startswith("SIP/2.0 200 "), exchange.cancel_answer
    assert [r.code for r in bed.binding_replies(exchange, at_least=2)] == [180, 487], logs(bed)
    log = bed.softphone.daemon.log_text()
    assert "Incoming call from:  sip:alice@" in log, log
    deadline = time.monotonic() + 2
    while "session closed" not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = bed.softphone.daemon.log_text()
    assert "session closed" in log, log
    assert len(bed.bindings()) == 1  # still registered


def test_two_softphones_on_one_account_both_get_the_forked_request(make_bed: MakeBed) -> None:
    bed = make_bed(softphones=2)
    received = sorted(b["Received"] for b in bed.bindings())
    assert len(set(received)) == 2 and all(ROUTER_OUTSIDE_IP in r for r in received), received
    options = bed.ask()
    answered_by_softphone(bed, options)
    replies = bed.binding_replies(options, at_least=2)
    assert sorted(f"sip:{r.source}" for r in replies) == received, logs(bed)
    assert {r.code for r in replies} == {200}
    invite = bed.ask("INVITE", cancel_on_ringing=True)
    assert invite.code == 487, (invite.codes, logs(bed))
    # The CANCEL follows the first 180 relayed, so the other phone may not have rung yet;
    # both branches are cancelled and answer 487 (tm cancels a branch after its first 1xx).
    replies = bed.binding_replies(invite, at_least=3)  # 180 + two 487 at least
    cancelled = sorted(f"sip:{r.source}" for r in replies if r.code == 487)
    assert cancelled == received, logs(bed)
    for phone in bed.phones:
        assert "Incoming call from:" in phone.daemon.log_text(), logs(bed)


def test_over_tcp_the_request_goes_down_the_softphones_connection(make_bed: MakeBed) -> None:
    bed = make_bed(transport="tcp")
    [binding] = bed.bindings()
    assert binding["Received"].endswith(";transport=tcp") and binding["Tcpconn-Id"] != "-1"
    exchange = bed.ask()
    answered_by_softphone(bed, exchange)
    [reply] = bed.binding_replies(exchange)
    assert reply.transport == "tcp" and f"sip:{reply.source};transport=tcp" == binding["Received"]


def test_over_tcp_a_platform_sending_from_another_address_cannot_reach_the_softphone(
    make_bed: MakeBed,
) -> None:
    """A new connection to the softphone's ephemeral port is refused: 477 at once."""
    bed = make_bed(transport="tcp", nat=False, send_from=True)
    exchange = bed.ask()
    assert exchange.code == 477, (exchange.codes, logs(bed))
    assert exchange.elapsed is not None and exchange.elapsed < 1.0


def test_sipdiag_runs_in_the_agent_namespace_through_the_nat(
    make_bed: MakeBed, tmp_path: Path
) -> None:
    bed = make_bed()
    before = bed.bindings()
    result = bed.run_sipdiag(
        ["check", "--only", "sip.register", "--registrar", bed.registrar("udp"),
         "--user", "alice", "--format", "json", "--timeout", "8"],
        env={"SIPDIAG_PASSWORD": "alice-secret", "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.check("sip.register")["status"] == "pass", (result.out, result.err)
    assert [b["Ruid"] for b in bed.bindings()] == [b["Ruid"] for b in before]
    done = bed.run_in_agent(["ip", "-4", "-o", "addr", "show"])
    assert AGENT_IP in done.stdout and PLATFORM_IP not in done.stdout, done.stdout


def test_without_the_variants_kamailio_keeps_requests_to_users_to_itself(
    kamailio: Kamailio,
) -> None:
    """The session Kamailio (no -A ROUTE_USERS): OPTIONS to a user 405 unauthenticated,
    INVITE to an unregistered permitted user 480 after the challenge."""
    options = ask(kamailio.host, kamailio.port, "OPTIONS", "alice")
    assert options.codes == [405], options.responses
    invite = ask(kamailio.host, kamailio.port, "INVITE", "alice")
    assert invite.codes == [407, 100, 480] or invite.codes == [407, 480], invite.responses


def test_a_bed_that_fails_to_start_leaves_nothing_behind(tmp_path: Path) -> None:
    """A softphone with a wrong password never registers: the start fails after Kamailio and
    the namespaces were made, and takes them all down again."""
    if os.geteuid() != 0:
        pytest.fail("the inbound test bed needs root (network namespaces, nftables)")
    before = set(os.listdir("/run/netns")) if Path("/run/netns").exists() else set()
    with pytest.raises(PeerStartError, match="baresip"):
        InboundBed.start(tmp_path, password="wrong", timeout=1.5)
    assert set(os.listdir("/run/netns")) - before == set()
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(tmp_path).encode() in cmdline.read_bytes():
                leftovers.append(cmdline.parent.name)
        except OSError:  # the process ended while we looked
            continue
    assert leftovers == []
