"""The runner is the failure firewall: crashes, overruns and dependencies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from clihelp import cli
from contexts import make_context

from diag.context import Check, Context
from diag.model import CheckResult, Status, passed
from diag.runner import run_checks, select_checks
from diag.settings import REGISTRAR, USER

release = threading.Event()


@pytest.fixture
def released() -> Iterator[None]:
    """Sleepy probes wait on ``release``: set it when the test ends, pass or fail, and clear it
    before the next, so no probe wakes early or sleeps on into the next test."""
    release.clear()
    try:
        yield
    finally:
        release.set()


def _boom(ctx: Context) -> CheckResult:
    raise ValueError("probe exploded")


def _sleepy(ctx: Context) -> CheckResult:
    release.wait(30)  # an overrunning probe; released when the test ends (the fixture)
    return passed("woke up")


def _ok(ctx: Context) -> CheckResult:
    return passed("fine")


def test_a_crashing_check_is_an_error_and_the_rest_complete_with_exit_1() -> None:
    registry = [Check("host.boom", "Boom works", _boom), Check("host.ok", "Ok works", _ok)]
    r = cli("check", "--format", "json", registry=registry)
    assert r.code == 1
    by_id = {c["id"]: c for c in r.json["checks"]}
    assert by_id["host.boom"]["status"] == "error"
    assert "ValueError: probe exploded" in by_id["host.boom"]["summary"]
    assert by_id["host.ok"]["status"] == "pass"
    assert r.saved_report()["run_id"] == r.json["run_id"]
    assert "Traceback" not in r.err


def test_debug_shows_the_traceback_of_a_crashed_probe() -> None:
    r = cli("check", "--debug", registry=[Check("host.boom", "Boom works", _boom)])
    assert "Traceback" in r.err and "probe exploded" in r.err


@pytest.mark.usefixtures("released")
def test_an_overrunning_check_times_out_while_the_rest_complete() -> None:
    registry = [
        Check("host.slow", "Slow works", _sleepy, timeout=0.3),
        Check("host.ok", "Ok works", _ok),
    ]
    t0 = time.monotonic()
    r = cli("check", "--format", "json", "--timeout", "5", registry=registry)
    assert time.monotonic() - t0 < 2
    by_id = {c["id"]: c for c in r.json["checks"]}
    assert by_id["host.slow"]["status"] == "error"
    assert by_id["host.slow"]["summary"].startswith("timed out after 0.")
    assert by_id["host.ok"]["status"] == "pass"
    assert r.code == 1


@pytest.mark.usefixtures("released")
def test_the_whole_run_honours_timeout() -> None:
    registry = [Check("host.slow", "Slow works", _sleepy, timeout=None)]
    t0 = time.monotonic()
    r = cli("check", "--format", "json", "--timeout", "0.5", registry=registry)
    assert 0.4 < time.monotonic() - t0 < 1.5
    check = r.json["checks"][0]
    assert check["status"] == "error" and "timed out" in check["summary"]
    assert check["hint"] == "re-run with a larger --timeout"


def test_checks_run_concurrently() -> None:
    def slow(ctx: Context) -> CheckResult:
        time.sleep(0.4)
        return passed("done")

    checks = [Check(f"host.s{i}", "S works", slow) for i in range(4)]
    t0 = time.monotonic()
    outcome = run_checks(checks, make_context(), 5)
    assert time.monotonic() - t0 < 1.2  # 4 x 0.4 s sequentially would be 1.6 s
    assert all(r.result.status is Status.PASS for r in outcome.runs)


def test_a_check_waits_for_the_checks_it_reads() -> None:
    def first(ctx: Context) -> CheckResult:
        time.sleep(0.2)
        return passed("first", value=42)

    def second(ctx: Context) -> CheckResult:
        return passed("second", saw=ctx.results["host.a"].details["value"])

    checks = [
        Check("host.b", "B works", second, after=("host.a",)),
        Check("host.a", "A works", first),
    ]
    outcome = run_checks(checks, make_context(), 5)
    assert [r.check.id for r in outcome.runs] == ["host.b", "host.a"]  # registry order kept
    assert outcome.runs[0].result.details["saw"] == 42


def test_missing_settings_skip_with_the_reason() -> None:
    checks = [Check("sip.x", "X works", _ok, requires=(REGISTRAR, USER))]
    result = run_checks(checks, make_context(), 5).runs[0].result
    assert (result.status, result.summary) == (Status.SKIP, "no registrar configured")
    assert result.hint == "pass --registrar or set registrar in the profile"
    result = run_checks(checks, make_context(registrar="sip:pbx"), 5).runs[0].result
    assert result.summary == "no SIP user configured"


def test_only_and_skip_take_ids_and_family_prefixes() -> None:
    from checks import REGISTRY

    ids = [c.id for c in select_checks(REGISTRY, ("host",), ("host.clock",))]
    assert ids and all(i.startswith("host.") for i in ids) and "host.clock" not in ids
    assert [c.id for c in select_checks(REGISTRY, ("sip.register",), ())] == ["sip.register"]
