"""Fuzzing the wire layer (issue 16): SIP messages and headers, STUN datagrams, what a WebSocket
brings in, DNS answers as resolve() consumes them, and text cleaning. Each property says which
exceptions may escape (the documented ones) and what a valid output is; the profile's deadline
bounds each example's time (tests/fuzzprofile.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import struct
from collections.abc import Callable
from typing import Any

import fuzzprofile  # noqa: F401 - loads the Hypothesis profile
from hypothesis import assume, example, given
from hypothesis import strategies as st

from checks.wire import dns as wiredns
from checks.wire import sip, ws
from checks.wire import stun as wirestun
from checks.wire import text as wiretext
from diag.target import is_hostname, not_unicast, parse_registrar

# ---- SIP-shaped text: mostly messages a parser could meet, mutated, plus arbitrary text

SIP_CHARS = st.sampled_from(list(' \t\r\n:;,="<>@[]\\/.-_+*%!~') + ["é", "\ufffd", "\x00"])
SIP_TEXT = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), SIP_CHARS, st.sampled_from("azAZ09")),
    max_size=60,
)
HEADER_NAMES = st.sampled_from(
    [
        "Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m",
        "Content-Length", "l", "Content-Type", "c", "WWW-Authenticate", "Proxy-Authenticate",
        "Authorization", "Proxy-Authorization", "Date", "Expires", "Allow", "Supported",
        "Warning", "Server", "User-Agent", "Retry-After", "k",
    ]
)  # fmt: skip
PROBE = "run1-probe"


@st.composite
def header_values(draw: st.DrawFn) -> str:
    """A header value: one of the shapes SIP uses, with random parts."""
    part = draw(SIP_TEXT)
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return f"SIP/2.0/UDP {part};branch={sip.MAGIC_COOKIE}{PROBE};received={part};rport={part}"
    if shape == 1:
        return f"{PROBE}@{part}"
    if shape == 2:
        return f'Digest realm="{part}", nonce="{draw(SIP_TEXT)}", algorithm={draw(SIP_TEXT)}'
    if shape == 3:
        return f"<sip:{part}>;expires={draw(SIP_TEXT)};q={draw(SIP_TEXT)}, {draw(SIP_TEXT)}"
    if shape == 4:
        return f"{draw(st.integers(-5, 2**40))} {draw(st.sampled_from(['REGISTER', 'OPTIONS']))}"
    return part


@st.composite
def sip_texts(draw: st.DrawFn) -> str:
    """A SIP message as text: start line, headers (some folded), blank line, body; or noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    code = draw(st.one_of(st.integers(0, 999), st.just(200), st.just(401)))
    start = draw(
        st.one_of(
            st.just(f"SIP/2.0 {code} {draw(SIP_TEXT)}"),
            st.just(f"SIP/2.0 {code}"),
            st.just(f"OPTIONS sip:{draw(SIP_TEXT)} SIP/2.0"),
            SIP_TEXT,
        )
    )
    eol = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    lines = [start]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.one_of(HEADER_NAMES, SIP_TEXT))
        lines.append(
            f"{name}{draw(st.sampled_from([':', ': ', ' : ', '']))}{draw(header_values())}"
        )
        if draw(st.integers(0, 4)) == 0:  # a folded continuation line
            lines.append(draw(st.sampled_from([" ", "\t"])) + draw(SIP_TEXT))
    return eol.join(lines) + draw(st.sampled_from(["\r\n\r\n", "\r\n", ""])) + draw(SIP_TEXT)


def _sip_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        sip_texts().map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=300),
    )


def _assert_utf8(*values: object) -> None:
    for value in values:
        if isinstance(value, str):
            value.encode("utf-8")


def _assert_message(msg: sip.SipMessage) -> None:
    """What every parsed message holds: one-line start line and values, lower-case names,
    never a credential header."""
    assert msg.start_line and msg.start_line == msg.start_line.strip()
    assert "\n" not in msg.start_line
    for name, values in msg.headers.items():
        assert name == name.lower() and name not in sip.SECRET_HEADERS
        assert values and all("\n" not in v for v in values)


@given(sip_texts())
def test_parse_reads_any_text_into_a_message_or_none(raw: str) -> None:
    msg = sip.parse(raw)
    if msg is not None:
        _assert_message(msg)
        for name in msg.headers:
            assert msg.first(name) == msg.all(name)[0]
        sip.top_via(msg)
        sip.header_list(msg, "allow")
        sip.parse_bindings(msg.all("contact"))


