"""What a watch sample observes (diag/watch_observe.py), read from real check results: the host
and audio checks run for real in a network namespace with PulseAudio, the SIP checks against
Kamailio with a real softphone (baresip) before, during and after the agent's traffic is
dropped; the rules' corners with results the checks' own functions build. The observations go
through events_between, as the watch does."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import CliResult, cli_process
from contexts import make_context
from peers.baresip import Baresip
from peers.netns import NetnsPair, delete_namespaces
from peers.pulse import Pulse
from peers.tun import held_tun

from checks.net.quality import figures
from checks.net.quality import judge as judge_quality
from checks.net.stun import Server, new_record, verdict
from checks.sip.bindings import check_bindings
from checks.sip.inbound import Plan, check_inbound, judge
from checks.wire.sipua import Account
from checks.wire.sipua import Server as SipServer
from diag.config import Secret
from diag.context import Check, CheckRun, Context
from diag.diagnosis import diagnose
from diag.evidence import Binding
from diag.model import CheckResult, Finding, Status
from diag.timeline import schema
from diag.watch_events import events_between
from diag.watch_observe import observe, sample_fields

PASSWORD = "alice-secret"
SIP_CHECKS = ("sip.register", "sip.bindings", "sip.inbound")


def results_of(r: CliResult) -> dict[str, CheckResult]:
    """The report's checks as the CheckResults the watch gets from the runner."""
    return {
        c["id"]: CheckResult(Status(c["status"]), c["summary"], c["details"], c["hint"])
        for c in r.json["checks"]
    }


def not_run(ctx: Context) -> CheckResult:
    raise AssertionError("diagnosis reads results; it never runs a check")


def findings_of(results: Mapping[str, CheckResult]) -> list[Finding]:
    return diagnose([CheckRun(Check(i, "", not_run), r) for i, r in results.items()])


def no_server_env(home: Path) -> dict[str, str]:
    """A headless machine: no audio server reachable (as tests/test_audio.py's)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "client.conf").write_text("autospawn = no\n")
    return {
        "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_RUNTIME_DIR": str(home),
        "PULSE_SERVER": f"unix:{home}/no-such-pulse-socket",
        "PULSE_CLIENTCONFIG": str(home / "client.conf"),
    }  # fmt: skip


def assert_valid_sample(fields: dict[str, Any]) -> None:
    line = {"v": 1, "type": "sample", "watch_id": "w", "seq": 1, "t": "2026-12-02T16:00:00Z"}
    jsonschema.validate({**line, **fields}, schema())


# ---- host and audio, for real


@pytest.fixture
def agent_ns() -> Iterator[str]:
    """A namespace with a veth pair (wa0 10.98.9.1/24 up, wb0 up) and loopback."""
    name = f"sdo{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "wa0", "type", "veth", "peer", "name", "wb0"],
            ["addr", "add", "10.98.9.1/24", "dev", "wa0"],
            ["link", "set", "wa0", "up"],
            ["link", "set", "wb0", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True, capture_output=True)
        yield name
    finally:
        delete_namespaces([name])


@pytest.fixture
def softphone_process(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process named like a softphone (a copy of sleep called sdphone)."""
    exe = tmp_path / "sdphone"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "120"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def host_and_audio(ns: str, env: Mapping[str, str]) -> CliResult:
    return cli_process(
        "check", "--only", "host.interfaces", "--only", "host.vpn", "--only", "host.softphone",
        "--only", "audio.devices", "--softphone-process", "sdphone", "--format", "json",
        env=env, prefix=["ip", "netns", "exec", ns],
    )  # fmt: skip


