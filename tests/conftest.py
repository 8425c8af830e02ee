"""Fixtures that start real peers (tests/peers). A peer that cannot start fails the test.

Also keeps "every check has a test" honest: the session records each check a test runs (through
the runner, in-process or in a `python -m diag` child, or by calling its function directly) and a
full run of the suite fails if a registered check never ran to a verdict (pass, warn or fail).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from peers.dnsmasq import DnsmasqFactory
from peers.kamailio import Kamailio
from peers.netns import NetnsPair
from peers.process import PeerStartError
from peers.pulse import Pulse
from peers.sipp import Sipp, SippFactory
from peers.stun import Stun

from checks import REGISTRY
from diag.model import CheckResult, Status
from diag.runner import RECORD_ENV, record_run

T = TypeVar("T")
PEER_FIXTURES = frozenset({"kamailio", "sipp_uas", "netns_pair", "pulse", "stun", "dnsmasq"})
LOG_LINES_ON_FAILURE = 40
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """match's columnar cache of timelines (and anything else cached) goes to the session's
    temporary directory, in-process and in child processes, never the user's ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = previous


@dataclass
class _ChecksRun:
    """Where this session records the checks its tests run, and what it selected."""

    path: Path
    env_before: str | None  # RECORD_ENV as it was, put back at the end
    test_files: set[Path] = field(default_factory=set)  # tests/test_*.py when collection ended
    collected: set[Path] = field(default_factory=set)  # test files with a collected test
    deselected: int = 0

    def ran_to_a_verdict(self) -> set[str]:
        """Checks that measured something: skip (not run) and error (the probe broke) do not."""
        verdicts = {Status.PASS.value, Status.WARN.value, Status.FAIL.value}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return {
            check_id
            for check_id, _, status in (line.partition(" ") for line in lines)
            if status in verdicts
        }


_CHECKS_RUN = pytest.StashKey[_ChecksRun]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: starts real peers (Kamailio, sipp, network namespaces, PulseAudio, coturn)",
    )
    fd, path = tempfile.mkstemp(prefix="sipdiag-checks-run-", suffix=".txt")
    os.close(fd)
    config.stash[_CHECKS_RUN] = _ChecksRun(Path(path), os.environ.get(RECORD_ENV))
    os.environ[RECORD_ENV] = path  # the runner appends to it; `python -m diag` children inherit it
    _record_direct_calls()


def pytest_unconfigure(config: pytest.Config) -> None:
    record = config.stash.get(_CHECKS_RUN, None)
    if record is None:
        return
    record.path.unlink(missing_ok=True)
    if record.env_before is None:
        os.environ.pop(RECORD_ENV, None)
    else:
        os.environ[RECORD_ENV] = record.env_before


def _record_direct_calls() -> None:
    """Tests that call a check's function (``check_dns(ctx)``) bypass the runner, which records
    the rest: swap each registered function for a recording one in its own module, before the
    test modules import it from there."""
    for check in REGISTRY:
        module = sys.modules[check.run.__module__]
        name = check.run.__name__
        if getattr(module, name, None) is check.run:  # else only runner runs count for it
            setattr(module, name, _recording(check.id, check.run))