SECRET = "deadbeef0123secret"


@given(
    st.sampled_from(["Authorization", "Proxy-Authorization", "authorization"]),
    st.lists(st.tuples(st.sampled_from([" ", "\t"]), SIP_TEXT), max_size=3),
    sip_texts(),
)
@example("Authorization", [(" ", "")], "")  # found by this test: the folded line was kept
@example("Authorization", [(" ", "\n:"), (" ", "")], "")  # found by the bench: an empty name
def test_parse_never_keeps_a_credential_header_even_folded(
    name: str, folds: list[tuple[str, str]], rest: str
) -> None:
    """The digest response (and anything on its folded lines) is in no header and no name."""
    assume(SECRET not in rest)
    head, sep, body = rest.partition("\r\n\r\n")
    lines = [f'{name}: Digest username="a", response="{SECRET}"']
    lines += [f'{ws_}uri="sip:x", response="{SECRET}" {t}' for ws_, t in folds]
    msg = sip.parse("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\n" + head + sep + body)
    assert msg is not None
    kept = [msg.start_line, *msg.headers, *(v for vs in msg.headers.values() for v in vs)]
    assert not any(SECRET in text for text in kept)


@given(_sip_bytes())
def test_parse_response_gives_a_response_or_a_value_error(raw: bytes) -> None:
    try:
        msg = sip.parse_response(raw)
    except ValueError:
        return
    _assert_message(msg)
    _assert_utf8(msg.start_line, *msg.headers, msg.body)
    assert 100 <= sip.status_code(msg) <= 699
    _assert_utf8(sip.reason_phrase(msg))


@given(_sip_bytes(), st.sampled_from([None, "OPTIONS", "REGISTER"]), st.sampled_from([None, "x"]))
def test_match_response_answers_ours_none_or_a_value_error(
    raw: bytes, method: str | None, call_id: str | None
) -> None:
    try:
        msg = sip.match_response(raw, PROBE, method, call_id)
    except ValueError:  # UnusableAnswer is one
        return
    if msg is not None:
        via = sip.top_via(msg)
        assert via is not None and f"{sip.MAGIC_COOKIE}{PROBE}" in via
        assert 100 <= sip.status_code(msg) <= 699


@given(
    st.one_of(
        _sip_bytes(),
        st.builds(
            lambda head, length, body: head + b"\r\nContent-Length: " + length + b"\r\n\r\n" + body,
            st.binary(max_size=40),
            st.one_of(st.integers(0, 2**70).map(lambda n: str(n).encode()), st.binary(max_size=8)),
            st.binary(max_size=80),
        ),
    )
)
def test_message_length_frames_a_stream_or_raises_value_error(buffer: bytes) -> None:
    try:
        n = sip.message_length(buffer)
    except ValueError:
        return
    assert n is None or 4 <= n <= len(buffer)


@given(st.one_of(SIP_TEXT, st.text(max_size=80)))
def test_header_helpers_take_any_value(value: str) -> None:
    received, rport = sip.via_received(value)
    assert rport is None or rport >= 0
    _assert_utf8(received)
    date = sip.parse_date(value)
    assert date is None or date.tzinfo is not None
    challenge = sip.parse_challenge(value)
    assert set(challenge) == {"scheme", "realm", "algorithm", "qop"}
    scheme, params = sip.challenge_params(value)
    assert all(k == k.lower() for k in params)


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), timezones=st.just(dt.timezone.utc)))
def test_parse_date_reads_back_what_rfc_1123_writes(when: dt.datetime) -> None:
    import email.utils

    text = email.utils.format_datetime(when.replace(microsecond=0), usegmt=True)
    assert sip.parse_date(text) == when.replace(microsecond=0)


@given(st.lists(st.one_of(header_values(), SIP_TEXT), max_size=4))
def test_parse_bindings_takes_any_contact_values(values: list[str]) -> None:
    for b in sip.parse_bindings(values):
        assert b.contact and b.contact != "*"
        assert b.expires is None or isinstance(b.expires, int)
        assert b.q is None or isinstance(b.q, float)
        assert b.ours == (";sipdiag=" in b.contact)


