"""checks/wire/sipua.py against scripted real peers (sipp): what the raw user agent of sip.inbound
and net.idle does when a registrar answers late, and when an INVITE gets nothing past 100 Trying.
Nothing may be left behind on the platform, and no phone may be left ringing."""

from __future__ import annotations

import time

from conftest import SippFactory

from checks.wire.sipua import Account, Binder, Channel, Dialogless, Server
from diag.config import Secret

ACCOUNT = Account("alice", "127.0.0.1", "alice", Secret("not-used"), "sipdiag/test")


def server_for(port: int) -> Server:
    return Server("udp", "127.0.0.1", port, "127.0.0.1")


def test_a_200_that_comes_after_we_gave_up_still_gets_its_un_register(
    sipp_uas: SippFactory,
) -> None:
    sipp = sipp_uas("ua_late_200.xml")
    server = server_for(sipp.port)
    ch = Channel(server)
    try:
        binder = Binder(ch, ACCOUNT, server, "late-test", "latetag1")
        reg = binder.register(60, time.monotonic() + 1.0)
        assert not reg.ok and reg.code is None  # no answer within our deadline ...
        assert binder.sent_contact and "sipdiag=latetag1" in binder.sent_contact
        time.sleep(0.5)  # sipp cannot take a request during its pause; a registrar can
        assert binder.unregister(time.monotonic() + 5.0) is True  # ... yet it is removed
    finally:
        ch.close()
    assert sipp.wait(10) == 0, sipp.errors()  # the scenario saw Expires: 0


def test_an_invite_left_at_100_trying_is_cancelled_and_its_487_acked(
    sipp_uas: SippFactory,
) -> None:
    sipp = sipp_uas("dial_100_only.xml")
    ch = Channel(server_for(sipp.port))
    try:
        series = Dialogless(ch, ACCOUNT, "hundred-test")
        aor = ACCOUNT.aor
        t0 = time.monotonic()
        outcome = series.send("INVITE", aor, t0 + 1.0, to_uri=aor, contact=f"<{aor}>")
        assert outcome.provisional == [100] and outcome.code is None
        assert outcome.cancelled is True
        assert time.monotonic() - t0 < 2.5  # the deadline, then about one second at most
    finally:
        ch.close()
    assert sipp.wait(10) == 0, sipp.errors()  # CANCEL received, 487 ACKed
    assert "ACK sip:" in sipp.messages()
