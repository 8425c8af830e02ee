"""Reading raw SIP answers (captured exchanges in tests/data/sip/)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from checks.wire.sip import parse, parse_date, via_received

DATA = Path(__file__).parent / "data" / "sip"


def test_a_403_with_warning_parses_with_compact_and_folded_headers() -> None:
    msg = parse((DATA / "register_403_warning.txt").read_text().replace("\n", "\r\n"))
    assert msg is not None
    assert msg.start_line == "SIP/2.0 403 Forbidden"
    assert msg.first("call-id") == "a84b4c76e66710@198.51.100.7"  # from compact "i:"
    assert msg.all("warning") == ['399 pbx.test "Wrong password for alice"']
    assert msg.first("server") == "testbed-pbx (folded onto two lines)"
    assert msg.first("date") == "Fri, 27 Nov 2026 04:10:00 GMT"


def test_credentials_are_never_kept() -> None:
    raw = (
        'REGISTER sip:pbx SIP/2.0\r\nAuthorization: Digest response="abc"\r\n'
        'Proxy-Authorization: Digest response="def"\r\nCSeq: 2 REGISTER\r\n\r\n'
    )
    msg = parse(raw)
    assert msg is not None
    assert "authorization" not in msg.headers and "proxy-authorization" not in msg.headers
    assert "abc" not in repr(msg) and msg.first("cseq") == "2 REGISTER"


def test_an_empty_message_is_none() -> None:
    assert parse("") is None


def test_via_received_and_rport_give_the_source_the_server_saw() -> None:
    via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.9;rport=40112"
    assert via_received(via) == ("203.0.113.9", 40112)
    assert via_received("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport") == (None, None)


def test_date_header_parses_as_utc() -> None:
    assert parse_date("Fri, 27 Nov 2026 04:10:00 GMT") == dt.datetime(
        2026, 11, 27, 4, 10, tzinfo=dt.timezone.utc
    )
    assert parse_date("not a date") is None