@given(header_values(), SIP_TEXT, SIP_TEXT, st.integers(0, 2**33))
def test_digest_authorization_answers_or_raises_value_error(
    challenge: str, uri: str, password: str, nc: int
) -> None:
    try:
        value = sip.digest_authorization(
            challenge, method="REGISTER", uri=uri, username="alice", password=password,
            cnonce="c", nc=nc,
        )  # fmt: skip
    except ValueError:
        return
    assert value.startswith("Digest ") and 'response="' in value


# ---- our requests read back by the same codec

TOKEN = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=20)
HOSTS = st.one_of(
    st.sampled_from(["sip.example.com", "192.0.2.1", "[2001:db8::1]", "2001:db8::2"]),
    st.ip_addresses().map(str),
)
USERS = st.text(alphabet="abcXYZ019-_.!~*'()%&=+$,;?/", min_size=1, max_size=20)


@given(
    st.sampled_from(list(sip.TRANSPORTS)),
    HOSTS,
    st.integers(1, 65535),
    TOKEN,
    USERS,
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\0"), min_size=1),
    st.booleans(),
)
def test_our_requests_parse_back_with_every_field_we_wrote(
    transport: str, host: str, port: int, probe: str, user: str, agent: str, register: bool
) -> None:
    if register:
        raw = sip.register_request(
            "sip:registrar.example.com", transport, host, port, probe, user, host, agent
        )
    else:
        raw = sip.options_request("sip:registrar.example.com", transport, host, port, probe, agent)
    msg = sip.parse(raw.decode())
    assert msg is not None
    assert msg.start_line.split()[0] == ("REGISTER" if register else "OPTIONS")
    assert sip.message_length(raw) == len(raw)
    assert msg.first("user-agent") == agent.strip()
    assert f"branch={sip.MAGIC_COOKIE}{probe}" in (sip.top_via(msg) or "")
    # The registrar's answer echoes Via, Call-ID and CSeq: it matches, and only for us.
    echoed = [f"{h}: {msg.first(h)}" for h in ("via", "call-id", "cseq")]
    answer = ("\r\n".join(["SIP/2.0 200 OK", *echoed]) + "\r\n\r\n").encode()
    method = "REGISTER" if register else "OPTIONS"
    assert sip.match_response(answer, probe, method) is not None
    assert sip.match_response(answer, probe + "x", method) is None


# ---- STUN datagrams, as exchange_udp receives them

_ATTRIBUTES = [
    0x0001, 0x0003, 0x0006, 0x0008, 0x0009, 0x000A, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015,
    0x0016, 0x0017, 0x0019, 0x0020, 0x0024, 0x8022, 0x8028, 0x8029, 0x802A, 0x802B, 0x802C,
]  # fmt: skip


@st.composite
def stun_datagrams(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(a STUN-shaped datagram, whether to give it our request's transaction id)."""
    attrs = b""
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.one_of(st.sampled_from(_ATTRIBUTES), st.integers(0, 0xFFFF)))
        value = draw(st.binary(max_size=24))
        attrs += struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)
    message_type = draw(st.sampled_from([0x0001, 0x0101, 0x0111]) | st.integers(0, 0x3FFF))
    length = draw(st.just(len(attrs)) | st.integers(0, 0xFFFF))
    cookie = draw(st.just(0x2112A442) | st.integers(0, 2**32 - 1))
    head = struct.pack("!HHI", message_type, length, cookie) + draw(
        st.binary(min_size=12, max_size=12)
    )
    data = head + attrs + draw(st.binary(max_size=4))
    return draw(st.one_of(st.just(data), st.binary(max_size=64))), draw(st.booleans())


class _FakeUdp:
    """A UDP socket that hands out given datagrams, then times out."""

    def __init__(self, datagrams: list[bytes], ours: bool) -> None:
        self.datagrams, self.ours, self.tid = list(datagrams), ours, b""

    def sendto(self, data: bytes, target: Any) -> None:
        self.tid = data[8:20]

    def settimeout(self, value: float) -> None:
        pass

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        if not self.datagrams:
            raise TimeoutError
        data = self.datagrams.pop(0)
        if self.ours and len(data) >= 20:
            data = data[:8] + self.tid + data[20:]
        return data, ("192.0.2.9", 3478)


def _clock() -> Callable[[], float]:
    now = [0.0]

    def tick() -> float:
        now[0] += 0.05
        return now[0]

    return tick


