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
