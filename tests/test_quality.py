"""net.quality: the E-model and RFC 3550 arithmetic, then real STUN exchanges on loopback, through
a delaying relay and across namespaces with nftables dropping a fifth of the packets."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process, registered
from contexts import make_context
from peers.delay_relay import DelayRelay
from peers.dnsmasq import DnsmasqFactory, host
from peers.netns import NetnsPair
from peers.process import PeerStartError, free_port
from peers.stun import Stun
from peers.turn import Turn

from checks.net.quality import (
    Figures,
    delay_impairment,
    effective_equipment_impairment,
    figures,
    judge,
    mos_from_r,
    one_way_delay,
    r_factor,
    rfc3550_jitter,
)
from checks.net.quality import check_quality as run_quality
from diag.model import Status

(QUALITY_CHECK,) = registered("net.quality")


def quality_cli(*args: str) -> CliResult:
    return cli(
        "check", "--only", "net.quality", "--format", "json", *args, registry=[QUALITY_CHECK]
    )


def only_check(r: CliResult) -> dict[str, Any]:
    [check] = r.json["checks"]
    assert isinstance(check, dict)
    return check


# --- the arithmetic -------------------------------------------------------------------------


def test_mos_from_r_matches_g107_annex_b_at_known_points() -> None:
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)  # G.107's default R
    assert mos_from_r(50) == pytest.approx(2.58, abs=0.01)
    assert mos_from_r(80) == pytest.approx(4.02, abs=0.01)
    assert mos_from_r(0) == 1.0 and mos_from_r(-10) == 1.0
    assert mos_from_r(100) == 4.5 and mos_from_r(120) == 4.5
    values = [mos_from_r(r) for r in range(0, 101)]
    assert values == sorted(values)  # never better for a worse R


def test_r_factor_is_93_2_on_a_perfect_path_and_falls_with_delay_and_loss() -> None:
    assert r_factor(0, 0) == pytest.approx(93.2)
    assert delay_impairment(100) == pytest.approx(2.4)  # 0.024 d below 177.3 ms
    assert delay_impairment(277.3) == pytest.approx(0.024 * 277.3 + 0.11 * 100)
    assert effective_equipment_impairment(0) == 0.0
    assert effective_equipment_impairment(4.3) == pytest.approx(47.5)  # Ppl = Bpl: half of 95
    assert effective_equipment_impairment(100) == pytest.approx(95 * 100 / 104.3)
    assert r_factor(177.3, 1.0) == pytest.approx(93.2 - 0.024 * 177.3 - 95 / 5.3)


def test_one_way_delay_adds_half_the_rtt_a_jitter_buffer_and_the_codec() -> None:
    assert one_way_delay(200, 5) == pytest.approx(100 + 2 * 5 + 20)


def test_rfc3550_jitter_moves_a_sixteenth_of_the_way_each_packet() -> None:
    assert rfc3550_jitter([]) == 0.0 and rfc3550_jitter([7.0]) == 0.0
    assert rfc3550_jitter([5.0] * 50) == 0.0
    assert rfc3550_jitter([0.0, 16.0]) == pytest.approx(1.0)
    assert rfc3550_jitter([0.0, 16.0, 0.0]) == pytest.approx(1.0 + 15 / 16)
    assert rfc3550_jitter([0.0, 10.0] * 200) == pytest.approx(10.0, abs=0.01)  # converges


def test_figures_count_loss_reordering_and_a_nearest_rank_p95() -> None:
    arrivals = [(0, 10.0), (2, 12.0), (1, 30.0), (3, 11.0), (5, 10.0), (4, 14.0)]
    f = figures(8, arrivals)
    assert (f.sent, f.received, f.loss_pct, f.reordered) == (8, 6, 25.0, 2)
    assert f.rtt_ms == {"min": 10.0, "avg": 14.5, "max": 30.0, "p95": 30.0}


def sample(rtt: float = 20.0, jitter: float = 1.0, loss: float = 0.0, mos: float = 4.4) -> Figures:
    return Figures(
        50, 50, loss, {"min": rtt, "avg": rtt, "max": rtt, "p95": rtt}, jitter, 0, 0, 90, mos
    )


@pytest.mark.parametrize(
    ("figs", "status", "crossed"),
    [
        (sample(), Status.PASS, []),
        (sample(rtt=100.0), Status.PASS, []),  # at the threshold is not over it
        (sample(rtt=150.0), Status.WARN, ["RTT 150 ms > 100 ms"]),
        (sample(jitter=31.0), Status.WARN, ["jitter 31.0 ms > 30 ms"]),
        (sample(loss=2.0, mos=3.9), Status.WARN, ["loss 2 % > 1 %"]),
        (sample(mos=3.4), Status.WARN, ["MOS 3.40 < 3.5"]),
        (sample(mos=3.0), Status.FAIL, ["MOS 3.00 < 3.5"]),
        (sample(loss=6.0, mos=3.6), Status.FAIL, ["loss 6 % > 1 %"]),
    ],
)
def test_thresholds_warn_on_any_crossed_and_fail_on_low_mos_or_heavy_loss(
    figs: Figures, status: Status, crossed: list[str]
) -> None:
    assert judge(figs) == (status, crossed)


# --- real exchanges -------------------------------------------------------------------------


def test_a_loopback_stun_server_passes_with_no_loss_and_a_mos_above_4(stun: Stun) -> None:
    t0 = time.monotonic()
    r = quality_cli("--stun", stun.server)
    assert time.monotonic() - t0 < 2.0
    check = only_check(r)
    d = check["details"]
    assert check["status"] == "pass" and r.code == 0, check["summary"]
    assert (d["server"], d["sent"], d["received"], d["loss_pct"]) == (stun.server, 50, 50, 0.0)
    assert d["mos"] > 4.0 and d["r_factor"] > 85 and d["rtt_ms"]["max"] < 100
    assert set(d["rtt_ms"]) == {"min", "avg", "max", "p95"} and d["reordered"] == 0
    assert d["thresholds"] == {
        "warn": {"rtt_ms": 100.0, "jitter_ms": 30.0, "loss_pct": 1.0, "mos": 3.5},
        "fail": {"mos": 3.1, "loss_pct": 5.0},
    }
    assert check["summary"].startswith(f"50 STUN requests to {stun.server} every 20 ms: RTT ")
    assert "loss 0 % (50/50 answered), 0 reordered, MOS 4." in check["summary"]
    assert 900 <= check["duration_ms"] < 1500


def test_a_short_deadline_sends_fewer_requests_and_still_returns_in_time(stun: Stun) -> None:
    ctx = make_context(stun=(stun.server,), budget=0.8)
    result = run_quality(ctx)
    assert time.monotonic() < ctx.deadline
    assert result.status is Status.PASS and 10 <= result.details["sent"] < 50


def test_a_closed_port_is_not_measured_and_points_at_the_firewall() -> None:
    port = free_port(kinds=("udp",))
    t0 = time.monotonic()
    check = only_check(quality_cli("--stun", f"127.0.0.1:{port}"))
    assert time.monotonic() - t0 < 1.0
    assert check["status"] == "skip"
    assert check["summary"] == f"not measured: 127.0.0.1:{port} refused it (ICMP)"
    assert check["hint"] == (
        f"allow outbound UDP {port} to 127.0.0.1 (net.stun shows whether it answers)"
    )


@pytest.fixture
def delayed_stun(stun: Stun, tmp_path: Path) -> Iterator[DelayRelay]:
    """The STUN server behind a relay adding 100 ms each way."""
    try:
        relay = DelayRelay.start(tmp_path / "relay", (stun.host, stun.port), delay_ms=100)
    except (PeerStartError, OSError) as exc:
        pytest.fail(f"the delay relay could not start: {exc}", pytrace=False)
    try:
        yield relay
    finally:
        relay.stop()


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_200_ms_of_round_trip_through_a_delaying_relay_warns_with_the_figures(
    delayed_stun: DelayRelay,
) -> None:
    check = only_check(quality_cli("--stun", delayed_stun.server))
    d = check["details"]
    assert check["status"] == "warn", check["summary"]
    assert 180 <= d["rtt_ms"]["avg"] <= 300 and d["loss_pct"] == 0.0
    assert d["crossed"] == [f"RTT {d['rtt_ms']['avg']:.0f} ms > 100 ms"]
    assert check["hint"] == (
        "move to a wired network, or ask IT to check the path to 127.0.0.1: "
        f"RTT {d['rtt_ms']['avg']:.0f} ms > 100 ms"
    )
    assert 3.5 < d["mos"] < 4.41


def drop_percent(pair: NetnsPair, netns: str, percent: int) -> None:
    """nftables in ``netns`` drops ``percent`` % of what comes in over the veth, at random."""
    rules = f"""table inet tbloss {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname != "lo" numgen random mod 100 < {percent} drop
  }}
}}
"""
    done = subprocess.run(
        pair.exec_argv(netns, ["nft", "-f", "-"]),
        input=rules,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_fifth_of_the_packets_dropped_by_nftables_shows_as_loss_near_20_percent(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    try:
        server = Turn.start(tmp_path / "turn", host=netns_pair.pbx_ip, netns=netns_pair.pbx)
    except (PeerStartError, OSError) as exc:
        pytest.fail(f"turnserver could not start: {exc}", pytrace=False)
    try:
        drop_percent(netns_pair, netns_pair.pbx, 20)
        r = cli_process(
            "check", "--only", "net.quality", "--format", "json", "--stun", server.server,
            env={"XDG_DATA_HOME": str(tmp_path / "data")},
            prefix=netns_pair.exec_argv(netns_pair.agent, []),
        )  # fmt: skip
    finally:
        server.stop()
    check = only_check(r)
    d = check["details"]
    assert check["status"] in ("warn", "fail") and r.code == 1, check["summary"]
    assert 6 <= d["loss_pct"] <= 36 and d["sent"] == 50  # binomial(50, 0.2): 20 % +- 16
    assert d["mos"] < 3.1  # G.711 without concealment does not survive 20 % loss
    assert f"loss {d['loss_pct']:g} % > 1 %" in d["crossed"]
    assert f"loss {d['loss_pct']:g} % ({d['received']}/50 answered)" in check["summary"]
    assert check["duration_ms"] < 2500


def test_the_stun_server_name_resolves_through_the_dns_server_given(
    stun: Stun, dnsmasq: DnsmasqFactory
) -> None:
    # A name only the test's DNS server knows: net.quality asks it as net.stun does.
    server = dnsmasq(host("stun.cc.test", stun.host))
    r = quality_cli("--stun", f"stun.cc.test:{stun.port}", "--dns-server", server.server)
    check = only_check(r)
    assert check["status"] == "pass", check["summary"]
    assert check["details"]["received"] == 50
    assert ("A", "stun.cc.test") in server.queries()
