"""Building our OPTIONS and challenge-only REGISTER and matching their answers (pure; captured
answers in tests/data/sipwire/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from checks.wire.sip import (
    header_list,
    host_literal,
    match_response,
    message_length,
    options_request,
    parse,
    probe_id,
    reason_phrase,
    register_request,
    status_code,
    top_via,
)

DATA = Path(__file__).parent / "data" / "sipwire"
RUN_ID = "5f0c2d9e-7b1a-4c3e-9d2f-0a1b2c3d4e5f"
PID = f"{RUN_ID}-udp"
UA = f"sipdiag/0.1.0 run={RUN_ID}"


def captured(name: str) -> bytes:
    """A captured answer; the files keep LF line ends, the wire has CRLF."""
    return (DATA / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def headers(raw: bytes) -> list[str]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and body == b""
    return head.decode().split("\r\n")


def test_options_carries_the_probe_id_in_branch_tag_and_call_id_and_the_run_user_agent() -> None:
    raw = options_request("sip:pbx.test:5060", "udp", "192.0.2.10", 40112, PID, UA)
    assert headers(raw) == [
        "OPTIONS sip:pbx.test:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:40112;branch=z9hG4bK{PID};rport",
        "Max-Forwards: 70",
        f"From: <sip:sipdiag@192.0.2.10>;tag={PID}",
        "To: <sip:pbx.test:5060>",
        f"Call-ID: {PID}@192.0.2.10",
        "CSeq: 1 OPTIONS",
        "Contact: <sip:sipdiag@192.0.2.10:40112;transport=udp>",
        f"User-Agent: {UA}",
        "Accept: application/sdp",
        "Content-Length: 0",
    ]


def test_options_over_tls_names_tls_in_via_and_contact() -> None:
    lines = headers(options_request("sip:pbx.test:5061;transport=tls", "TLS", "h", 1, "p", UA))
    assert "Via: SIP/2.0/TLS h:1;branch=z9hG4bKp;rport" in lines
    assert "Contact: <sip:sipdiag@h:1;transport=tls>" in lines


def test_ipv6_local_hosts_are_bracketed_once() -> None:
    for host in ("2001:db8::7", "[2001:db8::7]"):
        lines = headers(options_request("sip:[2001:db8::1]", "tcp", host, 5062, "p", UA))
        assert "Via: SIP/2.0/TCP [2001:db8::7]:5062;branch=z9hG4bKp;rport" in lines
        assert "Call-ID: p@[2001:db8::7]" in lines
    assert host_literal("pbx.test") == "pbx.test"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sip:x", "sctp", "h", 1, "p", UA), "unknown transport 'sctp'; use one of udp, tcp, tls"),
        (
            ("tel:+4420", "udp", "h", 1, "p", UA),
            "target URI 'tel:+4420' is not a sip: or sips: URI",
        ),
        (("sip:x y", "udp", "h", 1, "p", UA), "target URI 'sip:x y' contains a space"),
        (("sip:x", "udp", "h", 0, "p", UA), "local port 0 is not from 1 to 65535"),
        (("sip:x", "udp", "h", 70000, "p", UA), "local port 70000 is not from 1 to 65535"),
        (("sip:x", "udp", "h", 1, "", UA), "probe id is empty"),
        (("sip:x", "udp", "h", 1, "a b", UA), "probe id 'a b' has characters outside the SIP"),
        (("sip:x", "udp", "h", 1, "p", "ua\r\nX: injected"), "User-Agent must be non-empty"),
        (("sip:x", "udp", "fe80::1::2", 1, "p", UA), "'fe80::1::2' is neither a host name"),
        (("sip:x", "udp", "a;b", 1, "p", UA), "invalid host 'a;b'"),
    ],
)
def test_malformed_request_input_is_a_precise_value_error(
    args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        options_request(*args)
    assert str(raised.value).startswith(message)


def test_probe_id_joins_run_id_and_label_and_refuses_what_a_branch_cannot_hold() -> None:
    assert probe_id(RUN_ID, "tls") == f"{RUN_ID}-tls"
    with pytest.raises(ValueError, match="longer than 64 characters"):
        probe_id(RUN_ID * 2, "udp")
    with pytest.raises(ValueError, match="outside the SIP token set"):
        probe_id(RUN_ID, "udp;x")


def test_our_answer_matches_and_gives_code_reason_via_and_allow() -> None:
    msg = match_response(captured("options_200_keepalive.txt"), PID)
    assert msg is not None
    assert (status_code(msg), reason_phrase(msg)) == (200, "Keepalive")
    assert top_via(msg) == (
        f"SIP/2.0/UDP 10.0.0.5:40112;branch=z9hG4bK{PID};rport=40112;received=203.0.113.9"
    )
    assert header_list(msg, "allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"]
    assert msg.first("server") == "testbed-pbx"


def test_an_alg_rewriting_the_call_id_host_still_matches() -> None:
    raw = captured("options_200_keepalive.txt").replace(b"@10.0.0.5", b"@203.0.113.9")
    assert match_response(raw, PID) is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (f"branch=z9hG4bK{PID}".encode(), b"branch=z9hG4bKsomeone-else"),  # not our transaction
        (f"Call-ID: {PID}@".encode(), b"Call-ID: other@"),  # same branch, other call
        (f"branch=z9hG4bK{PID};".encode(), b""),  # no branch at all
    ],
)
def test_an_answer_to_another_request_does_not_match(old: bytes, new: bytes) -> None:
    raw = captured("options_200_keepalive.txt")
    assert old in raw
    assert match_response(raw.replace(old, new), PID) is None


def test_only_the_top_via_counts() -> None:
    raw = captured("options_200_keepalive.txt").replace(
        b"Via: SIP/2.0/UDP 10.0.0.5",
        b"Via: SIP/2.0/UDP proxy;branch=z9hG4bKp1, SIP/2.0/UDP 10.0.0.5",
    )
    assert match_response(raw, PID) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "no start line"),
        (b"OPTIONS sip:agent SIP/2.0\r\nCall-ID: x\r\n\r\n", "not a SIP response status line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "not a SIP response status line"),
        (b"SIP/2.0 700 Beyond\r\n\r\n", "not a SIP response status line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "not a SIP response status line: 'HTTP/1.1 200 OK'"),
    ],
)
def test_what_is_not_a_sip_response_is_a_precise_value_error(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        match_response(raw, PID)
    assert str(raised.value).startswith(message)


def test_a_reason_phrase_may_be_empty() -> None:
    msg = parse("SIP/2.0 200\r\n\r\n")
    assert msg is not None and (status_code(msg), reason_phrase(msg)) == (200, "")


def test_stream_framing_waits_for_the_head_and_the_body() -> None:
    answer = captured("options_200_keepalive.txt")
    assert message_length(answer[:-3]) is None
    assert message_length(answer) == len(answer)
    assert message_length(answer + b"SIP/2.0 100") == len(answer)  # the next one starts
    with_body = b"SIP/2.0 200 OK\r\nl: 4\r\n\r\nv=0\n"
    assert message_length(with_body[:-1]) is None and message_length(with_body) == len(with_body)
    assert message_length(b"SIP/2.0 200 OK\r\n\r\n") == 18  # no Content-Length: empty body


def test_stream_framing_refuses_a_bad_length_or_endless_headers() -> None:
    with pytest.raises(ValueError, match="invalid Content-Length '-1'"):
        message_length(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(ValueError, match="no end of headers within 65536 bytes"):
        message_length(b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 11000)


# The challenge-only REGISTER (a binding query)

REG_PID = f"{RUN_ID}-udp-q"


def test_register_is_a_binding_query_without_contact_expires_or_credentials() -> None:
    raw = register_request(
        "sip:pbx.test:5060", "udp", "192.0.2.10", 40112, REG_PID, "alice", "pbx.test", UA
    )
    assert headers(raw) == [
        "REGISTER sip:pbx.test:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:40112;branch=z9hG4bK{REG_PID};rport",
        "Max-Forwards: 70",
        f"From: <sip:alice@pbx.test>;tag={REG_PID}",
        "To: <sip:alice@pbx.test>",
        f"Call-ID: {REG_PID}@192.0.2.10",
        "CSeq: 1 REGISTER",
        f"User-Agent: {UA}",
        "Content-Length: 0",
    ]


def test_register_over_tls_to_an_ipv6_domain_names_tls_and_brackets_the_domain() -> None:
    raw = register_request(
        "sip:[::1]:5061;transport=tls", "tls", "::1", 5062, "p", "1001", "::1", UA
    )
    lines = headers(raw)
    assert lines[0] == "REGISTER sip:[::1]:5061;transport=tls SIP/2.0"
    assert "Via: SIP/2.0/TLS [::1]:5062;branch=z9hG4bKp;rport" in lines
    assert "To: <sip:1001@[::1]>" in lines
    assert not any(line.lower().startswith(("contact:", "m:", "expires:")) for line in lines)


@pytest.mark.parametrize(
    ("user", "domain", "message"),
    [
        ("", "pbx.test", "user '' is empty or has characters outside a SIP user part"),
        ("al ice", "pbx.test", "user 'al ice' is empty or has characters outside"),
        ("alice@x", "pbx.test", "user 'alice@x' is empty or has characters outside"),
        ("alice>", "pbx.test", "user 'alice>' is empty or has characters outside"),
        ("alice", "pbx.test>", "invalid host 'pbx.test>'"),
        ("alice", "", "invalid host ''"),
    ],
)
def test_register_refuses_a_user_or_domain_that_cannot_be_in_the_address_of_record(
    user: str, domain: str, message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        register_request("sip:pbx.test", "udp", "h", 1, "p", user, domain, UA)
    assert str(raised.value).startswith(message)


def test_register_checks_the_same_request_inputs_as_options() -> None:
    with pytest.raises(ValueError, match="unknown transport 'sctp'"):
        register_request("sip:x", "sctp", "h", 1, "p", "alice", "x", UA)
    with pytest.raises(ValueError, match="probe id 'a b' has characters outside"):
        register_request("sip:x", "udp", "h", 1, "a b", "alice", "x", UA)


def register_answer(cseq: str = "1 REGISTER") -> bytes:
    lines = [
        "SIP/2.0 401 Unauthorized",
        f"Via: SIP/2.0/UDP 10.0.0.5:40112;branch=z9hG4bK{REG_PID};rport=40112;received=10.0.0.5",
        f"From: <sip:alice@pbx.test>;tag={REG_PID}",
        "To: <sip:alice@pbx.test>;tag=b27e1a1d33761e85846fc98f5f3a7e58.0e3d",
        f"Call-ID: {REG_PID}@10.0.0.5",
        f"CSeq: {cseq}",
        'WWW-Authenticate: Digest realm="pbx.test", nonce="ZmFrZQ==", qop="auth"',
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_register_answer_matches_by_probe_id_and_if_asked_by_its_cseq_method() -> None:
    msg = match_response(register_answer(), REG_PID, "REGISTER")
    assert msg is not None and status_code(msg) == 401
    assert match_response(register_answer(), REG_PID) is not None  # no method: any CSeq
    assert match_response(register_answer(), REG_PID, "OPTIONS") is None
    assert match_response(register_answer("1 OPTIONS"), REG_PID, "REGISTER") is None
    assert match_response(register_answer("garbled"), REG_PID, "REGISTER") is None
