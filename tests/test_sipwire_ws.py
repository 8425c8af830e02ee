"""The SIP-over-WebSocket additions to checks/wire/sip.py (digest, a real REGISTER's headers) and
the proxy choice of checks/wire/ws.py: pure logic."""

from __future__ import annotations

import pytest

from checks.wire.sip import digest_authorization, match_response, parse, register_request
from checks.wire.ws import WsTarget, proxy_for

# RFC 7616 section 3.9.1: the same request answered with MD5 and with SHA-256.
RFC7616 = dict(
    method="GET",
    uri="/dir/index.html",
    username="Mufasa",
    password="Circle of Life",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    nc=1,
)
CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_matches_the_rfc_7616_examples(algorithm: str, response: str) -> None:
    value = digest_authorization(CHALLENGE.format(alg=algorithm), **RFC7616)  # type: ignore[arg-type]
    assert f'response="{response}"' in value
    assert "qop=auth, nc=00000001" in value
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in value
    assert f"algorithm={algorithm}" in value


def test_digest_without_qop_is_rfc_2069_style() -> None:
    value = digest_authorization(
        'Digest realm="pbx.test", nonce="abc"',
        method="REGISTER",
        uri="sip:pbx.test",
        username="alice",
        password="alice-secret",
        cnonce="c",
    )
    assert "qop" not in value and "nc=" not in value and value.startswith('Digest username="alice"')


@pytest.mark.parametrize(
    ("challenge", "message"),
    [
        ('Digest realm="r", nonce="n", algorithm=AKAv1-MD5', "not supported"),
        ('Digest realm="r", nonce="n", qop="auth-int"', "only auth"),
        ('Basic realm="r"', "not Digest"),
        ('Digest realm="r"', "no realm or nonce"),
    ],
)
def test_challenges_we_cannot_answer_raise(challenge: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        digest_authorization(
            challenge, method="REGISTER", uri="sip:x", username="u", password="p", cnonce="c"
        )


def test_a_real_register_over_wss_carries_contact_expires_and_keeps_its_call_id() -> None:
    raw = register_request(
        "sip:pbx.test",
        "wss",
        "abc.invalid",
        40000,
        "run-wsreg2",
        "alice",
        "pbx.test",
        "sipdiag/0.1.0",
        contact="<sip:alice@abc.invalid;transport=ws>",
        expires=60,
        authorization='Digest username="alice", response="x"',
        call_id="run-ws@abc.invalid",
        cseq=2,
    )
    msg = parse(raw.decode())
    assert msg is not None
    assert msg.first("via") == "SIP/2.0/WSS abc.invalid:40000;branch=z9hG4bKrun-wsreg2;rport"
    assert msg.first("call-id") == "run-ws@abc.invalid"
    assert msg.first("cseq") == "2 REGISTER"
    assert msg.first("contact") == "<sip:alice@abc.invalid;transport=ws>"
    assert msg.first("expires") == "60"
    assert msg.first("authorization") is None  # parse() never keeps credentials
    assert b"Authorization: Digest" in raw
    answer = raw.decode().replace("REGISTER sip:pbx.test SIP/2.0", "SIP/2.0 200 OK", 1).encode()
    assert match_response(answer, "run-wsreg2", "REGISTER", "run-ws@abc.invalid") is not None
    assert match_response(answer, "run-wsreg2", "REGISTER", "other@abc.invalid") is None
    assert match_response(answer, "run-wsreg3", "REGISTER", "run-ws@abc.invalid") is None


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="one line"):
        register_request(
            "sip:pbx.test", "ws", "a.invalid", 1, "p", "alice", "pbx.test", "ua",
            contact="<sip:a@b>\r\nX-Evil: 1",
        )  # fmt: skip


WSS = WsTarget.parse("wss://sip.example.com:7443/ws")


def test_wss_uses_https_proxy_and_ws_uses_http_proxy() -> None:
    env = {"HTTPS_PROXY": "http://u:secret@proxy:3128", "http_proxy": "http://plain:8080"}
    chosen = proxy_for(WSS, env)
    assert chosen is not None
    assert chosen["url"] == "http://[redacted]@proxy:3128" and chosen["source"] == "HTTPS_PROXY"
    ws = proxy_for(WsTarget.parse("ws://sip.example.com/ws"), env)
    assert ws is not None and ws["url"] == "http://plain:8080"


def test_no_proxy_exempts_a_domain() -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com"}
    assert proxy_for(WSS, env) is None
    assert proxy_for(WsTarget.parse("wss://sip.other.org/"), env) is not None
