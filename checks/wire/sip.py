"""SIP on the wire, the one codec: parse any SIP message (ours, the registrar's, PJSIP's raw
text), build an OPTIONS or a REGISTER, frame and match its answer, answer a digest challenge.

Pure functions, no I/O (aioice's stun.py is the model). The probe id is the RFC 3261 branch
suffix, the From tag and the Call-ID's left part, so an answer is ours only if it echoes it;
build it with probe_id() so it carries the run id and the platform's logs can be searched for it.
Malformed input raises ValueError saying what is wrong.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Protocol

from checks.wire.text import clean_text


class Password(Protocol):
    """A password that shows itself only when asked (diag.config.Secret is one): what the wire
    layer takes, so it never holds a bare string it could print."""

    def reveal(self) -> str: ...


# ---- reading SIP messages (also those pjsua2 hands us as raw text)

# RFC 3261 7.3.3 compact header forms.
_COMPACT = {
    "i": "call-id",
    "v": "via",
    "f": "from",
    "t": "to",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
}
# Never keep these: they carry digest responses derived from the password.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


@dataclass(frozen=True)
class SipMessage:
    start_line: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    undecodable: int = 0  # bytes that were not UTF-8 on the wire, now U+FFFD

    def first(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return list(self.headers.get(name.lower(), []))


def parse(raw: str) -> SipMessage | None:
    """Parse the start line, headers (folded lines joined) and body; None for an empty message."""
    head, _, body = raw.partition("\r\n\r\n")
    head = head.replace("\r\n", "\n")
    lines = head.split("\n")
    if not lines or not lines[0].strip():
        return None
    headers: dict[str, list[str]] = {}
    last: str | None = None
    secret = False  # inside a credential header: its folded lines are dropped with it
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and (last is not None or secret):
            if last is not None:
                headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():  # no header here: the one before goes on (or not)
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        secret = key in SECRET_HEADERS
        if secret:
            last = None
            continue
        headers.setdefault(key, []).append(value.strip())
        last = key
    return SipMessage(lines[0].strip(), headers, body)


def via_received(via: str) -> tuple[str | None, int | None]:
    """The source address the server saw, from our top Via's received/rport parameters."""
    received = re.search(r";\s*received=([^;,\s]+)", via)
    rport = re.search(r";\s*rport=(\d+)", via)
    return (received.group(1) if received else None, int(rport.group(1)) if rport else None)


