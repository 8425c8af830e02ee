"""net.udp-fragmentation: padded OPTIONS against Kamailio, a size-picky fake registrar, and
nftables in the pbx namespace dropping IP fragments or large datagrams."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clihelp import CliResult, cli_process
from contexts import make_context
from peers.kamailio import Kamailio
from peers.netns import NetnsPair

from checks.net.udp_fragmentation import (
    HINT,
    MAX_PAD_LINE,
    MIN_PAD,
    NO_ANSWER,
    check_udp_fragmentation,
    fragments,
    pad_request,
)
from checks.wire.sip import message_length, options_request, parse
from diag.model import CheckResult, Status

SIZES = [500, 1300, 1600, 3000, 6000]
# nftables in pbx: a firewall that drops IP fragments (before the kernel reassembles them,
# hence prerouting ahead of conntrack's defrag at -400), or one that drops large UDP datagrams.
FIREWALLS = {
    "fragments": """table ip sdfrag {
  chain pre {
    type filter hook prerouting priority -500; policy accept;
    ip frag-off & 0x1fff != 0 drop
    ip frag-off & 0x2000 != 0 drop
  }
}
""",
    "large-udp": """table inet sdsize {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp meta length > 1400 drop
  }
}
""",
}


def sizes(result: CheckResult) -> dict[int, str]:
    return {s["size"]: s["outcome"] for s in result.details["sizes"]}


# ---- padding and the fragment estimate


@pytest.mark.parametrize("size", [500, 1300, 1600, 3000, 6000, 65000])
def test_padding_makes_the_datagram_exactly_that_size_with_its_body_intact(size: int) -> None:
    base = options_request("sip:192.0.2.1:5060", "udp", "10.0.0.5", 5060, "ab12-frag", "ua/1")
    padded = pad_request(base, size)
    assert len(padded) == size
    assert message_length(padded) == size  # Content-Length: 0 still tells the truth
    msg = parse(padded.decode())
    assert msg is not None and msg.first("content-length") == "0"
    pads = msg.all("x-sipdiag-pad")
    assert pads and all(len(f"X-Sipdiag-Pad: {p}\r\n") <= MAX_PAD_LINE for p in pads)
    assert (
        padded.replace(b"".join(b"X-Sipdiag-Pad: " + p.encode() + b"\r\n" for p in pads), b"")
        == base
    )


def test_padding_refuses_what_it_cannot_do_exactly() -> None:
    base = options_request("sip:192.0.2.1", "udp", "10.0.0.5", 5060, "ab12-frag", "ua/1")
    assert pad_request(base, len(base)) == base
    assert len(pad_request(base, len(base) + MIN_PAD)) == len(base) + MIN_PAD
    for size in (len(base) - 1, len(base) + MIN_PAD - 1):
        with pytest.raises(ValueError, match="cannot pad"):
            pad_request(base, size)


def test_fragment_estimate_follows_the_mtu() -> None:
    assert [fragments(s, 1500) for s in SIZES] == [1, 1, 2, 3, 5]
    assert fragments(1472, 1500) == 1 and fragments(1473, 1500) == 2
    assert fragments(1300, 1280, ip_version=6) == 2
    assert fragments(6000, None) is None


# ---- against real and fake registrars on loopback


def test_kamailio_answers_every_size_on_loopback(kamailio: Kamailio) -> None:
    t0 = time.monotonic()
    result = check_udp_fragmentation(make_context(registrar=f"sip:{kamailio.host}:{kamailio.port}"))
    assert (result.status, result.summary) == (
        Status.PASS,
        "UDP messages up to 6000 bytes get through",
    )
    assert sizes(result) == dict.fromkeys(SIZES, "answered")
    assert all(s["rtt_ms"] is not None and s["fragments"] == 1 for s in result.details["sizes"])
    assert result.details["interface"] == "lo" and result.details["mtu"] >= 65535
    assert result.details["largest_answered"] == 6000 and result.details["smallest_lost"] is None
    assert time.monotonic() - t0 < 0.5


def fake_registrar(answer: Callable[[int], bool]) -> Iterator[str]:
    """A UDP 'registrar' on 127.0.0.1 that answers an OPTIONS of n bytes when answer(n)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg = parse(data.decode(errors="replace"))
            if msg is None or not answer(len(data)):
                continue
            echo = [f"{n}: {msg.first(n)}" for n in ("Via", "From", "To", "Call-ID", "CSeq")]
            sock.sendto(
                ("\r\n".join(["SIP/2.0 200 OK", *echo, "Content-Length: 0"]) + "\r\n\r\n").encode(),
                peer,
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"sip:127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        sock.close()


@pytest.fixture
def small_only() -> Iterator[str]:
    yield from fake_registrar(lambda n: n <= 1400)


@pytest.fixture
def silent() -> Iterator[str]:
    yield from fake_registrar(lambda n: False)


@pytest.fixture
def loses_1300() -> Iterator[str]:
    yield from fake_registrar(lambda n: n != 1300)


def test_small_answered_and_large_lost_fails_with_the_threshold(small_only: str) -> None:
    t0 = time.monotonic()
    result = check_udp_fragmentation(make_context(registrar=small_only))
    elapsed = time.monotonic() - t0
    assert result.status is Status.FAIL and result.hint == HINT
    assert sizes(result) == {
        500: "answered",
        1300: "answered",
        1600: "timeout",
        3000: "timeout",
        6000: "timeout",
    }
    assert (result.details["largest_answered"], result.details["smallest_lost"]) == (1300, 1600)
    assert all(s["retransmitted"] for s in result.details["sizes"] if not s["answered"])
    assert result.summary.startswith(
        "UDP messages up to 1300 bytes get through, 1600 bytes and more are lost"
    )
    assert 1.9 < elapsed < 2.5  # all sizes in flight together: one wait, not five


def test_a_registrar_that_answers_nothing_is_left_to_net_sip_options(silent: str) -> None:
    result = check_udp_fragmentation(make_context(registrar=silent))
    assert (result.status, result.summary) == (Status.SKIP, NO_ANSWER)
    assert set(sizes(result).values()) == {"timeout"}


def test_a_lost_small_message_beside_larger_answered_ones_is_loss_not_size(loses_1300: str) -> None:
    result = check_udp_fragmentation(make_context(registrar=loses_1300))
    assert result.status is Status.WARN
    assert result.summary == (
        "UDP messages of 1300 bytes were lost although 6000 bytes got through: "
        "packet loss, not message size"
    )


def test_a_budget_too_short_to_wait_is_no_evidence(silent: str) -> None:
    result = check_udp_fragmentation(make_context(registrar=silent, budget=0.5))
    assert result.status is Status.ERROR
    assert set(sizes(result).values()) == {"not_finished"}
    assert result.hint == "re-run with a larger --timeout"


def test_without_udp_in_the_transports_there_is_nothing_to_fragment() -> None:
    result = check_udp_fragmentation(make_context(registrar="sip:192.0.2.1", transports=("tls",)))
    assert result.status is Status.SKIP
    assert result.summary.startswith("SIP does not use UDP here (transports: tls)")


# ---- from the agent namespace, with and without a firewall that loses fragments


def run_in_agent(pair: NetnsPair, tmp_path: Path, registrar: str) -> CliResult:
    return cli_process(
        "check", "--registrar", registrar, "--only", "net.udp-fragmentation", "--format", "json",
        env={"XDG_DATA_HOME": str(tmp_path / "data")}, timeout=60,
        prefix=pair.exec_argv(pair.agent, []),
    )  # fmt: skip


@pytest.mark.parametrize("firewall", ["none", "fragments", "large-udp"])
def test_from_the_agent_namespace_lost_fragments_fail_at_1600_bytes(
    netns_pair: NetnsPair, tmp_path: Path, firewall: str
) -> None:
    kam = netns_pair.start_kamailio()
    if firewall != "none":
        done = subprocess.run(
            netns_pair.exec_argv(netns_pair.pbx, ["nft", "-f", "-"]),
            input=FIREWALLS[firewall],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    r = run_in_agent(netns_pair, tmp_path, f"sip:{kam.host}:{kam.port}")
    check = r.json["checks"][0]
    details = check["details"]
    assert details["mtu"] == 1500 and details["local"].startswith(netns_pair.agent_ip + ":")
    assert [s["fragments"] for s in details["sizes"]] == [1, 1, 2, 3, 5]
    assert [s["size"] for s in details["sizes"]] == SIZES
    if firewall == "none":
        assert check["status"] == "pass" and r.code == 0
        assert check["summary"] == "UDP messages up to 6000 bytes get through"
        assert check["duration_ms"] < 500
    else:
        assert check["status"] == "fail" and r.code == 1
        assert [s["answered"] for s in details["sizes"]] == [True, True, False, False, False]
        assert (details["largest_answered"], details["smallest_lost"]) == (1300, 1600)
        assert check["summary"] == (
            "UDP messages up to 1300 bytes get through, 1600 bytes and more are lost "
            "(1600 bytes are 2 IP fragments at MTU 1500)"
        )
        assert check["hint"] == HINT
        assert check["duration_ms"] < 2500