@given(st.lists(stun_datagrams(), min_size=1, max_size=3))
# Found by this test: a 0-byte PRIORITY (0x0024) made aioice raise struct.error, not ValueError.
@example([(bytes.fromhex("000100042112a442") + bytes(12) + bytes.fromhex("00240000"), False)])
def test_stun_exchange_survives_any_datagram(datagrams: list[tuple[bytes, bool]]) -> None:
    t = wirestun.Transaction(("192.0.2.9", 3478))
    fake = _FakeUdp([d for d, _ in datagrams], any(ours for _, ours in datagrams))
    wirestun.exchange_udp(fake, [t], until=2.0, clock=_clock())  # type: ignore[arg-type]
    if t.response is not None:
        assert t.response.transaction_id == t.request.transaction_id
        mapped = t.mapped
        assert mapped is None or (isinstance(mapped[0], str) and 0 <= mapped[1] < 65536)
        _assert_utf8(wirestun.address_text(mapped))


@given(
    st.ip_addresses(),
    st.integers(0, 65535),
    st.sampled_from(["XOR-MAPPED-ADDRESS", "MAPPED-ADDRESS"]),
)
def test_a_stun_answer_we_encode_decodes_to_the_same_mapped_address(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, attribute: str
) -> None:
    from aioice import stun

    t = wirestun.Transaction(("192.0.2.9", 3478))
    answer = stun.Message(
        stun.Method.BINDING,
        stun.Class.RESPONSE,
        t.request.transaction_id,
        {attribute: (str(ip), port)},
    )
    fake = _FakeUdp([bytes(answer)], ours=False)
    wirestun.exchange_udp(fake, [t], until=2.0, clock=_clock())  # type: ignore[arg-type]
    assert t.success and t.mapped == (str(ip), port)


# ---- WebSocket: the SIP text each frame carries, and the URLs around it


class _FakeConn:
    def __init__(self, frames: list[str | bytes]) -> None:
        self.frames, self.sent = list(frames), ""

    def send(self, text: str) -> None:
        self.sent = text

    def recv(self, timeout: float) -> str | bytes:
        if not self.frames:
            raise TimeoutError
        return self.frames.pop(0)


@given(st.lists(st.one_of(sip_texts(), _sip_bytes()), max_size=4))
def test_ws_exchange_reads_any_frames_into_an_answer_or_ignores_them(
    frames: list[str | bytes],
) -> None:
    """websockets hands text frames as str (valid UTF-8) and binary frames as bytes."""
    frames = [f.encode("utf-8", "replace").decode() if isinstance(f, str) else f for f in frames]
    session = ws.WsSession(_FakeConn(frames))
    request = sip.options_request("sip:x.example.com", "wss", "192.0.2.1", 5060, PROBE, "ua")
    answer, rtt, ignored = session.exchange(request, PROBE, "OPTIONS", None, deadline=1e12)
    assert all(isinstance(why, str) for why in ignored)
    if answer is not None:
        assert sip.status_code(answer) >= 200 and rtt is not None


URL_PARTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@st.composite
def proxy_urls(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    scheme = draw(st.sampled_from(["http", "https", "socks5", "", "HTTP"]))
    user, password, host, port, path = (draw(URL_PARTS) for _ in range(5))
    host = draw(st.one_of(st.just(host), HOSTS))
    port = draw(st.one_of(st.just(port), st.integers(0, 99999).map(str)))
    return f"{scheme}://{user}:{password}@{host}:{port}{path}"


@given(proxy_urls())
@example("http://u:p@proxy:99999")  # found by this test: ValueError (port out of range)
@example("http://u:p@[2001:db8::1]:3128")  # found: the brackets were lost
def test_redact_url_takes_any_proxy_value_and_drops_its_password(value: str) -> None:
    from urllib.parse import urlsplit

    out = ws.redact_url(value)  # never raises: it is what a report shows of $HTTP_PROXY
    _assert_utf8(out)
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return
    if password:  # the whole user info is gone: the host part is "[redacted]@host:port"
        netloc = re.split(r"[/?#]", out.partition("//")[2])[0]
        assert netloc.startswith("[redacted]@") and netloc.count("@") == 1


@given(st.sampled_from(["ws", "wss", "WSS"]), proxy_urls())
def test_ws_target_parse_gives_a_target_or_value_error(scheme: str, value: str) -> None:
    url = scheme + "://" + value.partition("://")[2]
    try:
        target = ws.WsTarget.parse(url)
    except ValueError:  # a bad port; diag/config says so before a check runs
        return
    assert target.transport in ws.DEFAULT_PORTS and 0 <= target.port < 65536


# ---- DNS answers as resolve() consumes them

LABELS = st.one_of(
    st.sampled_from(["", ".", "_sip._udp.example.com", "_sips._tcp.example.com", "a..b"]),
    st.text(max_size=30),
)


@given(
    st.lists(
        st.builds(
            wiredns.NaptrRecord,
            st.integers(0, 65535),
            st.integers(0, 65535),
            st.one_of(st.sampled_from(["s", "S", "a", ""]), st.text(max_size=3)),
            st.one_of(
                st.sampled_from(list(wiredns.NAPTR_SERVICES) + ["sip+d2u"]), st.text(max_size=8)
            ),
            LABELS,
        ),
        max_size=8,
    )
)
def test_naptr_records_give_srv_names_per_known_transport(
    records: list[wiredns.NaptrRecord],
) -> None:
    names = wiredns.naptr_srv_names(records)
    assert set(names) <= {"udp", "tcp", "tls"}
    for found in names.values():
        assert found and len(set(found)) == len(found) and not set(found) & {"", "."}


@given(
    st.lists(
        st.builds(
            wiredns.SrvRecord,
            st.integers(0, 65535),
            st.integers(0, 65535),
            st.integers(0, 65535),
            LABELS,
        ),
        max_size=8,
    )
)
def test_srv_order_is_a_stable_permutation_lowest_priority_first(
    records: list[wiredns.SrvRecord],
) -> None:
    ordered = wiredns.srv_order(records)
    assert sorted(ordered) == sorted(records)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)
    assert wiredns.srv_order(list(reversed(records))) == ordered


