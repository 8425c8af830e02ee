"""Two network namespaces joined by a veth pair (agent .1 <-> pbx .2), plus nftables profiles.

The addresses live only inside the namespaces: the host gets no interface and no route.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kamailio import Kamailio
from .process import PeerStartError, netns_prefix

PEERS_PARENT = Path(__file__).resolve().parent.parent
FIREWALL_PROFILES = ("open", "udp-drop", "udp-reject", "tcp-rst", "drop-all", "loss30")


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns``."""
    return [*netns_prefix(netns), *argv]


def run_checked(argv: Sequence[str], stdin: str | None = None) -> None:
    """Run a setup command (ip, nft); a failure raises PeerStartError with its stderr."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise PeerStartError(f"{' '.join(argv)} -> exit {done.returncode}: {done.stderr.strip()}")


def firewall_rules(profile: str, ports: Iterable[int]) -> str:
    """nft script that replaces table ``inet tb`` with ``profile`` (``open`` leaves no table)."""
    if profile not in FIREWALL_PROFILES:
        raise ValueError(f"unknown firewall profile {profile!r}; known: {FIREWALL_PROFILES}")
    # Declaring the table first makes the delete succeed whether or not it existed.
    reset = "table inet tb\ndelete table inet tb\n"
    if profile == "open":
        return reset
    port_list = sorted(set(ports))
    if not port_list and profile in ("udp-drop", "udp-reject", "tcp-rst"):
        raise ValueError(f"firewall profile {profile!r} needs at least one port")
    port_set = "{ " + ", ".join(str(p) for p in port_list) + " }"
    rule = {
        "udp-drop": f"udp dport {port_set} drop",
        "udp-reject": f"udp dport {port_set} reject",  # ICMP port unreachable
        "tcp-rst": f"tcp dport {port_set} reject with tcp reset",
        "drop-all": 'iifname != "lo" drop',
        "loss30": 'iifname != "lo" numgen random mod 100 < 30 drop',
    }[profile]
    return (
        reset
        + "table inet tb {\n  chain input {\n"
        + "    type filter hook input priority 0; policy accept;\n"
        + f"    {rule}\n  }}\n}}\n"
    )


def apply_firewall(netns: str, profile: str, ports: Iterable[int] = ()) -> None:
    """Apply a profile to incoming traffic in ``netns``, atomically (one ``nft -f -``)."""
    run_checked(exec_argv(netns, ["nft", "-f", "-"]), stdin=firewall_rules(profile, ports))


@dataclass
class NetnsPair:
    """``agent`` (``agent_ip``) and ``pbx`` (``pbx_ip``), one /24 inside 10.99.0.0/16."""

    agent: str
    pbx: str
    agent_ip: str
    pbx_ip: str
    work_dir: Path
    kamailio: Kamailio | None = field(default=None, init=False)

    @classmethod
    def create(cls, work_dir: Path) -> NetnsPair:
        token = secrets.token_hex(3)
        net = f"10.99.{random.randrange(256)}"
        pair = cls(f"sdA{token}", f"sdP{token}", f"{net}.1", f"{net}.2", work_dir)
        veth_agent, veth_pbx = f"vA{token}", f"vP{token}"
        try:
            run_checked(["ip", "netns", "add", pair.agent])
            run_checked(["ip", "netns", "add", pair.pbx])
            # Create both ends inside the namespaces: the veth never appears on the host.
            run_checked(
                ["ip", "link", "add", veth_agent, "netns", pair.agent, "type", "veth",
                 "peer", "name", veth_pbx, "netns", pair.pbx]
            )  # fmt: skip
            for ns, dev, ip in (
                (pair.agent, veth_agent, pair.agent_ip),
                (pair.pbx, veth_pbx, pair.pbx_ip),
            ):
                run_checked(
                    exec_argv(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                   "net.ipv6.conf.default.disable_ipv6=1"])
                )  # fmt: skip
                run_checked(["ip", "-n", ns, "link", "set", "lo", "up"])
                run_checked(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
                run_checked(["ip", "-n", ns, "link", "set", dev, "up"])
        except BaseException:
            pair.destroy()
            raise
        return pair

    @property
    def namespaces(self) -> tuple[str, str]:
        return self.agent, self.pbx

    def exec_argv(self, netns: str, argv: Sequence[str]) -> list[str]:
        return exec_argv(netns, argv)

    def start_kamailio(self, timeout: float = 10.0, **options: Any) -> Kamailio:
        """Kamailio inside ``pbx`` bound to ``pbx_ip`` (``options``: Kamailio.start's
        variants, e.g. route_users=True); stopped by destroy()."""
        if self.kamailio is None:
            self.kamailio = Kamailio.start(
                self.work_dir / "kamailio",
                host=self.pbx_ip,
                netns=self.pbx,
                timeout=timeout,
                **options,
            )
        return self.kamailio

    def firewall(self, netns: str, profile: str, ports: Iterable[int] | None = None) -> None:
        """Apply a profile in ``netns``; ports default to the pair's Kamailio SIP + TLS ports."""
        if ports is None:
            ports = () if self.kamailio is None else (self.kamailio.port, self.kamailio.tls_port)
        apply_firewall(netns, profile, ports)

    def run_python(
        self, netns: str, code: str, timeout: float = 10.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with this interpreter inside ``netns``; ``import peers`` works there."""
        full_env = {**os.environ, "PYTHONPATH": str(PEERS_PARENT), **(env or {})}
        return subprocess.run(
            exec_argv(netns, [sys.executable, "-c", code]),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )

    def destroy(self) -> None:
        """Stop Kamailio, kill anything still running in the namespaces, delete them."""
        if self.kamailio is not None:
            self.kamailio.stop()
        delete_namespaces(self.namespaces)


def delete_namespaces(namespaces: Iterable[str]) -> None:
    """Kill anything still running in each namespace (only our own test processes can be in a
    namespace we made), then delete it; every namespace is tried before errors are raised."""
    errors = []
    for ns in namespaces:
        if not Path("/run/netns", ns).exists():
            continue
        pids = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            run_checked(["ip", "netns", "del", ns])
        except PeerStartError as exc:
            errors.append(str(exc))
    if errors:
        raise RuntimeError("; ".join(errors))