def parse_date(value: str) -> dt.datetime | None:
    """RFC 3261 Date header (RFC 1123 form, always GMT)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):  # a year past 9999, garbage
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def parse_challenge(value: str) -> dict[str, str | None]:
    """A WWW-/Proxy-Authenticate header: scheme, realm, algorithm and qop (never the nonce)."""
    scheme, _, rest = value.strip().partition(" ")
    params = dict(
        (m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
        for m in re.finditer(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    )
    return {
        "scheme": scheme or None,
        "realm": params.get("realm"),
        "algorithm": params.get("algorithm", "MD5" if scheme.lower() == "digest" else None),
        "qop": params.get("qop"),
    }


@dataclass(frozen=True)
class Binding:
    """One Contact a registrar lists in its 200 OK to a REGISTER: a registered device.

    ``transport`` comes from the URI's ``;transport=`` (``sips:`` means tls, else udp);
    ``instance``/``reg_id`` are RFC 5626 SIP outbound's ``+sip.instance`` and ``reg-id``;
    ``ours`` marks a Contact carrying sipdiag's own ``;sipdiag=`` tag; ``params`` holds the
    other header parameters (``received``, ``path``… as a registrar gives them).
    """

    contact: str
    expires: int | None
    transport: str
    instance: str | None = None
    reg_id: int | None = None
    q: float | None = None
    ours: bool = False
    params: dict[str, str] = field(default_factory=dict)


def _split_outside(value: str, sep: str) -> list[str]:
    """``value`` split at ``sep`` where it is outside <...> and "..." (one pass, linear)."""
    parts: list[str] = []
    current: list[str] = []
    angle = quoted = escaped = False
    for ch in value:
        if quoted:
            quoted = not (ch == '"' and not escaped)
            escaped = ch == "\\" and not escaped
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == sep and not angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _number(text: str | None, kind: type[int] | type[float]) -> int | float | None:
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return None


def parse_bindings(values: list[str], our_tag: str = ";sipdiag=") -> list[Binding]:
    """Every Contact in a REGISTER answer's Contact header values (several per line allowed),
    as Bindings; ``*`` and values without a URI are skipped."""
    out: list[Binding] = []
    for value in values:
        for item in _split_outside(value, ","):
            if item.startswith("<"):
                uri, _, rest = item[1:].partition(">")
            else:  # a bare URI: its parameters are header parameters (RFC 3261 20.10)
                uri, _, rest = item.partition(";")
                rest = ";" + rest if rest else ""
            uri = uri.strip()
            if not uri or uri == "*":
                continue
            params: dict[str, str] = {}
            for p in _split_outside(rest, ";"):
                name, _, val = p.partition("=")
                params[name.strip().lower()] = val.strip().strip('"')
            uri_params = dict(
                (k.lower(), v) for k, _, v in (p.partition("=") for p in uri.split(";")[1:])
            )
            scheme = uri.split(":", 1)[0].lower()
            transport = uri_params.get("transport", "tls" if scheme == "sips" else "udp").lower()
            reg_id = _number(params.pop("reg-id", None), int)
            q = _number(params.pop("q", None), float)
            expires = _number(params.pop("expires", None), int)
            out.append(
                Binding(
                    contact=uri,
                    expires=int(expires) if expires is not None else None,
                    transport=transport,
                    instance=params.pop("+sip.instance", None),
                    reg_id=int(reg_id) if reg_id is not None else None,
                    q=float(q) if q is not None else None,
                    ours=our_tag in uri,
                    params=params,
                )
            )
    return out


# ---- building and matching our own requests


REFLECT_HEADER = "X-Sipdiag-Reflect"  # asks a server to echo the request as it arrived
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7: every compliant branch starts with it
TRANSPORTS = {"udp": "UDP", "tcp": "TCP", "tls": "TLS", "ws": "WS", "wss": "WSS"}  # RFC 7118
MAX_PROBE_ID = 64
MAX_HEADERS = 64 * 1024  # an OPTIONS answer's head is a few hundred bytes
MAX_BODY = 64 * 1024  # a REGISTER or OPTIONS answer's body is empty or a small SDP/sipfrag
MAX_CHALLENGE = 4096  # a digest challenge is a few hundred bytes; PJSIP drops longer nonces
_ANY_STATUS = re.compile(r"SIP/2\.0 (\S*)(?: (.*))?")


class UnusableAnswer(ValueError):
    """The server answered our request, but with something a softphone cannot work with (a
    status outside 100-699, an absurd Content-Length): evidence about the server, not the path."""


# RFC 3261 25.1 token characters: what a branch, a tag and a Call-ID word may hold.
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# RFC 3261 25.1 user part: unreserved, escaped and user-unreserved characters.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?")
_BRANCH = re.compile(r";\s*branch\s*=\s*([^;,\s]+)", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.IGNORECASE | re.MULTILINE
)


def probe_id(run_id: str, label: str) -> str:
    """``<run_id>-<label>``: unique per request of a run, and searchable by the run id."""
    return _token(f"{run_id}-{label}", "probe id")


def _token(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_PROBE_ID:
        raise ValueError(f"{what} is longer than {MAX_PROBE_ID} characters: {value!r}")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{what} {value!r} has characters outside the SIP token set")
    return value


def _header_value(value: str, what: str) -> str:
    if not value or any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} must be non-empty and on one line: {value!r}")
    return value


def host_literal(host: str) -> str:
    """A host as it appears in a SIP URI or Via: IPv6 in brackets (added once)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or any(c in bare for c in " \t\r\n;,<>@"):
        raise ValueError(f"invalid host {host!r}")
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise ValueError(f"{host!r} is neither a host name nor an IP address") from None
        return f"[{bare}]"
    return bare


