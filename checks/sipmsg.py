"""Small pure helpers for reading SIP messages that pjsua2 hands us as raw text."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass, field

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
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:
            headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key in SECRET_HEADERS:
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
    except (TypeError, ValueError):
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
