"""net.media against a real coturn (TURN, long-term credentials) on loopback and in namespaces."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, cli_process, registered
from contexts import make_context
from peers.netns import NetnsPair, apply_firewall
from peers.process import PeerStartError, free_port
from peers.turn import PASSWORD, USER, Turn

from checks.net.media import MediaRange, check_media, parse_media
from diag.model import Status

(MEDIA_CHECK,) = registered("net.media")
PW_ENV = "SIPDIAG_TEST_TURN_PW"
WRONG_PASSWORD = "Wr0ng-turn-Secret-5e1d"


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    """coturn on 127.0.0.1 with turnuser:turnpass in realm turn.test."""
    try:
        server = Turn.start(tmp_path_factory.mktemp("turn"))
    except (PeerStartError, OSError) as exc:
        pytest.fail(f"turnserver could not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def media_cli(*args: str, password: str | None = PASSWORD) -> CliResult:
    environ = {PW_ENV: password} if password else {}
    return cli(
        "check", "--only", "net.media", "--format", "json", "--turn-password-env", PW_ENV, *args,
        environ=environ, registry=[MEDIA_CHECK],
    )  # fmt: skip


def only_check(r: CliResult) -> dict[str, Any]:
    [check] = r.json["checks"]
    assert isinstance(check, dict)
    return check


def rows(check: dict[str, Any], probe: str) -> dict[str, dict[str, Any]]:
    return {r["transport"]: r for r in check["details"]["turn"] if r["probe"] == probe}


def test_media_ranges_are_probed_on_their_first_middle_and_last_port() -> None:
    assert parse_media("media.example.com:10000-20000") == MediaRange(
        "media.example.com:10000-20000", "media.example.com", 10000, 20000
    )
    assert parse_media("192.0.2.9:10000-20000").ports == [10000, 15000, 20000]
    assert parse_media("192.0.2.9:10000-10006").ports == [10000, 10002, 10006]  # RTP is even
    assert parse_media("[2001:db8::9]:4000").ports == [4000]
    for bad in ("h:0", "h:20-10", "h:70000"):
        with pytest.raises(ValueError, match="port range"):
            parse_media(bad)


def test_without_turn_or_media_the_check_skips_and_says_what_to_pass() -> None:
    result = check_media(make_context())
    assert result.status is Status.SKIP
    assert result.summary == "no TURN server or media endpoint configured"
    assert result.hint == "pass --turn HOST[:PORT] with --turn-user, and/or --media HOST:LOW-HIGH"


def test_an_impossible_media_port_range_is_an_error_naming_the_format() -> None:
    result = check_media(make_context(media=("192.0.2.9:20000-10000",)))
    assert result.status is Status.ERROR
    assert result.hint == "use HOST:PORT or HOST:LOW-HIGH, e.g. media.example.com:10000-20000"


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_turn_allocates_over_udp_and_tcp_and_releases_the_allocations(turn: Turn) -> None:
    t0 = time.monotonic()
    r = media_cli("--turn", turn.server, "--turn-user", USER)
    assert time.monotonic() - t0 < 2.0
    check = only_check(r)
    assert check["status"] == "pass" and r.code == 0, check["summary"]
    assert check["details"]["problem"] is None
    assert check["details"]["verdicts"] == {turn.server: "ok"}
    assert rows(check, "binding")["udp"]["outcome"] == "answered"
    low, high = turn.relay_ports
    for transport, row in rows(check, "allocate").items():
        assert row["outcome"] == "ok", (transport, row)
        host, port = row["relayed"].rsplit(":", 1)
        assert host == "127.0.0.1" and low <= int(port) <= high
        assert row["mapped"].startswith("127.0.0.1:")
        assert row["lifetime_s"] > 0 and row["released"] is True
        assert row["error_code"] is None and row["rtt_ms"] < 500
    assert check["summary"].startswith(f"TURN {turn.server}: UDP allocated 127.0.0.1:")
    assert ", TCP allocated 127.0.0.1:" in check["summary"]


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_a_wrong_turn_password_fails_as_auth_failed_and_is_never_shown(
    turn: Turn, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    r = cli_process(
        "check", "--only", "net.media", "--format", "json", "--debug", "--out", str(out),
        "--turn", turn.server, "--turn-user", USER, "--turn-password-env", PW_ENV,
        env={PW_ENV: WRONG_PASSWORD, "XDG_DATA_HOME": str(tmp_path / "data")},
    )  # fmt: skip
    check = only_check(r)
    assert check["status"] == "fail" and r.code == 1, check["summary"]
    assert check["details"]["problem"] == "auth_failed"
    for transport, row in rows(check, "allocate").items():
        assert (row["outcome"], row["error_code"]) == ("auth_failed", 401), transport
    assert check["hint"] == f"check --turn-user and the TURN password in ${PW_ENV}"
    assert "credentials rejected (401 Unauthorized)" in check["summary"]
    saved = json.dumps(r.saved_report())
    for text in (r.out, r.err, saved, out.read_text()):
        assert WRONG_PASSWORD not in text and PASSWORD not in text


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_the_right_password_never_appears_in_the_output_either(turn: Turn) -> None:
    r = media_cli("--turn", turn.server, "--turn-user", USER, "--debug")
    assert only_check(r)["status"] == "pass"
    assert PASSWORD not in r.out and PASSWORD not in r.err


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_without_a_password_the_server_is_reached_but_allocation_is_untested(turn: Turn) -> None:
    r = media_cli("--turn", turn.server, "--turn-user", USER, password=None)
    check = only_check(r)
    assert check["status"] == "pass" and check["details"]["verdicts"] == {turn.server: "untested"}
    assert {row["outcome"] for row in rows(check, "allocate").values()} == {"challenged"}
    assert check["hint"] == f"pass --turn-user and export {PW_ENV} to test a TURN allocation"


def test_a_closed_turn_port_is_refused_at_once_and_fails_as_blocked() -> None:
    port = free_port()
    t0 = time.monotonic()
    result = check_media(
        make_context(
            turn=(f"127.0.0.1:{port}",),
            turn_user=USER,
            turn_password_env=PW_ENV,
            environ={PW_ENV: PASSWORD},
        )
    )
    assert time.monotonic() - t0 < 1.0  # ICMP and RST come back at once
    assert result.status is Status.FAIL and result.details["problem"] == "blocked"
    assert {r["outcome"] for r in result.details["turn"]} == {"refused"}
    relay = f"outbound UDP {port} and the relay port range to 127.0.0.1"
    assert result.hint == f"allow {relay} (TCP {port} as a fallback)"


def silent_sockets(ports: list[int]) -> list[socket.socket]:
    """UDP sockets that take datagrams and never answer (a filtered port looks the same)."""
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        socks.append(sock)
    return socks


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_media_ports_that_answer_stun_pass(turn: Turn) -> None:
    # coturn answers STUN on its port: it stands in for an ICE-capable media server.
    result = check_media(make_context(media=(f"127.0.0.1:{turn.port}",)))
    assert result.status is Status.PASS, result.summary
    [row] = result.details["media"]
    assert row["outcome"] == "answered" and row["port"] == turn.port and row["rtt_ms"] < 500
    assert result.summary == f"media 127.0.0.1:{turn.port}: {turn.port} answered"


def test_silent_media_ports_alone_are_inconclusive_and_warn() -> None:
    low = free_port(kinds=("udp",), span=5)
    socks = silent_sockets([low, low + 2, low + 4])
    try:
        result = check_media(make_context(media=(f"127.0.0.1:{low}-{low + 4}",), budget=4.0))
    finally:
        for sock in socks:
            sock.close()
    assert result.status is Status.WARN and result.details["problem"] == "media_unproven"
    assert [r["outcome"] for r in result.details["media"]] == ["timeout"] * 3
    assert "(inconclusive: media servers may answer STUN only during a call)" in result.summary
    assert result.hint == f"place a test call, or allow outbound UDP {low}-{low + 4} to 127.0.0.1"


@pytest.mark.integration  # starts coturn (a fixture conftest does not know)
def test_silent_media_ports_next_to_an_answer_from_the_same_host_fail_as_blocked(
    turn: Turn,
) -> None:
    low = free_port(kinds=("udp",), span=5)
    socks = silent_sockets([low, low + 2, low + 4])
    try:
        result = check_media(
            make_context(
                turn=(turn.server,),
                turn_user=USER,
                turn_password_env=PW_ENV,
                environ={PW_ENV: PASSWORD},
                media=(f"127.0.0.1:{low}-{low + 4}",),
            )
        )
    finally:
        for sock in socks:
            sock.close()
    assert result.status is Status.FAIL and result.details["problem"] == "media_blocked"
    assert result.details["verdicts"][f"127.0.0.1:{low}-{low + 4}"] == "media_blocked"
    assert result.hint == f"allow outbound UDP {low}-{low + 4} to 127.0.0.1"


def test_ports_that_refuse_show_the_host_is_reached_with_no_listener() -> None:
    low = free_port(kinds=("udp",), span=5)
    result = check_media(make_context(media=(f"127.0.0.1:{low}-{low + 4}",)))
    assert result.status is Status.PASS
    assert [r["outcome"] for r in result.details["media"]] == ["refused"] * 3
    assert result.details["verdicts"] == {f"127.0.0.1:{low}-{low + 4}": "no_listener"}


def run_in_agent(pair: NetnsPair, tmp_path: Path, *args: str) -> CliResult:
    return cli_process(
        "check", "--only", "net.media", "--format", "json", "--timeout", "4",
        "--turn-user", USER, "--turn-password-env", PW_ENV, *args,
        env={PW_ENV: PASSWORD, "XDG_DATA_HOME": str(tmp_path / "data")},
        prefix=pair.exec_argv(pair.agent, []),
    )  # fmt: skip


@pytest.fixture
def pbx_turn(netns_pair: NetnsPair) -> Iterator[Turn]:
    """coturn inside the pbx namespace, on its veth address."""
    try:
        server = Turn.start(
            netns_pair.work_dir / "turn", host=netns_pair.pbx_ip, netns=netns_pair.pbx
        )
    except (PeerStartError, OSError) as exc:
        pytest.fail(f"turnserver could not start in {netns_pair.pbx}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def test_from_the_agent_namespace_udp_and_tcp_allocate_through_an_open_path(
    netns_pair: NetnsPair, pbx_turn: Turn, tmp_path: Path
) -> None:
    check = only_check(run_in_agent(netns_pair, tmp_path, "--turn", pbx_turn.server))
    assert check["status"] == "pass", check["summary"]
    for row in rows(check, "allocate").values():
        assert row["relayed"].startswith(f"{pbx_turn.host}:")
        assert row["mapped"].startswith(f"{netns_pair.agent_ip}:")


def test_with_udp_to_the_turn_port_dropped_only_tcp_allocates_and_the_check_warns(
    netns_pair: NetnsPair, pbx_turn: Turn, tmp_path: Path
) -> None:
    apply_firewall(netns_pair.pbx, "udp-drop", [pbx_turn.port])
    r = run_in_agent(netns_pair, tmp_path, "--turn", pbx_turn.server)
    check = only_check(r)
    assert check["status"] == "warn" and r.code == 0, check["summary"]
    assert check["details"]["problem"] == "udp_blocked"
    assert rows(check, "binding")["udp"]["outcome"] == "timeout"
    allocs = rows(check, "allocate")
    assert allocs["udp"]["outcome"] == "timeout" and allocs["tcp"]["outcome"] == "ok"
    assert check["summary"].endswith("media will be relayed over TCP: expect worse audio")
    assert check["hint"] == (
        f"allow outbound UDP {pbx_turn.port} and the relay port range to {pbx_turn.host}"
    )
    assert check["duration_ms"] < 3500


def test_with_every_turn_port_dropped_the_check_fails_as_blocked_within_the_deadline(
    netns_pair: NetnsPair, pbx_turn: Turn, tmp_path: Path
) -> None:
    apply_firewall(netns_pair.pbx, "drop-all")
    t0 = time.monotonic()
    r = run_in_agent(netns_pair, tmp_path, "--turn", pbx_turn.server)
    assert time.monotonic() - t0 < 4.0 + 2.0  # --timeout 4, plus the interpreter's start
    check = only_check(r)
    assert check["status"] == "fail" and r.code == 1, check["summary"]
    assert check["details"]["problem"] == "blocked"
    assert {row["outcome"] for row in check["details"]["turn"]} == {"timeout"}
    assert check["duration_ms"] < 3500
    port, host = pbx_turn.port, pbx_turn.host
    assert check["hint"] == (
        f"allow outbound UDP {port} and the relay port range to {host} (TCP {port} as a fallback)"
    )
