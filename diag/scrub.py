"""Pure text scrubbing for what leaves the machine: SIP traces and support bundles.

`scrub_sip` removes credentials (always). `Redactor` replaces identifying values (hostname, user
name, IP addresses) with stable tokens: the same value gets the same token in every file of a
bundle, so support can still follow one address through the report and the trace.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

SCRUBBED = "[scrubbed]"

# A header line plus any folded continuation lines (RFC 3261 7.3.1).
_CREDENTIAL_HEADER = re.compile(
    r"^(?P<name>(?:proxy-)?authorization)[ \t]*:[^\r\n]*(?:\r?\n[ \t]+[^\r\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)


def scrub_sip(text: str, secrets: Iterable[str] = ()) -> str:
    """Authorization/Proxy-Authorization values (digest responses derived from the password)
    and every literal secret become [scrubbed]."""
    text = _CREDENTIAL_HEADER.sub(lambda m: f"{m.group('name')}: {SCRUBBED}", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, SCRUBBED)
    return text


# Candidates only; ipaddress decides what really is an address (times like 04:08:02 are not).
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
_IPV6 = (
    r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w.])"  # ::ffff:10.0.0.1
)
_IP = re.compile(rf"{_IPV6}(?:%[\w.-]+)?|{_IPV4}")


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "loopback"
    return "public" if address.is_global else "private"


class Redactor:
    """Consistent replacement: one instance per bundle, applied to every file."""

    def __init__(self, hostnames: Iterable[str] = (), users: Iterable[str] = ()) -> None:
        self.tokens: dict[str, str] = {}
        self._seen: dict[str, str] = {}  # candidate text -> replacement (traces repeat a lot)
        self._names: list[tuple[str, str]] = []
        for label, values in (("host", hostnames), ("user", users)):
            for value in values:
                if value and value.lower() not in (n for n, _ in self._names):
                    self._names.append((value.lower(), self._token(label, value.lower())))
        # Longest first: "pc7.corp.example" before "pc7".
        self._names.sort(key=lambda item: len(item[0]), reverse=True)

    def _token(self, label: str, key: str) -> str:
        if key not in self.tokens:
            n = sum(t.startswith(f"{label}-") for t in self.tokens.values()) + 1
            self.tokens[key] = f"{label}-{n}"
        return self.tokens[key]

    def _address(self, match: re.Match[str]) -> str:
        text = match.group(0)
        cached = self._seen.get(text)
        if cached is None:
            cached = self._seen[text] = self._classify(text)
        return cached

    def _classify(self, text: str) -> str:
        bare = text.split("%", 1)[0]
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            return text
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        label = f"ip-{_kind(address)}"
        return self._token(label, str(address))

    def redact(self, text: str) -> str:
        text = _IP.sub(self._address, text)
        for value, token in self._names:
            text = re.sub(re.escape(value), token, text, flags=re.IGNORECASE)
        return text