def _checked(
    target_uri: str,
    transport: str,
    local_host: str,
    local_port: int,
    probe_id: str,
    user_agent: str,
) -> tuple[str, str]:
    """(Via protocol, local host literal) once every input of a request is valid."""
    proto = TRANSPORTS.get(transport.lower())
    if proto is None:
        raise ValueError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    if not target_uri.lower().startswith(("sip:", "sips:")):
        raise ValueError(f"target URI {target_uri!r} is not a sip: or sips: URI")
    _header_value(target_uri, "target URI")
    if " " in target_uri:
        raise ValueError(f"target URI {target_uri!r} contains a space")
    if isinstance(local_port, bool) or not isinstance(local_port, int):
        raise ValueError(f"local port must be an int, got {local_port!r}")
    if not 0 < local_port < 65536:
        raise ValueError(f"local port {local_port} is not from 1 to 65535")
    _token(probe_id, "probe id")
    _header_value(user_agent, "User-Agent")
    return proto, host_literal(local_host)


def options_request(
    target_uri: str,
    transport: str,
    local_host: str,
    local_port: int,
    probe_id: str,
    user_agent: str,
    sdp: str | None = None,
) -> bytes:
    """An out-of-dialog OPTIONS to ``target_uri`` (no user part in it: a keep-alive probe).

    With ``sdp`` it carries that offer as its body (RFC 3261 11.1 allows one) and asks the
    server to reflect the request as it arrived (REFLECT_HEADER), so a middlebox's rewriting of
    the Contact or the SDP can be seen; servers that do not know the header just ignore it.
    """
    proto, host = _checked(target_uri, transport, local_host, local_port, probe_id, user_agent)
    body = (sdp or "").encode()
    lines = [
        f"OPTIONS {target_uri} SIP/2.0",
        f"Via: SIP/2.0/{proto} {host}:{local_port};branch={MAGIC_COOKIE}{probe_id};rport",
        "Max-Forwards: 70",
        f"From: <sip:sipdiag@{host}>;tag={probe_id}",
        f"To: <{target_uri}>",
        f"Call-ID: {probe_id}@{host}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:sipdiag@{host}:{local_port};transport={proto.lower()}>",
        f"User-Agent: {user_agent}",
        "Accept: application/sdp",
        *([f"{REFLECT_HEADER}: request", "Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sdp_offer(local_host: str, media_port: int, session_id: str) -> str:
    """A minimal audio offer (PCMU) from ``local_host``: the lines an ALG rewrites (o=, c=, m=)."""
    host = host_literal(local_host).strip("[]")
    family = "IP6" if ":" in host else "IP4"
    lines = [
        "v=0",
        f"o=sipdiag {session_id} 1 IN {family} {host}",
        "s=sipdiag",
        f"c=IN {family} {host}",
        "t=0 0",
        f"m=audio {media_port} RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
    ]
    return "\r\n".join(lines) + "\r\n"


def reflected_request(answer: SipMessage, probe_id: str) -> SipMessage | None:
    """The request as the server received it, when its answer reflects it (message/sipfrag or
    message/sip body holding our request: same Call-ID), else None."""
    kind = (answer.first("content-type") or "").split(";", 1)[0].strip().lower()
    if kind not in ("message/sipfrag", "message/sip") or not answer.body:
        return None
    inner = parse(answer.body)
    if inner is None or inner.start_line.split(" ", 1)[0] != "OPTIONS":
        return None
    call_id = inner.first("call-id") or ""
    return inner if call_id.split("@", 1)[0] == probe_id else None


def register_request(
    target_uri: str,
    transport: str,
    local_host: str,
    local_port: int,
    probe_id: str,
    user: str,
    domain: str,
    user_agent: str,
    *,
    contact: str | None = None,
    expires: int | None = None,
    authorization: str | None = None,
    authorization_header: str = "Authorization",
    call_id: str | None = None,
    cseq: int = 1,
) -> bytes:
    """A REGISTER for ``user@domain``; by default without Contact, Expires or credentials.

    Without a Contact it is a binding query (RFC 3261 10.2.3): it can never create, replace or
    remove a binding, so it is safe to send for any account. A registrar that knows the user
    answers with its challenge (401/407); its answer says the path and the account work.

    A real registration (SIP over WebSocket, where there is no PJSIP) adds ``contact``,
    ``expires`` and the digest ``authorization``, and keeps ``call_id`` across its requests
    (RFC 3261 10.2) with a rising ``cseq``; ``probe_id`` still gives each request its branch.
    An authenticated query (sip.register) adds only the ``authorization`` (in the
    ``authorization_header`` a 407 asks for: Proxy-Authorization): still no Contact.
    """
    proto, host = _checked(target_uri, transport, local_host, local_port, probe_id, user_agent)
    if not _USER.fullmatch(user):
        raise ValueError(f"user {user!r} is empty or has characters outside a SIP user part")
    if call_id is not None:
        _header_value(call_id, "Call-ID")
    if not 0 < cseq < 2**31:
        raise ValueError(f"CSeq {cseq} is not from 1 to 2**31-1")
    aor = f"sip:{user}@{host_literal(domain)}"
    lines = [
        f"REGISTER {target_uri} SIP/2.0",
        f"Via: SIP/2.0/{proto} {host}:{local_port};branch={MAGIC_COOKIE}{probe_id};rport",
        "Max-Forwards: 70",
        f"From: <{aor}>;tag={probe_id}",
        f"To: <{aor}>",
        f"Call-ID: {call_id or f'{probe_id}@{host}'}",
        f"CSeq: {cseq} REGISTER",
        f"User-Agent: {user_agent}",
    ]
    if contact is not None:
        lines.append(f"Contact: {_header_value(contact, 'Contact')}")
    if expires is not None:
        lines.append(f"Expires: {int(expires)}")
    if authorization is not None:
        if authorization_header not in ("Authorization", "Proxy-Authorization"):
            raise ValueError(f"{authorization_header!r} is not an authorization header")
        lines.append(f"{authorization_header}: {_header_value(authorization, 'Authorization')}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def message_length(buffer: bytes) -> int | None:
    """Bytes taken by the first whole message in a stream buffer (head + body), None if partial.

    Over TCP/TLS, Content-Length is mandatory (RFC 3261 18.3); missing means an empty body.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADERS:
            raise ValueError(f"no end of headers within {MAX_HEADERS} bytes")
        return None
    head = buffer[:end]
    match = _CONTENT_LENGTH.search(head)
    body = 0
    if match:
        text = match.group(1)
        if not text.isdigit():
            raise ValueError(f"invalid Content-Length {text.decode(errors='replace')!r}")
        body = int(text)
        if body > MAX_BODY:
            raise UnusableAnswer(f"the answer announces a {body}-byte body (Content-Length)")
    total = end + 4 + body
    return total if len(buffer) >= total else None


def status_code(msg: SipMessage) -> int:
    """The status code of a response's start line (``SIP/2.0 200 OK`` -> 200)."""
    match = _STATUS_LINE.fullmatch(msg.start_line)
    if not match:
        raise ValueError(f"not a SIP response status line: {msg.start_line[:80]!r}")
    return int(match.group(1))


def reason_phrase(msg: SipMessage) -> str:
    """The reason phrase (``SIP/2.0 200 Keepalive`` -> "Keepalive"); may be empty."""
    status_code(msg)
    return msg.start_line.split(" ", 2)[2] if msg.start_line.count(" ") >= 2 else ""


def top_via(msg: SipMessage) -> str | None:
    """The first Via value (a Via header line may hold several, comma-separated)."""
    first = msg.first("via")
    return first.split(",", 1)[0].strip() if first else None


def header_list(msg: SipMessage, name: str) -> list[str]:
    """A comma-separated header's items across all its lines (``Allow``, ``Supported``)."""
    return [item.strip() for line in msg.all(name) for item in line.split(",") if item.strip()]


def parse_response(raw: bytes) -> SipMessage:
    """Status line and headers of one SIP response; ValueError if it is not one."""
    if not raw:
        raise ValueError("empty message")
    text, undecodable = clean_text(raw.decode("utf-8", errors="surrogateescape"))
    msg = parse(text)
    if msg is None:
        raise ValueError("no start line")
    status_code(msg)  # raises for a request or garbage
    return replace(msg, undecodable=undecodable) if undecodable else msg


def match_response(
    raw: bytes, probe_id: str, method: str | None = None, call_id: str | None = None
) -> SipMessage | None:
    """The parsed response if it answers the request with ``probe_id``, else None.

    Ours means the top Via's branch and the Call-ID's left part both echo the probe id (a SIP
    ALG may rewrite the host after the '@', never the id) and, when ``method`` is given
    ("OPTIONS", "REGISTER"), the CSeq names that method. With ``call_id`` (a request that
    kept a registration's Call-ID) the Call-ID must equal it instead. ValueError if ``raw`` is
    not a SIP response at all.
    """
    _token(probe_id, "probe id")
    try:
        msg = parse_response(raw)
    except ValueError:
        loose = parse(raw.decode("utf-8", errors="replace")) if raw else None
        status = _ANY_STATUS.fullmatch(loose.start_line) if loose is not None else None
        if status is None or loose is None or not _is_ours(loose, probe_id, call_id):
            raise
        raise UnusableAnswer(
            f"status line {loose.start_line[:80]!r} is outside SIP's 100-699"
        ) from None
    if not _is_ours(msg, probe_id, call_id):
        return None
    if method is not None and (msg.first("cseq") or "").split()[-1:] != [method.upper()]:
        return None
    return msg


def _is_ours(msg: SipMessage, probe_id: str, call_id: str | None) -> bool:
    via = top_via(msg)
    branch = _BRANCH.search(via) if via else None
    answered_id = msg.first("call-id") or ""
    if branch is None or branch.group(1) != MAGIC_COOKIE + probe_id:
        return False
    if call_id is None:
        return answered_id.split("@", 1)[0] == probe_id
    return answered_id == call_id


# RFC 7616 3.4.1 / RFC 8760: the digest algorithms a SIP registrar may ask for.
_DIGEST_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def challenge_params(value: str) -> tuple[str, dict[str, str]]:
    """A WWW-/Proxy-Authenticate value: (scheme, parameters with lower-case names)."""
    scheme, _, rest = value.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return scheme, params


def answers_again(challenge: str, answered: int) -> bool:
    """Whether to answer a digest ``challenge`` that came after ``answered`` answers of ours to
    the same request: the first always, a second only for a stale nonce (RFC 7616 3.3), never a
    third. A challenge repeated for any other reason means the credentials were refused, as
    PJSIP reads it too."""
    if answered == 0:
        return True
    if answered >= 2:
        return False
    _, params = challenge_params(challenge)
    return params.get("stale", "").lower() == "true"


def digest_authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The Authorization value answering a Digest ``challenge`` (RFC 7616, RFC 2617 compatible):
    MD5 or SHA-256 (and their -sess forms), qop auth or none. ValueError for anything else, so
    the caller reports a challenge it cannot answer instead of sending a wrong response."""
    scheme, p = challenge_params(challenge)
    if scheme.lower() != "digest":
        raise ValueError(f"authentication scheme {scheme!r} is not Digest")
    if "realm" not in p or "nonce" not in p:
        raise ValueError("the Digest challenge has no realm or nonce")
    algorithm = p.get("algorithm", "MD5")
    base, sess = algorithm.upper().removesuffix("-SESS"), algorithm.upper().endswith("-SESS")
    if base not in _DIGEST_HASHES:
        raise ValueError(f"digest algorithm {algorithm!r} is not supported")
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise ValueError(f"qop {p['qop']!r} is not supported (only auth)")

    def h(text: str) -> str:
        return hashlib.new(_DIGEST_HASHES[base], text.encode()).hexdigest()

    realm, nonce = p["realm"], p["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    count = f"{nc:08x}"
    if qops:
        response = h(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qops:
        fields += ["qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)
