"""A NAT topology in three namespaces (tests/README.md §NAT), with coturn STUN-only behind it.

    client 10.97.0.1 ── 10.97.0.254  router  10.96.0.254 ── server 10.96.0.2 + 10.96.0.3

The router forwards (``net.ipv4.ip_forward=1``) and source-NATs everything it sends towards
the server with the nftables statement given (``masquerade`` by default): the server sees the
client as 10.96.0.254. With ``nat=None`` it only routes, so the server sees 10.97.0.1. The
server runs coturn on both of its addresses, ports 3478 and 3479 (RFC 5780: OTHER-ADDRESS and
CHANGE-REQUEST work). The addresses exist only inside the namespaces, so fixed subnets cannot
clash with the host or with another topology.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .netns import delete_namespaces, run_checked
from .process import Daemon, ReadyCheck, all_of, netns_prefix, socket_in_netns
from .stun import binding_request_message, parse_binding_success

CLIENT_IP = "10.97.0.1"
ROUTER_INSIDE_IP = "10.97.0.254"
ROUTER_OUTSIDE_IP = "10.96.0.254"
SERVER_IP = "10.96.0.2"
SERVER_ALT_IP = "10.96.0.3"
STUN_PORT = 3478  # the namespace is ours, so the real STUN port is free
STUN_ALT_PORT = 3479


def nat_rules(outside_dev: str, statement: str = "masquerade") -> str:
    """nft script: source NAT ``statement`` for everything leaving through ``outside_dev``."""
    return (
        "table ip tbnat {\n  chain post {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{outside_dev}" {statement}\n  }}\n}}\n'
    )


def filter_rules(hook: str, rule: str) -> str:
    """nft script that replaces table ``inet tb_<hook>`` with one ``rule`` on ``hook`` (output:
    a firewall on the machine itself; forward: one on the router)."""
    table = f"inet tb_{hook}"
    return (
        f"table {table}\ndelete table {table}\n"
        f"table {table} {{\n  chain {hook} {{\n"
        f"    type filter hook {hook} priority 0; policy accept;\n"
        f"    {rule}\n  }}\n}}\n"
    )


def wire_chain(
    namespaces: tuple[str, str, str],
    devices: tuple[str, str, str, str],
    inside_ips: tuple[str, ...],
    router_ips: tuple[str, str],
    outside_ips: tuple[str, ...],
    *,
    outside_route: bool,
) -> None:
    """inside ── router ── outside (tests/README.md §NAT): three namespaces (IPv6 off, loopback
    up), two veth pairs (``devices``: inside, router inside, router outside, outside), every
    address a /24, the inside's default route via the router's inside address (``router_ips``:
    inside, outside), the outside's back via its outside address only with ``outside_route``,
    forwarding on. NatRouter and the inbound test bed (peers/inbound.py) are both built on it."""
    inside, router, outside = namespaces
    inside_dev, router_in, router_out, outside_dev = devices
    router_inside_ip, router_outside_ip = router_ips
    for ns in namespaces:
        run_checked(["ip", "netns", "add", ns])
        run_checked(
            [*netns_prefix(ns), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"]
        )  # fmt: skip
        run_checked(["ip", "-n", ns, "link", "set", "lo", "up"])
    for a_ns, a_dev, b_ns, b_dev in (
        (inside, inside_dev, router, router_in),
        (router, router_out, outside, outside_dev),
    ):
        run_checked(
            ["ip", "link", "add", a_dev, "netns", a_ns, "type", "veth",
             "peer", "name", b_dev, "netns", b_ns]
        )  # fmt: skip
    for ns, dev, addresses in (
        (inside, inside_dev, inside_ips),
        (router, router_in, (router_inside_ip,)),
        (router, router_out, (router_outside_ip,)),
        (outside, outside_dev, outside_ips),
    ):
        for address in addresses:
            run_checked(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev])
        run_checked(["ip", "-n", ns, "link", "set", dev, "up"])
    run_checked(["ip", "-n", inside, "route", "add", "default", "via", router_inside_ip])
    if outside_route:
        run_checked(["ip", "-n", outside, "route", "add", "default", "via", router_outside_ip])
    run_checked([*netns_prefix(router), "sysctl", "-qw", "net.ipv4.ip_forward=1"])


@dataclass
class NatRouter:
    """The three namespaces; ``stun`` is coturn in ``server`` once start_stun() ran."""

    client: str
    router: str
    server: str
    work_dir: Path
    nat: str | None
    stun: Daemon | None = field(default=None, init=False)

    @classmethod
    def create(cls, work_dir: Path, nat: str | None = "masquerade") -> NatRouter:
        """``nat``: the router's nftables source-NAT statement (``masquerade``, ``masquerade
        random``, ...), or None to route without NAT."""
        token = secrets.token_hex(3)
        topo = cls(f"sdC{token}", f"sdR{token}", f"sdS{token}", work_dir, nat)
        router_out = f"vRo{token}"
        try:
            wire_chain(
                (topo.client, topo.router, topo.server),
                (f"vC{token}", f"vRi{token}", router_out, f"vS{token}"),
                (CLIENT_IP,),
                (ROUTER_INSIDE_IP, ROUTER_OUTSIDE_IP),
                (SERVER_IP, SERVER_ALT_IP),
                outside_route=True,  # without NAT the server routes its answers back
            )
            if nat is not None:
                topo.nft(topo.router, nat_rules(router_out, nat))
        except BaseException:
            topo.destroy()
            raise
        return topo

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return self.client, self.router, self.server

    @property
    def stun_server(self) -> str:
        """``--stun`` value for the primary address."""
        return f"{SERVER_IP}:{STUN_PORT}"

    def nft(self, netns: str, script: str) -> None:
        run_checked([*netns_prefix(netns), "nft", "-f", "-"], stdin=script)

    def set_udp_timeout(self, seconds: int) -> None:
        """The router forgets a silent UDP mapping after ``seconds`` (conntrack timeouts are per
        namespace, so the host keeps its own; a new namespace starts at 30 s, 120 s for
        streams)."""
        run_checked(
            [*netns_prefix(self.router), "sysctl", "-qw",
             f"net.netfilter.nf_conntrack_udp_timeout={seconds}",
             f"net.netfilter.nf_conntrack_udp_timeout_stream={seconds}"]
        )  # fmt: skip

    def block_client_output(self, rule: str) -> None:
        """``rule`` (e.g. ``udp dport 3478 drop``) on the client's output hook: the sender gets
        EPERM, as with a firewall on the agent's own machine."""
        self.nft(self.client, filter_rules("output", rule))

    def block_router_forward(self, rule: str) -> None:
        """``rule`` on the router's forward hook: packets vanish on the way, as with a
        corporate firewall."""
        self.nft(self.router, filter_rules("forward", rule))

    def start_stun(self, timeout: float = 10.0) -> Daemon:
        """coturn STUN-only on SERVER_IP and SERVER_ALT_IP, ports 3478/3479 (UDP and TCP)."""
        if self.stun is None:
            directory = self.work_dir / "stun"
            directory.mkdir(parents=True, exist_ok=True)
            argv = [
                "turnserver", "-n", f"--listening-ip={SERVER_IP}",
                f"--listening-ip={SERVER_ALT_IP}", f"--listening-port={STUN_PORT}",
                f"--alt-listening-port={STUN_ALT_PORT}", "--stun-only", "--no-cli", "--no-tls",
                "--no-dtls", "--log-file=stdout", "--simple-log",
                f"--pidfile={directory / 'turnserver.pid'}", f"--db={directory / 'turndb'}",
            ]  # fmt: skip
            daemon = Daemon("turnserver", argv, directory, netns=self.server, cwd=directory)
            ready = all_of(*(_answers(self.server, ip) for ip in (SERVER_IP, SERVER_ALT_IP)))
            self.stun = daemon.start(ready, timeout)
        return self.stun

    def destroy(self) -> None:
        """Stop coturn, kill anything left in the namespaces (only ours), delete them."""
        if self.stun is not None:
            self.stun.stop()
        delete_namespaces(self.namespaces)


def _answers(netns: str, host: str) -> ReadyCheck:
    """A Binding Request from inside ``netns`` to ``host``:3478 gets its Binding Success."""

    def check() -> bool:
        transaction_id = secrets.token_bytes(12)
        with socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            try:
                sock.connect((host, STUN_PORT))
                sock.send(binding_request_message(transaction_id))
                parse_binding_success(sock.recv(2048), transaction_id)
            except (OSError, ValueError):
                return False
        return True

    return check