def _recording(check_id: str, run: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
    @functools.wraps(run)
    def recording(*args: Any, **kwargs: Any) -> CheckResult:  # some take test seams as kwargs
        result = run(*args, **kwargs)
        if isinstance(result, CheckResult):
            record_run(check_id, result.status)
        return result

    return recording


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Any test that uses a peer fixture is an integration test, marked or not."""
    record = config.stash[_CHECKS_RUN]
    record.test_files = set(TESTS.glob("test_*.py"))  # not at the end: files may appear meanwhile
    for item in items:
        record.collected.add(item.path)
        if PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[_CHECKS_RUN].deselected += len(items)


def _whole_suite_ran(session: pytest.Session, exitstatus: int) -> bool:
    """Every test file collected, no test deselected (-k, -m, --lf) or picked by node id, and
    the tests run to the end (not --collect-only, -x, --maxfail or Ctrl-C)."""
    config = session.config
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return False
    if config.option.collectonly or session.shouldstop or session.shouldfail:
        return False
    record = config.stash[_CHECKS_RUN]
    if record.deselected or any("::" in arg for arg in config.args):
        return False
    return record.test_files <= record.collected


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a full run if no test ran some registered check to a pass, warn or fail."""
    if not _whole_suite_ran(session, exitstatus):
        return
    ran = session.config.stash[_CHECKS_RUN].ran_to_a_verdict()
    never = [c.id for c in REGISTRY if c.id not in ran]
    if not never:
        return
    message = (
        f"no test ran {', '.join(never)} to a pass, warn or fail; every registered check needs "
        "a test that runs it (through the CLI, the runner or its function) past skip and error"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")  # the progress line may still be open
        reporter.write_sep("=", "every check has a test", red=True)
        reporter.write_line(message, red=True)
    else:
        sys.stderr.write(f"{message}\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _start(what: str, start: Callable[[], T]) -> T:
    try:
        return start()
    except (PeerStartError, OSError, ValueError) as exc:
        pytest.fail(f"{what} could not start: {exc}", pytrace=False)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (network namespaces, nftables)", pytrace=False)


@pytest.fixture(scope="session")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """One Kamailio for the session on 127.0.0.1 (UDP/TCP ``port``, TLS ``tls_port``).

    Tests that change its htables or bindings through kamcmd must undo the change.
    """
    server = _start("kamailio", lambda: Kamailio.start(tmp_path_factory.mktemp("kamailio")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sipp_uas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SippFactory]:
    factory = SippFactory(tmp_path_factory.mktemp("sipp"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def netns_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsPair]:
    """Fresh agent/pbx namespaces, deleted afterwards.

    ``netns_pair.start_kamailio()`` runs Kamailio in ``pbx`` (raises PeerStartError if it cannot).
    """
    _require_root("netns_pair")
    pair = _start("network namespaces", lambda: NetnsPair.create(tmp_path_factory.mktemp("netns")))
    try:
        yield pair
    finally:
        pair.destroy()


@pytest.fixture
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    """PulseAudio with null sink ``vspeaker`` and null source ``vmic``; clients need ``.env``."""
    server = _start("pulseaudio", lambda: Pulse.start(tmp_path_factory.mktemp("pulse")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stun]:
    """coturn STUN-only on 127.0.0.1:``port`` and 127.0.0.2, alternate port ``port + 1``."""
    server = _start("turnserver (STUN)", lambda: Stun.start(tmp_path_factory.mktemp("stun")))
    try:
        yield server
    finally:
        server.stop()


def _peer_logs(value: object) -> list[Path]:
    if isinstance(value, DnsmasqFactory):
        return [server.log_path for server in value.started]
    if isinstance(value, SippFactory):
        return [p for sipp in value.started for p in (sipp.log_path, sipp.messages_path)]
    if isinstance(value, NetnsPair):
        return [] if value.kamailio is None else [value.kamailio.log_path]
    if isinstance(value, Kamailio | Sipp | Pulse | Stun):
        return [value.log_path]
    return []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, show the tail of every peer log it used."""
    report = yield
    if report.when == "call" and report.failed and isinstance(item, pytest.Function):
        for name in PEER_FIXTURES.intersection(item.funcargs):
            for path in _peer_logs(item.funcargs[name]):
                lines = path.read_text(errors="replace").splitlines() if path.exists() else []
                if lines:
                    tail = "\n".join(lines[-LOG_LINES_ON_FAILURE:])
                    report.sections.append((f"{name}: {path}", tail))
    return report


@pytest.fixture
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsmasqFactory]:
    """``dnsmasq(srv(...), host(...))`` -> a running ``Dnsmasq`` on 127.0.0.1 serving those
    records (helpers in peers.dnsmasq); a server that cannot start raises PeerStartError with
    its log, failing the test. Every one started is stopped afterwards."""
    factory = DnsmasqFactory(tmp_path_factory.mktemp("dnsmasq"))
    try:
        yield factory
    finally:
        factory.stop_all()
