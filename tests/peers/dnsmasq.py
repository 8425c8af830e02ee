"""dnsmasq as an authoritative-only DNS server on 127.0.0.1 with the records a test gives it.

It forwards nothing (``--no-resolv``, no ``--server``) and answers NXDOMAIN for unknown names under
its local domains (``test`` by default), so a test sees exactly the records it published.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from .process import Daemon, ReadyCheck, free_port

# dnsmasq --log-queries: "dnsmasq[123]: query[SRV] _sip._udp.pbx.test from 127.0.0.1"
_QUERY_LINE = re.compile(r"query\[(?P<type>[A-Z0-9]+)\] (?P<name>\S+) from ")


def naptr(
    name: str,
    order: int,
    preference: int,
    service: str,
    replacement: str,
    flags: str = "s",
    regexp: str = "",
) -> str:
    """``--naptr-record`` for ``name``, e.g. naptr("pbx.test", 10, 10, "SIP+D2U", "_sip._udp.x")."""
    return f"--naptr-record={name},{order},{preference},{flags},{service},{regexp},{replacement}"


def srv(
    name: str, target: str | None = None, port: int = 0, priority: int = 0, weight: int = 0
) -> str:
    """``--srv-host``: ``name`` (``_sip._udp.pbx.test``) points at ``target:port``.

    Without a target the record's target is "." ("the service is not offered here", RFC 2782).
    """
    if target is None:
        return f"--srv-host={name}"
    return f"--srv-host={name},{target},{port},{priority},{weight}"


def host(name: str, *addresses: str) -> str:
    """``--host-record``: A/AAAA records (IPv4 and/or IPv6 addresses) for ``name``."""
    if not addresses:
        raise ValueError("host() needs at least one address")
    return f"--host-record={name},{','.join(addresses)}"


def answers_dns(host: str, port: int, timeout: float = 0.3) -> ReadyCheck:
    """Ready once any DNS response (even NXDOMAIN) comes back over UDP."""

    def check() -> bool:
        query = dns.message.make_query("ready.invalid.", "A")
        try:
            dns.query.udp(query, host, port=port, timeout=timeout)
        except (dns.exception.DNSException, OSError):  # timeouts included
            return False
        return True

    return check


@dataclass
class Dnsmasq:
    """A running dnsmasq on ``host:port`` (UDP and TCP); its log records every query."""

    host: str
    port: int
    records: tuple[str, ...]
    daemon: Daemon

    @classmethod
    def start(
        cls,
        work_dir: Path,
        records: Sequence[str] = (),
        host: str = "127.0.0.1",
        local_domains: Sequence[str] = ("test",),
        timeout: float = 10.0,
    ) -> Dnsmasq:
        """``records`` are dnsmasq options, best built with naptr(), srv() and host()."""
        work_dir.mkdir(parents=True, exist_ok=True)
        for record in records:
            if not record.startswith("--"):
                raise ValueError(f"not a dnsmasq option: {record!r}")
        port = free_port([host], ("udp", "tcp"))
        argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={host}", f"--port={port}",
            f"--pid-file={work_dir / 'dnsmasq.pid'}",
            "--log-queries", "--log-facility=-",  # stderr, into the Daemon's log
            *(f"--local=/{domain}/" for domain in local_domains),
            *records,
        ]  # fmt: skip
        daemon = Daemon("dnsmasq", argv, work_dir, cwd=work_dir)
        daemon.start(answers_dns(host, port), timeout)
        return cls(host, port, tuple(records), daemon)

    @property
    def server(self) -> str:
        """``host:port``, as ``--dns-server`` wants it."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def queries(self) -> list[tuple[str, str]]:
        """(type, name) of every query it received so far, oldest first."""
        return [
            (m["type"], m["name"])
            for m in map(_QUERY_LINE.search, self.daemon.log_text().splitlines())
            if m
        ]

    def stop(self) -> int | None:
        return self.daemon.stop()


class DnsmasqFactory:
    """``factory(srv(...), host(...))`` -> a running Dnsmasq with those records; then stop_all()."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[Dnsmasq] = []

    def __call__(self, *records: str, local_domains: Sequence[str] = ("test",)) -> Dnsmasq:
        server = Dnsmasq.start(
            self.work_dir / f"dnsmasq-{len(self.started)}", records, local_domains=local_domains
        )
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
