"""Finding the registrar as RFC 3263 §4 says: NAPTR -> SRV -> A/AAAA per transport, with dnspython,
and, when no --dns-server is given, the OS resolver (getaddrinfo: hosts file, mDNS, VPN split DNS)
for the addresses too, as a softphone that leaves names to the OS finds them.

Every query is kept as evidence (`Resolution.lookups`, each with its `source`) and bounded by the
caller's deadline. dnspython is imported on first use: `sipdiag --help` must stay fast.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from diag.target import Registrar, is_ip, not_unicast, parse_registrar

if TYPE_CHECKING:
    import dns.resolver


DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}  # RFC 3263 §4.1
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}  # RFC 3263 §4.1
DNS_PORT = 53
QUERY_LIFETIME_S = 5.0  # dnspython's own default; also the cap when there is no deadline
MIN_LIFETIME_S = 0.05  # less time than this left: the query is not made


# dnspython sleeps this long before it goes round its nameservers again, and only then notices
# that the lifetime is over: a query can end this much after its lifetime.
RETRY_BACKOFF_S = 0.1
DEADLINE_REACHED = "deadline reached"  # a query not made: no evidence either way


# Who gave an address (Target.source, and each lookup's "source").
DNS, OS, LITERAL = "dns", "os", "literal"  # dnspython | getaddrinfo() only | an IP registrar
OS_LOOKUP = "A/AAAA"  # a lookup's "type" when the OS resolver was asked
_GAI_ERRORS = {
    getattr(socket, name): name
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_AGAIN", "EAI_FAIL", "EAI_ADDRFAMILY")
    if hasattr(socket, name)
}


@dataclass(frozen=True)
class Target:
    """One place to send SIP to, in preference order within its transport."""

    transport: str  # udp | tcp | tls
    host: str  # the name it came from (SRV target, or the registrar host)
    port: int
    address: str  # the IP address to connect to
    source: str = DNS  # who gave the address: DNS (also when the OS agreed), OS only, LITERAL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Route:
    """How one transport's targets were found, and which records give them."""

    via: str  # "IP address" | "NAPTR+SRV" | "SRV" | "A/AAAA"
    records: str  # what to publish if this transport has no target ("_sip._tcp.x SRV records")


@dataclass
class Resolution:
    # Every query made: {"type", "name", "answers": [str], "error": str | None, "ms": int,
    # "source": "dns" | "os"}; an OS resolver lookup has the type "A/AAAA".
    lookups: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    naptr_transports: list[str] = field(default_factory=list)  # what the domain's NAPTR offers
    routes: dict[str, Route] = field(default_factory=dict)  # per requested transport
    dns_servers: list[str] = field(default_factory=list)  # what dnspython asks, as host:port
    os_resolver: bool = False  # whether getaddrinfo() was asked too
    # Addresses DNS or the OS gave that are no one server's (multicast, broadcast, unspecified,
    # reserved): {"name", "address", "why"}; never targets, nothing is sent there.
    refused: list[dict[str, str]] = field(default_factory=list)


class NaptrRecord(NamedTuple):
    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # without the final dot


