"""Parsing the registrar the user names (`sip:`/`sips:` URI, host[:port], [v6][:port], params)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# One DNS label (RFC 1123, plus "_" as SRV-style names use): checked label by label, so a
# bad name costs time linear in its length (a single regex over the whole name backtracked
# exponentially on "sip:registrar.example.com/").
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")


def is_hostname(host: str) -> bool:
    """A syntactically valid host name of at most 253 characters (one trailing dot allowed)."""
    if not 0 < len(host) <= 254:
        return False
    name = host[:-1] if host.endswith(".") else host
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def not_unicast(address: str) -> str | None:
    """Why ``address`` cannot be one server (multicast, broadcast, unspecified, reserved), or
    None for a unicast address or a name. Nothing is ever sent to such an address: a REGISTER
    to a multicast group would hand the digest response to the whole segment."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if ip.is_reserved and not ip.is_loopback:  # IPv6 ::/8 holds ::1
        return "a reserved address"
    return None


def is_ip(host: str) -> bool:
    """An IPv4 or IPv6 address literal (without brackets), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Registrar:
    scheme: str  # "sip" or "sips"
    host: str  # IPv6 without brackets
    port: int | None
    transport: str | None  # from ;transport=
    params: tuple[str, ...] = ()  # other URI parameters, kept as given (e.g. "lr")

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def host_literal(self) -> str:
        """The host as it appears in a URI (IPv6 in brackets)."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    @property
    def hostport(self) -> str:
        return self.host_literal if self.port is None else f"{self.host_literal}:{self.port}"

    def uri(self, transport: str) -> str:
        """The URI pjsua2 registers to over `transport` (any ;transport= is replaced)."""
        params = "".join(f";{p}" for p in self.params)
        if transport != "udp":
            params += f";transport={transport}"
        return f"{self.scheme}:{self.hostport}{params}"


def parse_registrar(text: str) -> Registrar:
    """Raise ValueError with a message a user can act on."""
    rest = text.strip()
    scheme = "sip"
    lowered = rest.lower()
    for prefix in ("sips:", "sip:"):
        if lowered.startswith(prefix):
            scheme, rest = prefix[:-1], rest[len(prefix) :]
            break
    rest, *raw_params = rest.split(";")
    rest = rest.split("@")[-1]  # a user part names the account, not the registrar
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ValueError("unclosed '[' in the IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
        port_text = tail[1:] if tail.startswith(":") else None
        if tail and port_text is None:
            raise ValueError(f"unexpected '{tail}' after the IPv6 address")
    else:
        host, sep, port_text_or_empty = rest.partition(":")
        port_text = port_text_or_empty if sep else None
        if not host:
            raise ValueError("no host")
        if not is_hostname(host):
            raise ValueError(f"'{host}' is not a host name or address")
    why = not_unicast(host)
    if why is not None:
        raise ValueError(f"'{host}' is {why}, not one server's address")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port '{port_text}' is not a number from 1 to 65535")
        port = int(port_text)
    transport = None
    params = []
    for p in raw_params:
        name, _, value = p.partition("=")
        if name.strip().lower() == "transport":
            transport = value.strip().lower()
        elif p.strip():
            params.append(p.strip())
    return Registrar(scheme, host, port, transport, tuple(params))
