"""Hardening against hostile registrars and a leaky environment (issue: hardening)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from clihelp import subprocess_env
from peers.sipp import SippFactory

from checks.wire.sip import parse_date

PASSWORD = "hardening-secret-3141"


def test_a_date_with_a_year_no_clock_can_hold_is_unparseable_not_a_crash() -> None:
    assert parse_date("Fri, 27 Nov 99999999999 03:00:00 GMT") is None
    assert parse_date("Fri, 27 Nov 2026 03:00:00 GMT") is not None


def test_a_registrar_with_an_absurd_date_still_gets_a_result(sipp_uas: SippFactory) -> None:
    from clihelp import cli_process

    uas = sipp_uas("reg_200_bad_date.xml")
    r = cli_process(
        "check", "--registrar", uas.uri, "--user", "alice", "--only", "sip.register",
        "--no-register", "--format", "json",
    )  # fmt: skip
    check = r.check("sip.register")
    assert check["status"] == "warn", check  # answered without asking for credentials
    assert "clock_offset_ms" not in check["details"]
    assert check["details"]["attempts"][0]["server_date"].startswith("Fri, 27 Nov 99999999999")


def test_the_pjsip_worker_never_holds_the_password_in_its_environment(
    sipp_uas: SippFactory,
) -> None:
    uas = sipp_uas("reg_slow_binding.xml", extra_args=["-m", "2"])
    env = subprocess_env({"SIPDIAG_PASSWORD": PASSWORD, "SIPDIAG_TURN_PASSWORD": PASSWORD})
    proc = subprocess.Popen(
        [sys.executable, "-m", "diag", "check", "--registrar", uas.uri, "--user", "alice",
         "--only", "sip.register", "--format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: list[dict[str, str]] = []
    end = time.monotonic() + 8
    while time.monotonic() < end and proc.poll() is None and not seen:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "checks.sip.worker" in " ".join(child.cmdline()):
                    seen.append(child.environ())
            except psutil.Error:
                continue
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=20)
    assert seen, "the PJSIP worker was never seen running"
    assert "SIPDIAG_PASSWORD" not in seen[0] and "SIPDIAG_TURN_PASSWORD" not in seen[0]
    assert PASSWORD not in "".join(seen[0].values())
    assert b'"status": "pass"' in out  # the slow registration still went through


def test_a_valid_policy_is_read_without_searching_its_text_once_per_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diag import policy

    searches: list[tuple[str, ...]] = []
    real = policy._line_of

    def counted(*args: str) -> int | None:
        searches.append(args)
        return real(*args)

    monkeypatch.setattr(policy, "_line_of", counted)
    numbers = ", ".join(f'"+4420{i:07d}"' for i in range(2000))
    prefixes = ", ".join(f'"+4479{i:04d}"' for i in range(2000))
    path = tmp_path / "policy.toml"
    path.write_text(f'default = "deny"\n[allow]\nnumbers = [{numbers}]\nprefixes = [{prefixes}]\n')
    loaded = policy.load_policy(path)
    assert searches == []  # a per-value search of the text made loading quadratic
    facts = policy.NumberFacts(e164="+447900421234", type="mobile", country="GB")
    assert policy.evaluate(loaded, facts).rule == 'allow.prefixes "+44790042"'  # the longest
    bad = tmp_path / "bad.toml"
    bad.write_text('[deny]\nprefixes = ["+44", "044"]\n')
    with pytest.raises(policy.UsageError, match="line 2: deny.prefixes value '044'"):
        policy.load_policy(bad)


def test_sigterm_to_sipdiag_takes_the_pjsip_worker_with_it(
    sipp_uas: SippFactory, tmp_path: Path
) -> None:
    uas = sipp_uas("reg_slow_binding.xml", extra_args=["-m", "2"])
    env = subprocess_env({"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(tmp_path)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "diag", "check", "--registrar", uas.uri, "--user", "alice",
         "--only", "sip.register", "--format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    workers: list[psutil.Process] = []
    end = time.monotonic() + 8
    while time.monotonic() < end and not workers:
        workers = [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "checks.sip.worker" in " ".join(c.cmdline())
        ]
        time.sleep(0.02)
    assert workers, "the PJSIP worker was never seen running"
    time.sleep(0.3)  # the worker is inside its slow REGISTER now
    proc.terminate()
    proc.communicate(timeout=10)
    gone, alive = psutil.wait_procs(workers, timeout=2)
    assert alive == [], "the PJSIP worker outlived sipdiag"
    sent = uas.messages().count("REGISTER sip:")
    time.sleep(1.0)
    assert uas.messages().count("REGISTER sip:") == sent  # nothing leaves after the exit
    assert list(tmp_path.rglob("*.part")) == []


def test_latin1_from_the_registrar_becomes_valid_text_and_the_report_is_kept(
    sipp_uas: SippFactory, tmp_path: Path
) -> None:
    from clihelp import cli_process

    uas = sipp_uas("reg_200_latin1.xml", extra_args=["-m", "2"])
    r = cli_process(
        "check", "--registrar", uas.uri, "--user", "alice", "--only", "sip.register",
        "--format", "json", env={"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    assert r.code in (0, 1), r.err
    check = r.check("sip.register")
    assert check["status"] in ("pass", "warn"), check
    reasons = [a["reason"] for a in check["details"]["attempts"] + check["details"]["queries"]]
    assert all(reason.startswith("Acc\ufffds autoris") for reason in reasons), reasons
    # ... and each answer records how many characters were not UTF-8 on the wire.
    answers = check["details"]["attempts"] + check["details"]["queries"]
    assert all(a.get("undecodable_characters", 0) >= 2 for a in answers), answers
    text = json.dumps(r.json, ensure_ascii=False)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)  # no lone surrogate left
    assert r.saved_report()["run_id"] == r.json["run_id"]


def test_an_answer_with_another_call_id_is_not_our_registration(
    sipp_uas: SippFactory, tmp_path: Path
) -> None:
    from clihelp import cli_process

    uas = sipp_uas("reg_foreign_callid.xml", extra_args=["-m", "2"])
    r = cli_process(
        "check", "--registrar", uas.uri, "--user", "alice", "--only", "sip.register",
        "--format", "json", "--timeout", "4",
        env={"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    check = r.check("sip.register")
    [attempt] = check["details"]["attempts"]
    assert attempt["outcome"] == "error", attempt
    assert attempt["foreign_answer"]["call_id"].startswith("not-yours-")
    assert not attempt["call_id"].startswith("not-yours-")
    assert check["status"] != "pass"
    assert not any(c.startswith("not-yours-") for c in r.json["correlation"]["call_ids"])


def test_host_validation_is_linear_a_bad_long_name_is_refused_at_once() -> None:
    import threading

    from diag.target import is_hostname, parse_registrar

    bad = ("registrar." * 25)[:243] + "example.com/"  # 255 characters ending in a typo
    assert len(bad) == 255 and not is_hostname(bad)
    assert not is_hostname(bad[-250:])  # within the length limit: refused label by label
    # The exponential pattern took minutes on such names, whatever --timeout said: run it in a
    # thread and require an answer long before a backtracking regex could give one.
    answer: list[str] = []

    def parse() -> None:
        try:
            parse_registrar(f"sip:{bad}")
        except ValueError as exc:
            answer.append(str(exc))

    worker = threading.Thread(target=parse, daemon=True)
    worker.start()
    worker.join(5.0)
    assert answer and "is not a host name or address" in answer[0]
    assert is_hostname("pbx-1.example.com.") and is_hostname("_sip._udp.example.com")
    assert not is_hostname("a" * 64 + ".example.com")  # a label is at most 63 characters


@pytest.mark.parametrize(
    "flags",
    [
        ("--registrar", "224.0.0.1"),
        ("--registrar", "sip:[ff02::1]:5060"),
        ("--registrar", "0.0.0.0"),
        ("--registrar", "255.255.255.255"),
        ("--registrar", "sip:127.0.0.1", "--stun", "239.255.255.250:3478"),
        ("--registrar", "sip:127.0.0.1", "--turn", "[::]:3478"),
    ],
)
def test_a_non_unicast_server_address_is_a_usage_error_before_anything_is_sent(
    flags: tuple[str, ...],
) -> None:
    from clihelp import cli_process

    r = cli_process("check", *flags, "--user", "alice", "--only", "sip.register")
    assert r.code == 64, (r.code, r.err)
    assert len(r.err.strip().splitlines()) == 1 and "not one server's address" in r.err


@pytest.mark.parametrize(
    ("scenario", "transport", "said"),
    [
        ("reg_absurd_length.xml", "tcp", "99999999-byte body"),
        ("reg_401_basic.xml", "udp", "401"),
        ("reg_401_huge_nonce.xml", "tcp", "401"),
    ],
)
def test_an_answer_a_softphone_cannot_use_is_the_registrars_fault_never_the_firewalls(
    sipp_uas: SippFactory, scenario: str, transport: str, said: str
) -> None:
    from clihelp import cli_process

    uas = sipp_uas(scenario, transport=transport)
    t0 = time.monotonic()
    r = cli_process(
        "check", "--registrar", uas.uri, "--user", "alice", "--only", "sip.register",
        "--format", "json", "--timeout", "5", env={"SIPDIAG_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert time.monotonic() - t0 < 5 + 1.5
    check = r.check("sip.register")
    [attempt] = check["details"]["attempts"]
    assert attempt["registrar_answered"] is True, attempt
    assert attempt["outcome"] == "rejected", attempt
    assert said in f"{attempt['code']} {attempt['reason']}", attempt
    assert not [c for c in r.causes() if c.startswith("network.")], r.causes()
    if attempt.get("unusable"):
        assert r.causes() == ["sip.server_error"]
    assert "firewall" not in check["hint"]


@pytest.mark.parametrize("mode", ["status-999", "status-000"])
def test_a_status_outside_100_699_is_the_registrars_answer_not_silence(mode: str) -> None:
    from clihelp import cli_process
    from peers.hostile import HostileSip

    peer = HostileSip(mode).start()
    try:
        r = cli_process(
            "check", "--registrar", peer.uri, "--user", "alice", "--only", "sip.register",
            "--format", "json", "--timeout", "4", env={"SIPDIAG_PASSWORD": PASSWORD},
        )  # fmt: skip
    finally:
        peer.stop()
    check = r.check("sip.register")
    [attempt] = check["details"]["attempts"]
    assert (attempt["outcome"], attempt["registrar_answered"]) == ("rejected", True), attempt
    assert "outside SIP's 100-699" in attempt["reason"]
    assert r.causes() == ["sip.server_error"]
    assert "a softphone cannot use" in r.finding("sip.server_error")["action"]
    assert "firewall" not in check["hint"]


@pytest.mark.parametrize("kind", ["profile", "policy", "report"])
@pytest.mark.parametrize("source", ["dev-zero", "fifo", "deep"])
def test_hostile_input_files_are_one_line_usage_errors(
    tmp_path: Path, kind: str, source: str
) -> None:
    import os

    from clihelp import cli_process

    if source == "dev-zero":
        path = Path("/dev/zero")
    elif source == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    else:
        path = tmp_path / f"deep.{'json' if kind == 'report' else 'toml'}"
        if kind == "report":
            path.write_text("[" * 100_000 + "]" * 100_000)
        else:
            path.write_text("x = " + "[" * 1_000 + "]" * 1_000 + "\n")
    args = {
        "profile": ("check", "--profile", str(path), "--only", "host.os"),
        "policy": ("check", "--policy", str(path), "--number", "+442071234567",
                   "--only", "number.policy"),
        "report": ("report", str(path)),
    }[kind]  # fmt: skip
    r = cli_process(*args, timeout=20)
    assert r.code == 64, (r.code, r.err)
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err


def test_a_policy_is_read_only_when_number_policy_runs(tmp_path: Path) -> None:
    from clihelp import cli_process

    bad = tmp_path / "policy.toml"
    bad.write_text('[deny]\nprefixes = ["+44", "044"]\n')
    r = cli_process("check", "--policy", str(bad), "--only", "host.os", "--format", "json")
    assert r.code == 0, r.err  # not parsed: host.os does not use it
    r = cli_process(
        "check", "--policy", str(bad), "--number", "+442071234567", "--only", "number.policy"
    )
    assert r.code == 64 and "line 2" in r.err, (r.code, r.err)


def test_sigterm_before_the_checks_start_is_one_line_exit_130_and_no_report(
    tmp_path: Path,
) -> None:
    import signal

    env = subprocess_env({"XDG_DATA_HOME": str(tmp_path)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "diag", "check", "--only", "host.os"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.05)  # past Python's own start-up, long before the checks start
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.rglob("sipdiag-*.json")) == []  # the documented window: no report yet


def test_an_error_line_shows_control_characters_from_a_hostile_path(tmp_path: Path) -> None:
    from clihelp import cli_process

    evil = tmp_path / "report\x1b]0;pwned\x07\x1b[2J.json"
    r = cli_process("report", str(evil))
    assert r.code == 64
    assert "\x1b" not in r.err and "\x07" not in r.err and "\u241b" in r.err


@pytest.mark.parametrize(
    ("field", "value"),
    [("checks", [1]), ("findings", [{"cause": 5}]), ("verdict", None), ("host", "x")],
)
def test_report_and_bundle_reject_a_damaged_report_alike_before_using_it(
    tmp_path: Path, field: str, value: Any
) -> None:
    from clihelp import cli_process

    good = cli_process(
        "check", "--only", "host.os", "--format", "json", env={"XDG_DATA_HOME": str(tmp_path)}
    ).json
    good[field] = value
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(good))
    for args in (
        ("report", str(damaged)),
        ("bundle", str(damaged), "--out", str(tmp_path / "b.zip")),
    ):
        r = cli_process(*args)
        assert r.code == 64, (args, r.code, r.err)
        assert "does not match the report schema" in r.err and "internal error" not in r.err
