"""Fixtures that start real peers (tests/peers). A peer that cannot start fails the test."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from peers.dnsmasq import DnsmasqFactory
from peers.kamailio import Kamailio
from peers.netns import NetnsPair
from peers.process import PeerStartError
from peers.pulse import Pulse
from peers.sipp import Sipp, SippFactory
from peers.stun import Stun

T = TypeVar("T")
PEER_FIXTURES = frozenset({"kamailio", "sipp_uas", "netns_pair", "pulse", "stun", "dnsmasq"})
LOG_LINES_ON_FAILURE = 40


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: starts real peers (Kamailio, sipp, network namespaces, PulseAudio, coturn)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Any test that uses a peer fixture is an integration test, marked or not."""
    for item in items:
        if PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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
