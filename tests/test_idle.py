"""net.idle against a real kernel NAT that forgets quickly (the router namespace's conntrack UDP
timeout lowered, tests/README.md §NAT) and Kamailio with NAT fix-up: a request from the
platform arrives after a short silence and is lost after a long one; the budget and Ctrl-C are
honoured and nothing is left on the registrar."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import REPO, CliResult, cli_process, subprocess_env
from peers.inbound import PASSWORD, InboundBed
from peers.kamailio import Kamailio
from peers.natrouter import SERVER_IP, NatRouter
from peers.netns import run_checked
from peers.process import netns_prefix

ENV = {"SIPDIAG_PASSWORD": PASSWORD}


def idle_check(bed: InboundBed, *extra: str, timeout: str = "30") -> CliResult:
    return bed.run_sipdiag(
        [
            "check", "--registrar", bed.registrar(), "--user", "alice", "--only", "sip.register",
            "--only", "net.idle", "--timeout", timeout, "--format", "json", *extra,
        ],
        env=ENV,
        timeout=float(timeout) + 30,
    )  # fmt: skip


def test_a_nat_that_forgets_after_6_s_loses_the_request_after_10_s_of_silence(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path, softphones=0, udp_timeout=6) as bed:
        r = idle_check(bed, "--idle", "2,10", "--only", "sip.inbound")
        # Right after registering the request arrives; only silence loses it.
        assert r.check("sip.inbound")["status"] == "pass", r.check("sip.inbound")
        idle = r.check("net.idle")
        assert idle["status"] == "fail", idle
        periods = {p["seconds"]: p for p in idle["details"]["periods"]}
        assert (periods[2]["arrived"], periods[10]["arrived"]) == (True, False), periods
        assert idle["details"]["registration_interval"] == 3600  # Kamailio's max_expires
        finding = r.finding("network.nat_binding_short")
        assert finding["severity"] == "critical"
        assert "forgets UDP mappings after 2-10 s of silence" in finding["action"]
        # Half the longest silence that worked (2 s): well inside what the NAT keeps.
        assert "keepalives every <= 1 s" in finding["action"] and "RFC 4787" in finding["action"]
        assert bed.bindings() == []  # every binding of ours removed


def test_with_the_default_nat_timeout_both_periods_pass(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        r = idle_check(bed, "--idle", "2,10", "--transport", "udp", "--transport", "tcp")
        idle = r.check("net.idle")
        assert idle["status"] == "pass", idle
        arrived = {(p["transport"], p["seconds"]): p["arrived"] for p in idle["details"]["periods"]}
        assert arrived == {("udp", 2): True, ("udp", 10): True, ("tcp", 2): True, ("tcp", 10): True}
        assert r.causes() == []
        assert bed.bindings() == []


def test_the_registrar_part_is_skipped_while_a_softphone_is_registered(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path, softphones=1) as bed:
        before = bed.bindings()
        r = idle_check(bed, "--idle", "2")
        idle = r.check("net.idle")
        assert idle["status"] == "skip", idle
        assert "--register-binding" in idle["summary"]
        assert [b["Call-ID"] for b in bed.bindings()] == [b["Call-ID"] for b in before]


def test_idle_5_finishes_within_the_timeout(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        t0 = time.monotonic()
        r = idle_check(bed, "--idle", "5", timeout="8")
        took = time.monotonic() - t0
        assert r.check("net.idle")["status"] == "pass", r.check("net.idle")
        # The process's own start-up (~0.3 s) is inside this, so the bound is generous only
        # by what a process launch costs.
        assert took <= 8 + 0.5 + 0.7, took
        assert r.json["duration_ms"] <= 8500


def test_ctrl_c_during_the_wait_exits_130_with_an_incomplete_report_and_no_binding(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        proc = subprocess.Popen(
            [
                *bed.agent_prefix, sys.executable, "-m", "diag", "check",
                "--registrar", bed.registrar(), "--user", "alice", "--only", "sip.register",
                "--only", "net.idle", "--idle", "30", "--timeout", "60", "--format", "json",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=subprocess_env(ENV),
        )  # fmt: skip
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + 15
        while "idle 30 s" not in seen:  # the progress note: the wait has begun
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += proc.stderr.readline()
        assert len(bed.bindings()) == 1  # ours, during the wait
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
        assert time.monotonic() - t0 < 4
        assert proc.returncode == 130, stderr
        report = json.loads(stdout)
        assert report["complete"] is False
        idle = next(c for c in report["checks"] if c["id"] == "net.idle")
        assert idle["details"]["periods"][0]["skipped"] == "interrupted", idle
        assert idle["details"]["periods"][0]["removed"] is True
        assert bed.bindings() == []  # the binding went with the interrupted run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--idle", "901"), "invalid --idle period '901'"),
        (("--idle", "abc"), "invalid --idle period 'abc'"),
        (("--idle", "5,0"), "invalid --idle period '0'"),
        (("--idle", "6,6"), "--idle periods add up to 12 s, more than --timeout 10"),
    ],
)
def test_bad_idle_periods_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    r = cli_process("check", "--only", "net.idle", *args)
    assert r.code == 64, (r.out, r.err)  # sipdiag's usage error (README: exit codes)
    assert message in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_with_an_rfc5780_stun_server_the_mapping_lifetime_is_bracketed_too(
    tmp_path: Path,
) -> None:
    # tests/README.md §NAT: client -> masquerading router (conntrack forgets after 5 s) ->
    # server running coturn on two addresses, and here Kamailio as well.
    topo = NatRouter.create(tmp_path / "nat")
    try:
        topo.start_stun()
        topo.set_udp_timeout(5)
        kam = Kamailio.start(
            tmp_path / "kam", host=SERVER_IP, netns=topo.server, route_users=True, nat_fixup=True
        )
        try:
            r = cli_process(
                "check", "--registrar", f"{SERVER_IP}:{kam.port}", "--user", "alice",
                "--stun", topo.stun_server, "--only", "sip.register", "--only", "net.idle",
                "--idle", "2,9", "--timeout", "25", "--format", "json",
                env=ENV, timeout=60, prefix=netns_prefix(topo.client),
            )  # fmt: skip
        finally:
            kam.stop()
    finally:
        topo.destroy()
    idle = r.check("net.idle")
    assert idle["status"] == "fail", idle
    stun = idle["details"]["stun"]
    assert stun["error"] is None, stun
    assert 2 <= stun["lifetime_at_least"] < stun["lifetime_at_most"] <= 9, stun
    arrived = {p["seconds"]: p["arrived"] for p in idle["details"]["periods"]}
    assert arrived == {2: True, 9: False}
    assert "UDP mapping at the STUN server" in idle["summary"]
    assert r.finding("network.nat_binding_short")["severity"] == "critical"


def test_a_tcp_connection_the_nat_forgets_while_idle_is_reported_with_its_transport(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path, softphones=0) as bed:
        # The router forgets established TCP flows after 4 s of silence (host untouched).
        run_checked([*netns_prefix(bed.router), "sysctl", "-qw",
                     "net.netfilter.nf_conntrack_tcp_timeout_established=4"])  # fmt: skip
        r = idle_check(bed, "--idle", "8", "--transport", "tcp")
        idle = r.check("net.idle")
        assert idle["status"] == "fail", idle
        (period,) = idle["details"]["periods"]
        assert (period["transport"], period["arrived"]) == ("tcp", False), period
        action = r.finding("network.nat_binding_short")["action"]
        assert "idle TCP connection was closed or forgotten within 8 s" in action
        assert period["removed"] is True  # un-REGISTERed over a new connection
        assert bed.bindings() == []


def test_when_inbound_never_works_net_idle_blames_no_nat_timeout(tmp_path: Path) -> None:
    # The agent's firewall drops every request from the platform: sip.inbound says so
    # (network.inbound_blocked); net.idle's control request right after registering is lost
    # too, so no period is a NAT timeout (one truth per report).
    with InboundBed.start(
        tmp_path, softphones=0, nat=False, send_from=True, fr_timer_ms=2000
    ) as bed:
        bed.stateful_firewall()
        r = idle_check(bed, "--idle", "2", "--only", "sip.inbound")
        assert "network.inbound_blocked" in r.causes()
        assert "network.nat_binding_short" not in r.causes()
        idle = r.check("net.idle")
        assert idle["status"] == "skip", idle
        (period,) = idle["details"]["periods"]
        assert period["control_arrived"] is False and period["arrived"] is None
        assert "did not arrive even right after registering" in period["skipped"]
        assert bed.bindings() == []
