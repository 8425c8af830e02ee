"""Parsing the registrar the user names, and the transports that follow from it."""

from __future__ import annotations

import pytest

from diag.config import Settings
from diag.target import Registrar, parse_registrar


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pbx.example.com", Registrar("sip", "pbx.example.com", None, None)),
        ("pbx.example.com:5080", Registrar("sip", "pbx.example.com", 5080, None)),
        ("sip:10.0.0.1;transport=TCP", Registrar("sip", "10.0.0.1", None, "tcp")),
        ("sips:pbx.example.com:5061", Registrar("sips", "pbx.example.com", 5061, None)),
        ("SIP:alice@pbx.example.com;lr", Registrar("sip", "pbx.example.com", None, None, ("lr",))),
        ("[::1]:5999", Registrar("sip", "::1", 5999, None)),
        ("sip:[2001:db8::1]", Registrar("sip", "2001:db8::1", None, None)),
    ],
)
def test_registrar_forms_parse(text: str, expected: Registrar) -> None:
    assert parse_registrar(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "sip:", "foo bar", "host:0", "host:65536", "host:x", "[::1", "[nothost]:5060", "[::1]x"],
)
def test_bad_registrars_raise_a_readable_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_registrar(text)


def test_the_uri_for_a_transport_replaces_the_configured_transport() -> None:
    r = parse_registrar("sip:pbx.example.com:5070;transport=tcp;lr")
    assert r.uri("udp") == "sip:pbx.example.com:5070;lr"
    assert r.uri("tls") == "sip:pbx.example.com:5070;lr;transport=tls"
    assert parse_registrar("[::1]:5999").uri("tcp") == "sip:[::1]:5999;transport=tcp"


def test_transports_come_from_flags_then_the_uri_then_the_scheme() -> None:
    assert Settings(registrar="pbx").effective_transports == ("udp",)
    assert Settings(registrar="sip:pbx;transport=tcp").effective_transports == ("tcp",)
    assert Settings(registrar="sips:pbx").effective_transports == ("tls",)
    assert Settings(registrar="pbx", transports=("tcp", "udp", "tcp")).effective_transports == (
        "tcp",
        "udp",
    )


def test_the_account_uri_uses_the_domain_or_the_registrar_host() -> None:
    assert Settings(registrar="sip:10.0.0.1:5070", user="alice").sip_uri == "sip:alice@10.0.0.1"
    assert Settings(registrar="[::1]:5070", user="a").sip_uri == "sip:a@[::1]"
    assert Settings(registrar="x", user="a", domain="cc.example").sip_uri == "sip:a@cc.example"
