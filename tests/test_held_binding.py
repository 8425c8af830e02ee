"""The watch's own binding (checks/sip/held.py) against a scripted real registrar (sipp): it
honours 423 Min-Expires, backs off after 503 as Retry-After says, refreshes at half the granted
time, and its un-REGISTER is the last thing the registrar sees."""

from __future__ import annotations

import time

from conftest import SippFactory

from checks.sip.held import HeldBinding
from checks.wire.sipua import Account, Server
from diag.config import Secret

ACCOUNT = Account("alice", "127.0.0.1", "alice", Secret("not-used"), "sipdiag/test")


def test_423_min_expires_then_503_retry_after_backs_off_and_close_unregisters(
    sipp_uas: SippFactory,
) -> None:
    sipp = sipp_uas("held_423_503.xml")
    held = HeldBinding(Server("udp", "127.0.0.1", sipp.port, "127.0.0.1"), ACCOUNT, "w" * 36, 2.0)
    try:
        first = held.register(time.monotonic() + 2.0)
        assert first.ok and first.code == 200, first
        assert first.expires == 300  # asked for 120, the registrar wanted at least 300
        assert held.listener is not None  # answering OPTIONS on the binding's socket
        assert not held.refresh_due(first.at + 149)
        assert held.refresh_due(first.at + 150)  # half the granted time
        second = held.refresh(time.monotonic() + 2.0)
        assert not second.ok and second.code == 503
        assert second.retry_after == 7
        assert not held.ok
        assert not held.refresh_due(second.at + 6.9)
        assert held.refresh_due(second.at + 7)
    finally:
        removed = held.close()
    assert removed is True
    assert sipp.wait(10) == 0, sipp.errors()  # 300 asked for after the 423; Expires: 0 last


def test_without_retry_after_the_backoff_doubles_and_is_capped() -> None:
    held = HeldBinding.__new__(HeldBinding)
    held.failures, held.clock, held.listener, held.registration = 0, time.monotonic, None, None
    held.maybe_bound = False

    class NoAnswer:
        last_outcome = None

    held.binder = NoAnswer()  # type: ignore[assignment]
    waits = [held._record(None, None, None, None).retry_after for _ in range(7)]
    assert waits == [30, 60, 120, 240, 480, 900, 900]
    assert held._record(200, "OK", 120, None).ok and held.failures == 0
