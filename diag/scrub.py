"""Pure scrubbing for what leaves the machine: SIP traces and support bundles.

Both work by structure, never by searching text for a value: `scrub_sip` empties the
Authorization/Proxy-Authorization headers of SIP text (the only place a SIP stack puts anything
derived from the password) and `scrub_tree` the secret fields of parsed JSON, so a password that
is also a port or an extension number cannot be revealed by its own replacement. `Redactor`
replaces identifying values (hostname, user name, IP addresses) with stable tokens: the same
value gets the same token in every file of a bundle, so support can still follow one address
through the report and the trace. It replaces whole tokens and whole JSON values, never keys.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

SCRUBBED = "[scrubbed]"

# A header line plus any folded continuation lines (RFC 3261 7.3.1).
_CREDENTIAL_HEADER = re.compile(
    r"^(?P<name>(?:proxy-)?authorization)[ \t]*:[^\r\n]*(?:\r?\n[ \t]+[^\r\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)

# JSON fields whose value is a secret, by name (lower case, "-" read as "_").
SECRET_FIELDS = frozenset(
    {"password", "turn_password", "secret", "authorization", "proxy_authorization"}
)


def scrub_sip(text: str) -> str:
    """Authorization/Proxy-Authorization values (digest responses derived from the password)
    become [scrubbed]; every other byte is kept."""
    return _CREDENTIAL_HEADER.sub(lambda m: f"{m.group('name')}: {SCRUBBED}", text)


def scrub_tree(value: Any) -> Any:
    """A copy of parsed JSON with every secret field's value (but null) [scrubbed] and SIP
    credential headers scrubbed inside strings (a captured message in a check's details)."""
    if isinstance(value, dict):
        return {
            k: SCRUBBED
            if v is not None and k.lower().replace("-", "_") in SECRET_FIELDS
            else scrub_tree(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub_tree(v) for v in value]
    return scrub_sip(value) if isinstance(value, str) else value


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
        self._by_name = dict(self._names)
        alternatives = "|".join(re.escape(name) for name, _ in self._names)
        self._name_pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)

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
        """Addresses, and names as whole tokens: "vm" in "vm.corp" or "/home/vm" but not
        in the Call-ID "a4-dvmKdtQ8f" or the tag "vm-2" (a name may itself hold "-")."""
        text = _IP.sub(self._address, text)
        return self._name_pattern.sub(self._name_token, text) if self._names else text

    def _name_token(self, match: re.Match[str]) -> str:
        return self._by_name[match.group(0).lower()]

    def redact_tree(self, value: Any, keep: Callable[[tuple[str, ...]], bool]) -> Any:
        """A copy of parsed JSON with every string value redacted, except where keep(path)
        (path: the keys from the root, "*" for a list item). Keys and types never change."""
        return self._walk(value, (), keep)

    def _walk(
        self, value: Any, path: tuple[str, ...], keep: Callable[[tuple[str, ...]], bool]
    ) -> Any:
        if keep(path):
            return value
        if isinstance(value, dict):
            return {k: self._walk(v, (*path, k), keep) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, (*path, "*"), keep) for v in value]
        return self.redact(value) if isinstance(value, str) else value