def test_real_host_and_audio_checks_become_an_observation_and_their_changes_events(
    agent_ns: str, pulse: Pulse, softphone_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    env = {**pulse.env, "XDG_DATA_HOME": str(tmp_path / "data")}
    with held_tun(agent_ns, "tun7", "10.8.0.1", "10.8.0.2"):
        first = results_of(host_and_audio(agent_ns, env))
    before = observe(first)
    assert before["interfaces"]["wa0"]["up"] is True
    assert "10.98.9.1" in before["interfaces"]["wa0"]["addresses"]  # and its IPv6 link-local
    assert (
        before["interfaces"]["tun7"]["up"]
        and "10.8.0.1" in before["interfaces"]["tun7"]["addresses"]
    )
    assert before["vpn"] == ["tun7"]
    assert before["softphone_pids"] == [softphone_process.pid]
    sound = before["audio"]
    assert sound["inputs"] and sound["outputs"], first["audio.devices"].summary
    assert sound["default_input"] in sound["inputs"]
    assert sound["default_output"] in sound["outputs"]
    # Not in this sample's checks: unknown, not "false".
    assert before["registered"] is None and before["inbound"] is None
    assert before["public_mapping"] is None and before["quality_ok"] is None
    assert before["default_route"] is None
    fields = sample_fields(first, findings_of(first))
    assert fields["state"]["softphone_running"] is True
    assert fields["state"]["devices_present"] is True
    assert fields["state"]["registered"] is None
    assert fields["network"]["addresses"]["wa0"] == before["interfaces"]["wa0"]["addresses"]
    assert fields["network"]["vpn"] == ["tun7"]
    assert fields["audio"] == sound
    assert "host.vpn_active" in fields["causes"]
    assert fields["checks"]["host.vpn"] == {"status": "warn", "summary": first["host.vpn"].summary}
    assert_valid_sample(fields)

    # The VPN disconnects, the cable is pulled, the softphone quits, the headset goes away.
    subprocess.run(["ip", "-n", agent_ns, "link", "set", "wa0", "down"], check=True)
    softphone_process.kill()
    softphone_process.wait()
    second = results_of(host_and_audio(agent_ns, no_server_env(tmp_path / "headless")))
    after = observe(second)
    events = events_between(before, after)
    names = [name for name, _ in events]
    assert ("interface_down", {"name": "tun7"}) in events
    assert ("interface_down", {"name": "wa0"}) in events
    assert ("vpn_down", {"name": "tun7"}) in events
    assert ("softphone_stopped", {"pids": [softphone_process.pid]}) in events
    assert {e["name"] for n, e in events if n == "audio_device_removed"} == set(
        sound["inputs"] + sound["outputs"]
    )
    assert ("audio_default_changed", {"kind": "default_input", "before": sound["default_input"],
                                      "after": None}) in events  # fmt: skip
    assert not {"registration_lost", "inbound_lost", "public_mapping_changed"} & set(names)
    fields = sample_fields(second, findings_of(second))
    assert fields["state"]["devices_present"] is False
    assert fields["state"]["softphone_running"] is False
    assert fields["audio"] == {"inputs": [], "outputs": [], "default_input": None,
                               "default_output": None}  # fmt: skip
    assert_valid_sample(fields)


# ---- SIP, for real: the agent's traffic dropped and let through again


def sip_sample(pair: NetnsPair, host: str, port: int) -> dict[str, CheckResult]:
    r = cli_process(
        "check", "--registrar", f"sip:{host}:{port}", "--user", "alice", "--transport", "udp",
        *[a for c in SIP_CHECKS for a in ("--only", c)], "--format", "json",
        env={"SIPDIAG_PASSWORD": PASSWORD}, prefix=tuple(pair.exec_argv(pair.agent, [])),
    )  # fmt: skip
    return results_of(r)


def test_a_registered_softphone_whose_traffic_is_dropped_is_registration_and_inbound_lost(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    kam = netns_pair.start_kamailio(route_users=True)
    phone = Baresip.start(
        tmp_path / "baresip", f"{kam.host}:{kam.port}", "alice", PASSWORD,
        host=netns_pair.agent_ip, netns=netns_pair.agent,
    )  # fmt: skip
    try:
        healthy = sip_sample(netns_pair, kam.host, kam.port)
        netns_pair.firewall(netns_pair.pbx, "drop-all")
        dropped = sip_sample(netns_pair, kam.host, kam.port)
        netns_pair.firewall(netns_pair.pbx, "open")
        back = sip_sample(netns_pair, kam.host, kam.port)
    finally:
        phone.stop()
    ok = observe(healthy)
    assert healthy["sip.inbound"].status is Status.PASS, healthy["sip.inbound"].summary
    assert (ok["registered"], ok["registration_code"], ok["inbound"]) == (True, 200, True)
    assert ok["inbound_detail"].startswith("OPTIONS over UDP: 200")
    lost = observe(dropped)
    assert dropped["sip.register"].status is Status.FAIL
    assert (lost["registered"], lost["registration_code"]) == (False, None)
    assert lost["registration_reason"] == "no answer"
    assert lost["inbound"] is False
    assert events_between(ok, lost) == [
        ("registration_lost", {"code": None, "reason": "no answer"}),
        ("inbound_lost", {"detail": lost["inbound_detail"]}),
    ]
    assert [name for name, _ in events_between(lost, observe(back))] == [
        "registration_recovered", "inbound_recovered",
    ]  # fmt: skip
    fields = sample_fields(dropped, findings_of(dropped))
    assert fields["state"]["registered"] is False
    assert fields["state"]["inbound_reachable"] is False
    assert set(dropped["sip.register"].details["call_ids"]) <= set(fields["call_ids"])
    assert fields["causes"], "a dropped registrar is a finding"
    assert_valid_sample(fields)
    assert_valid_sample(sample_fields(healthy, findings_of(healthy)))


# ---- the rules' corners, with results the checks' own functions build


def query(outcome: str, code: int = 0, reason: str | None = None, **more: Any) -> dict[str, Any]:
    return {
        "transport": "udp", "outcome": outcome, "code": code, "reason": reason,
        "target": {"host": "pbx.example", "port": 5060, "address": "192.0.2.10"}, **more,
    }  # fmt: skip


def register(status: Status, *attempts: dict[str, Any], mode: str = "query") -> CheckResult:
    call_ids = [a["call_id"] for a in attempts if a.get("call_id")]
    details = {"mode": mode, "attempts": list(attempts), "baseline": None, "call_ids": call_ids}
    return CheckResult(status, "sip.register", details)


def sip_results(register_result: CheckResult) -> dict[str, CheckResult]:
    """sip.bindings run for real on ``register_result``; sip.inbound too when the query was not
    accepted (it then skips before sending anything)."""
    settings: dict[str, Any] = {"registrar": "pbx.example", "user": "alice"}
    ctx = make_context(results={"sip.register": register_result}, password=Secret("x"), **settings)
    results = {"sip.register": register_result, "sip.bindings": check_bindings(ctx)}
    if all(a["outcome"] != "ok" for a in register_result.details["attempts"]):
        results["sip.inbound"] = check_inbound(ctx)
    return results


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (query("timeout", reason=None), (False, None, "no answer")),
        (query("refused"), (False, None, "no answer (refused)")),
        (query("unreachable"), (False, None, "no answer (no route)")),
        (query("rejected", 403, "Forbidden", remote=True), (False, 403, "Forbidden")),
        (query("rejected", 503, "Service Unavailable", remote=True),
         (False, 503, "Service Unavailable")),
        (query("not_finished"), (None, None, None)),  # the budget ran out: no evidence
        (query("tls_untrusted"), (None, None, None)),
    ],
)  # fmt: skip
def test_a_query_the_registrar_did_not_accept(
    attempt: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    status = Status.ERROR if attempt["outcome"] == "not_finished" else Status.FAIL
    results = sip_results(register(status, attempt))
    assert results["sip.bindings"].status is Status.SKIP  # it reads sip.register's query
    seen = observe(results)
    assert (seen["registered"], seen["registration_code"], seen["registration_reason"]) == expected
    # sip.inbound could not send: only a registrar that did not answer makes that "lost".
    assert seen["inbound"] is (False if expected[1] is None and expected[0] is False else None)


def test_a_refusal_after_a_registration_is_registration_refused() -> None:
    held = observe(sip_results(register(Status.PASS, query("ok", 200, "OK", bindings=[PHONE]))))
    assert (held["registered"], held["registration_code"]) == (True, 200)
    refused = observe(sip_results(register(Status.FAIL, query("rejected", 403, "Forbidden"))))
    assert events_between(held, refused) == [
        ("registration_refused", {"code": 403, "reason": "Forbidden"})
    ]
    empty = observe(sip_results(register(Status.WARN, query("ok", 200, "OK", bindings=[]))))
    assert empty["registered"] is False and empty["registration_code"] == 200


def test_checks_that_did_not_run_skipped_or_broke_are_unknown() -> None:
    nothing = observe({})
    assert all(v is None for v in nothing.values()), nothing
    no_register = register(Status.PASS, query("challenged", 401), mode="challenge_only")
    assert observe({"sip.register": no_register})["registered"] is None
    broke = CheckResult(Status.ERROR, "the probe crashed", {})
    assert all(
        v is None
        for v in observe(
            {
                i: broke
                for i in (
                    "host.interfaces",
                    "host.vpn",
                    "audio.devices",
                    "sip.bindings",
                    "sip.register",
                    "sip.inbound",
                    "net.stun",
                    "net.quality",
                    "host.softphone",
                )
            }  # fmt: skip
        ).values()
    )
    unconfigured = CheckResult(Status.SKIP, "no softphone process configured", {"running": []})
    assert observe({"host.softphone": unconfigured})["softphone_pids"] is None


PHONE: Binding = {"contact": "sip:alice@81.2.69.7:5060", "expires": 600, "transport": "udp",
             "instance": None, "reg_id": None, "q": None, "ours": False, "params": {}}  # fmt: skip


def inbound_plan() -> Plan:
    return Plan(
        SipServer("udp", "pbx.example", 5060, "192.0.2.10"),
        Account("alice", "pbx.example", "alice", Secret("x"), "ua"),
        [PHONE], None, "pbx",
    )  # fmt: skip


def exchange_out(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mode": "softphone", "method": "OPTIONS", "transport": "udp", "final": None,
        "arrived": None, "provisional": [], "challenged": False, "platform_took": False,
        "for_bindings": ["sip:alice@81.2.69.7:5060"], "request_uri": "sip:alice@pbx.example",
        "error": None, "registration": None, "seen_from": None, "unroutable": [],
        "call_ids": ["c1@x"],
    }  # fmt: skip
    return {**out, **changes}


def test_inbound_blocked_is_lost_and_a_platform_that_answers_itself_is_unknown() -> None:
    ctx = make_context(registrar="pbx.example", user="alice")
    blocked = judge(ctx, inbound_plan(), exchange_out(
        final={"code": 408, "reason": "Request Timeout", "by": "registrar", "rtt_ms": 4000},
        platform_took=True, challenged=True))  # fmt: skip
    assert blocked.details["problem"] == "network.inbound_blocked"
    seen = observe({"sip.inbound": blocked})
    assert seen["inbound"] is False
    assert seen["inbound_detail"] == "OPTIONS over UDP: 408 Request Timeout from the registrar"
    reached = judge(ctx, inbound_plan(), exchange_out(
        final={"code": 200, "reason": "OK", "by": "binding", "rtt_ms": 12,
               "user_agent": "Zoiper"}, platform_took=True))  # fmt: skip
    assert reached.status is Status.PASS
    assert observe({"sip.inbound": reached})["inbound"] is True
    itself = judge(ctx, inbound_plan(), exchange_out(
        final={"code": 200, "reason": "OK", "by": "registrar", "rtt_ms": 3},
        platform_took=True))  # fmt: skip
    assert itself.status is Status.SKIP
    assert observe({"sip.inbound": itself})["inbound"] is None
    silent = judge(ctx, inbound_plan(), exchange_out(error="timed out"))
    assert silent.status is Status.SKIP
    assert observe({"sip.inbound": silent})["inbound"] is False
    assert observe({"sip.inbound": silent})["inbound_detail"] == (
        "the registrar did not answer (timed out)"
    )
    own = {"mode": "own_binding", "for_bindings": []}
    refused = judge(ctx, inbound_plan(), exchange_out(
        **own, registration={"code": 403, "reason": "Forbidden", "error": None}))  # fmt: skip
    assert refused.status is Status.SKIP and observe({"sip.inbound": refused})["inbound"] is None
    unanswered = judge(ctx, inbound_plan(), exchange_out(
        **own, registration={"code": None, "reason": None, "error": "timeout"}))  # fmt: skip
    assert unanswered.status is Status.SKIP
    assert observe({"sip.inbound": unanswered})["inbound"] is False
    ctx.stop.set()  # Ctrl-C before an answer: no evidence
    assert observe({"sip.inbound": judge(ctx, inbound_plan(), exchange_out())})["inbound"] is None
    assert sample_fields({"sip.inbound": blocked}, [])["call_ids"] == ["c1@x"]


def stun_result(mapped: str, local: str = "10.0.0.5:51000") -> CheckResult:
    server = Server("stun.example:3478", "stun.example", 3478)
    udp = {
        **new_record(server, "udp"),
        "outcome": "answered",
        "mapped": mapped,
        "mapped_plain": mapped,
        "local": local,
        "rtt_ms": 9,
        "address": "192.0.2.3:3478",
    }
    tcp = {**new_record(server, "tcp"), "outcome": "timeout", "error": "no answer in 2.0 s"}
    return verdict([udp, tcp], [server])  # fmt: skip


def test_the_public_mapping_is_the_address_stun_saw_without_its_ephemeral_port() -> None:
    first = observe({"net.stun": stun_result("81.2.69.7:40000")})
    assert first["public_mapping"] == "81.2.69.7"
    same_nat = observe({"net.stun": stun_result("81.2.69.7:41234", "10.0.0.5:52000")})
    assert events_between(first, same_nat) == []  # each sample leaves from a new port
    moved = observe({"net.stun": stun_result("[2001:db8::7]:40000")})
    assert events_between(first, moved) == [
        ("public_mapping_changed", {"before": "81.2.69.7", "after": "2001:db8::7"})
    ]
    unconfigured = CheckResult(Status.SKIP, "no STUN server configured", {})
    registrar_saw = register(Status.PASS, query("ok", 200, "OK", received="81.2.69.9"))
    registrar_saw.details["public_addresses"] = ["81.2.69.9"]  # type: ignore[index]
    fallback = observe({"net.stun": unconfigured, "sip.register": registrar_saw})
    assert fallback["public_mapping"] == "81.2.69.9"


def quality_result(rtt_ms: float, lost: int) -> CheckResult:
    """net.quality's result for 50 requests, built as its _measure builds it."""
    arrivals = [(seq, rtt_ms + (seq % 3)) for seq in range(50 - lost)]
    f = figures(50, arrivals)
    status, crossed = judge_quality(f)
    details = {"server": "stun.example", "thresholds": {"warn": {"mos": 3.5}, "fail": {}},
               **asdict(f), "crossed": crossed}  # fmt: skip
    return CheckResult(status, "quality", details)


def test_quality_below_threshold_carries_the_mos_and_the_sample_its_metrics() -> None:
    good, bad = quality_result(20.0, 0), quality_result(20.0, 10)
    seen_good, seen_bad = observe({"net.quality": good}), observe({"net.quality": bad})
    assert seen_good["quality_ok"] is True and seen_bad["quality_ok"] is False
    assert seen_bad["quality_crossed"] == bad.details["crossed"]
    assert events_between(seen_good, seen_bad) == [
        ("quality_below_threshold", {"mos": bad.details["mos"], "threshold": 3.5})
    ]
    clock = CheckResult(Status.PASS, "clock", {"clock_offset_ms": -1200})
    fields = sample_fields({"net.quality": bad, "host.clock": clock}, [])
    assert fields["metrics"] == {
        "rtt_ms": bad.details["rtt_ms"]["avg"], "jitter_ms": bad.details["jitter_ms"],
        "loss_pct": 20.0, "mos": bad.details["mos"], "clock_offset_ms": -1200,
    }  # fmt: skip
    assert fields["state"]["quality_ok"] is False and fields["state"]["clock_offset_ms"] == -1200
    assert_valid_sample(fields)
    unmeasured = CheckResult(Status.SKIP, "not measured: no answer", {"sent": 50, "received": 0})
    assert observe({"net.quality": unmeasured})["quality_ok"] is None


def test_an_empty_sample_is_valid_and_all_unknown() -> None:
    fields = sample_fields({}, [])
    assert set(fields["state"].values()) == {None}
    assert fields["checks"] == {} and fields["causes"] == [] and fields["call_ids"] == []
    assert_valid_sample(fields)