@given(st.one_of(st.text(max_size=60), HOSTS, HOSTS.map(lambda h: f"{h}:{53}")))
def test_parse_nameserver_gives_an_ip_and_port_or_value_error(text: str) -> None:
    try:
        ip, port = wiredns.parse_nameserver(text)
    except ValueError:
        return
    ipaddress.ip_address(ip)
    assert 0 < port < 65536
    assert wiredns.hostport(ip, port).endswith(f":{port}")


# ---- the registrar the user names (diag/target.py)

REGISTRARS = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, user, host, port, params: f"{scheme}{user}{host}{port}{params}",
        st.sampled_from(["", "sip:", "sips:", "SIP:"]),
        st.sampled_from(["", "alice@", "@"]),
        st.one_of(HOSTS, st.from_regex(r"[a-z0-9_.-]{1,70}", fullmatch=True), st.text(max_size=20)),
        st.one_of(
            st.just(""),
            st.integers(-1, 70000).map(lambda p: f":{p}"),
            SIP_TEXT.map(lambda t: ":" + t),
        ),
        st.lists(
            st.sampled_from([";transport=tcp", ";lr", ";transport=", ";;", ";x=y"]), max_size=3
        ).map("".join),
    ),
)


@given(REGISTRARS)
def test_parse_registrar_gives_one_servers_address_or_value_error(text: str) -> None:
    try:
        r = parse_registrar(text)
    except ValueError as exc:
        _assert_utf8(str(exc).encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
        return
    assert r.scheme in ("sip", "sips")
    assert r.port is None or 0 < r.port < 65536
    assert not_unicast(r.host) is None
    assert r.is_ipv6 == (":" in r.host)
    # What we write back (the URI pjsua2 registers to) parses to the same registrar.
    again = parse_registrar(r.uri("udp"))
    assert (again.host, again.port, again.params) == (r.host, r.port, r.params)


@given(st.one_of(st.text(max_size=300), st.from_regex(r"[a-z0-9.-]{200,300}", fullmatch=True)))
def test_is_hostname_and_not_unicast_take_any_text(text: str) -> None:
    if is_hostname(text):
        assert len(text.rstrip(".")) <= 253
    why = not_unicast(text)
    assert why is None or why.startswith(("a ", "the "))


# ---- text off the wire (lone surrogates from PJSIP/the OS)

JSON_LIKE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(), st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)


@given(st.text())
def test_clean_text_makes_any_string_writable_as_utf8(value: str) -> None:
    cleaned, replaced = wiretext.clean_text(value)
    cleaned.encode("utf-8")
    assert len(cleaned) == len(value)
    assert replaced == sum(1 for a, b in zip(value, cleaned, strict=True) if a != b)


@given(JSON_LIKE)
def test_clean_tree_makes_every_string_writable(value: Any) -> None:
    import json

    cleaned, _ = wiretext.clean_tree(value)
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")