class SrvRecord(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str  # without the final dot; "." means "service not offered here" (RFC 2782)


def naptr_srv_names(records: Iterable[NaptrRecord]) -> dict[str, list[str]]:
    """SRV names per transport from SIP NAPTR records, most preferred first (RFC 3263 §4.1).

    Only terminal "s" records for SIP+D2U, SIP+D2T and SIPS+D2T count; the dict's key order is
    the order in which the domain prefers its transports.
    """
    names: dict[str, list[str]] = {}
    for r in sorted(records, key=lambda r: (r.order, r.preference)):
        transport = NAPTR_SERVICES.get(r.service.upper())
        if transport and r.flags.lower() == "s" and r.replacement not in ("", "."):
            if r.replacement not in names.setdefault(transport, []):
                names[transport].append(r.replacement)
    return names


def srv_order(records: Iterable[SrvRecord]) -> list[SrvRecord]:
    """Lowest priority first; within a priority the heaviest first, then by name.

    RFC 2782 picks among equal priorities at random by weight; a diagnostic reports every target,
    so a stable order (the most likely pick first) serves better than a random one.
    """
    return sorted(records, key=lambda r: (r.priority, -r.weight, r.target, r.port))


def parse_nameserver(text: str) -> tuple[str, int]:
    """ "IP", "IP:PORT" or "[v6]:PORT" -> (ip, port); ValueError if it is not an IP address."""
    parsed = parse_registrar(text)
    ipaddress.ip_address(parsed.host)
    return parsed.host, parsed.port or DNS_PORT


def hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _gai_error(exc: socket.gaierror) -> str:
    return _GAI_ERRORS.get(exc.errno, f"gaierror {exc.errno}")


class _OsLookup:
    """getaddrinfo() for one name, in a daemon thread: it blocks with no timeout of its own
    (glibc retries a silent DNS server for 10 s and more), so callers wait only to their deadline.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.ended: float | None = None
        self.addresses: list[str] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"getaddrinfo:{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.name, None, type=socket.SOCK_DGRAM)
            families = (socket.AF_INET, socket.AF_INET6)
            # In the OS's preference order (RFC 6724 / gai.conf), as a softphone would get them.
            self.addresses = list(dict.fromkeys(str(i[4][0]) for i in infos if i[0] in families))
        except socket.gaierror as exc:
            self.error = _gai_error(exc)
        except (OSError, UnicodeError, ValueError) as exc:
            self.error = type(exc).__name__
        self.ended = time.monotonic()

    def record(self, deadline: float) -> dict[str, Any]:
        """The lookup's evidence, waiting for it until ``deadline`` at most."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = not self._thread.is_alive()
        entry: dict[str, Any] = {"type": OS_LOOKUP, "name": self.name, "source": OS}
        entry["answers"] = list(self.addresses) if done else []
        entry["error"] = self.error if done else "Timeout"
        ended = self.ended if done and self.ended is not None else time.monotonic()
        entry["ms"] = int((ended - self.started) * 1000)
        return entry


class _Lookups:
    """Queries one DNS resolver (and the OS resolver for addresses when ``nameserver`` is None),
    each query bounded by the deadline and recorded once."""

    def __init__(self, nameserver: str | None, deadline: float) -> None:
        self.deadline = deadline
        self.records: list[dict[str, Any]] = []
        # Addresses DNS or the OS gave that are not one server's (multicast, broadcast…).
        self.refused: list[dict[str, str]] = []
        self._answers: dict[tuple[str, str], list[Any]] = {}
        # --dns-server is what the user asked about: then only that server counts.
        self.os_resolver = nameserver is None
        self._os_started: dict[str, _OsLookup | None] = {}
        self._os_answers: dict[str, list[str]] = {}
        self._resolver: dns.resolver.Resolver | None = None
        self._setup_error: str | None = None
        import dns.resolver

        try:
            if nameserver is None:
                self._resolver = dns.resolver.Resolver()  # /etc/resolv.conf or the OS's
            else:
                ip, port = parse_nameserver(nameserver)
                self._resolver = dns.resolver.Resolver(configure=False)
                self._resolver.nameservers = [ip]
                self._resolver.port = port
        except (dns.resolver.NoResolverConfiguration, ValueError) as exc:
            self._setup_error = f"{type(exc).__name__}: {exc}"

    def query(self, rdtype: str, name: str) -> list[Any]:
        """The answer's records ([] on any error, which is recorded)."""
        key = (rdtype, name)
        if key not in self._answers:
            self._answers[key] = self._ask(rdtype, name)
        return self._answers[key]

    @property
    def dns_servers(self) -> list[str]:
        if self._resolver is None:
            return []
        return [hostport(str(ns), self._resolver.port) for ns in self._resolver.nameservers]

    def start_os_lookup(self, name: str) -> None:
        """Ask the OS resolver now, so that a silent DNS server cannot use up its time."""
        if self.os_resolver and name not in self._os_started:
            left = self.deadline - time.monotonic()
            self._os_started[name] = _OsLookup(name) if left >= MIN_LIFETIME_S else None

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(address, source): DNS's A then AAAA, then what only the OS resolver gave."""
        self.start_os_lookup(name)
        found = {r.address: DNS for rdtype in ("A", "AAAA") for r in self.query(rdtype, name)}
        for address in self._os_addresses(name):
            found.setdefault(address, OS)
        usable = []
        for address, source in found.items():
            why = not_unicast(address)
            if why is None:
                usable.append((address, source))
            elif (name, address) not in {(r["name"], r["address"]) for r in self.refused}:
                # Nothing is ever sent there: recorded, and net.dns says so.
                self.refused.append({"name": name, "address": address, "why": why})
        return usable

    def _os_addresses(self, name: str) -> list[str]:
        if not self.os_resolver:
            return []
        if name not in self._os_answers:
            lookup = self._os_started[name]
            if lookup is None:
                entry: dict[str, Any] = {"type": OS_LOOKUP, "name": name, "source": OS}
                entry.update(answers=[], error=DEADLINE_REACHED, ms=0)
            else:
                entry = lookup.record(self.deadline)
            self.records.append(entry)
            self._os_answers[name] = entry["answers"]
        return self._os_answers[name]

    def _ask(self, rdtype: str, name: str) -> list[Any]:
        import dns.exception
        import dns.name
        import dns.resolver

        t0 = time.monotonic()
        entry: dict[str, Any] = {"type": rdtype, "name": name, "answers": [], "error": None}
        entry["source"] = DNS
        rrs: list[Any] = []
        if self._resolver is None:
            entry["error"] = self._setup_error
        elif self.deadline - t0 - RETRY_BACKOFF_S < MIN_LIFETIME_S:
            entry["error"] = DEADLINE_REACHED
        else:
            lifetime = min(QUERY_LIFETIME_S, self.deadline - t0 - RETRY_BACKOFF_S)
            # One try per nameserver, sharing the lifetime: dnspython's default 2 s tries and
            # their growing back-off would run past the lifetime (and so past our deadline).
            self._resolver.timeout = lifetime / max(1, len(self._resolver.nameservers))
            try:
                answer = self._resolver.resolve(
                    dns.name.from_text(name), rdtype, search=False, lifetime=lifetime
                )
                rrs = list(answer)
            except dns.resolver.NXDOMAIN:
                entry["error"] = "NXDOMAIN"
            except dns.resolver.NoAnswer:
                entry["error"] = "NoAnswer"
            except dns.exception.Timeout:
                entry["error"] = "Timeout"
            except dns.resolver.NoNameservers:
                entry["error"] = "NoNameservers"  # every server failed: SERVFAIL, REFUSED, ...
            except (dns.exception.DNSException, OSError) as exc:
                entry["error"] = type(exc).__name__
        entry["answers"] = [_answer_text(r) for r in rrs]
        entry["ms"] = int((time.monotonic() - t0) * 1000)
        self.records.append(entry)
        return rrs


def lookup_addresses(
    host: str, nameserver: str | None, deadline: float
) -> tuple[list[str], list[dict[str, Any]]]:
    """``host``'s addresses as net.dns finds them (``nameserver``; else the system's DNS servers,
    then what only the OS resolver adds), bounded by ``deadline``: (addresses, every query made,
    as in Resolution)."""
    lookups = _Lookups(nameserver, deadline)
    found = lookups.addresses(host.rstrip("."))
    return [address for address, _ in found], lookups.records


def _answer_text(rdata: Any) -> str:
    address = getattr(rdata, "address", None)
    return str(address) if address is not None else str(rdata.to_text())


def _plain(name: Any) -> str:
    """A dnspython name as text without the final dot; the root stays "."."""
    text = str(name.to_text())
    return text if text == "." else text.rstrip(".")


def resolve(
    registrar: Registrar,
    transports: Sequence[str],
    nameserver: str | None,
    deadline: float,
) -> Resolution:
    """Targets per transport (in the order given), each in RFC 3263 preference order."""
    wanted = list(dict.fromkeys(transports))
    for transport in wanted:
        if transport not in DEFAULT_PORTS:
            raise ValueError(f"unknown transport {transport!r}; use one of udp, tcp, tls")
    host = registrar.host.rstrip(".")
    out = Resolution()
    if is_ip(host):
        for transport in wanted:
            port = registrar.port or DEFAULT_PORTS[transport]
            out.targets.append(Target(transport, host, port, host, LITERAL))
            out.routes[transport] = Route("IP address", "")
        return out
    lookups = _Lookups(nameserver, deadline)
    out.lookups, out.dns_servers, out.os_resolver, out.refused = (
        lookups.records,
        lookups.dns_servers,
        lookups.os_resolver,
        lookups.refused,
    )
    lookups.start_os_lookup(host)  # used if there is no SRV; recorded only then
    if registrar.port is not None:  # §4.2: an explicit port means no NAPTR and no SRV
        for transport in wanted:
            out.routes[transport] = Route("A/AAAA", f"A/AAAA records for {host}")
            _add(out, transport, host, registrar.port, lookups.addresses(host))
        return out
    naptr: dict[str, list[str]] = {}
    if registrar.transport is None:  # §4.1: an explicit ;transport= means no NAPTR, only SRV
        naptr = naptr_srv_names(
            NaptrRecord(
                r.order,
                r.preference,
                r.flags.decode(errors="replace"),
                r.service.decode(errors="replace"),
                _plain(r.replacement),
            )
            for r in lookups.query("NAPTR", host)
        )
    out.naptr_transports = list(naptr)
    for transport in wanted:
        _resolve_transport(out, lookups, host, transport, naptr.get(transport, []))
    return out


def _resolve_transport(
    out: Resolution, lookups: _Lookups, host: str, transport: str, naptr_names: list[str]
) -> None:
    """SRV (the NAPTR's names, else the well-known one), else the host's A/AAAA (§4.1, §4.2)."""
    names = naptr_names or [f"{SRV_PREFIXES[transport]}.{host}"]
    via = "NAPTR+SRV" if naptr_names else "SRV"
    records = [
        SrvRecord(r.priority, r.weight, r.port, _plain(r.target))
        for name in names
        for r in lookups.query("SRV", name)
    ]
    if not records:
        out.routes[transport] = Route("A/AAAA", f"{names[0]} SRV records")
        _add(out, transport, host, DEFAULT_PORTS[transport], lookups.addresses(host))
        return
    usable = [r for r in srv_order(records) if r.target != "."]
    if not usable:
        out.routes[transport] = Route(via, f"{names[0]} SRV records with a target other than '.'")
        return
    targets = list(dict.fromkeys(r.target for r in usable))
    out.routes[transport] = Route(via, f"A/AAAA records for {', '.join(targets)}")
    for r in usable:
        _add(out, transport, r.target, r.port, lookups.addresses(r.target))


def _add(
    out: Resolution, transport: str, host: str, port: int, addresses: list[tuple[str, str]]
) -> None:
    for address, source in addresses:
        target = Target(transport, host, port, address, source)
        if target not in out.targets:
            out.targets.append(target)


def tried_summary(lookups: Sequence[dict[str, Any]]) -> str:
    """ "tried NAPTR x, SRV _sip._udp.x, A x, AAAA x, OS resolver x (NXDOMAIN, EAI_NONAME)": the
    names and why they failed."""
    tried = ", ".join(dict.fromkeys(_lookup_label(q) for q in lookups))
    errors = ", ".join(dict.fromkeys(str(q["error"]) for q in lookups if q["error"]))
    return f"tried {tried} ({errors})" if errors else f"tried {tried}"


def _lookup_label(lookup: dict[str, Any]) -> str:
    if lookup.get("source") == OS:
        return f"OS resolver {lookup['name']}"
    return f"{lookup['type']} {lookup['name']}"
