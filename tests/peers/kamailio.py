"""Kamailio registrar (tests/README.md §Kamailio: htable users, no database), free ports, TLS."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import sip
from .process import (
    Daemon,
    PeerStartError,
    all_of,
    check_unix_path,
    free_port,
    tcp_accepts,
    udp_answers,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CONFIG = DATA_DIR / "kamailio" / "kamailio-testbed.cfg"
FR_TIMER_MS = 5000  # tm fr_timer: a relayed request with no final answer gets 408 after it

TLS_CFG = """\
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


class KamcmdError(RuntimeError):
    """kamcmd failed or Kamailio answered the RPC with an error."""


def make_self_signed_cert(directory: Path, ip: str) -> tuple[Path, Path]:
    """(certificate, key) for CN=ip with SAN IP:ip and DNS:localhost; the cert is its own CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "pbx.crt", directory / "pbx.key"
    argv = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip},DNS:localhost",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise PeerStartError(f"openssl req failed ({done.returncode}): {done.stderr.strip()}")
    return cert, key


@dataclass
class Kamailio:
    """A running Kamailio: UDP and TCP on ``port``, TLS on ``tls_port``, all on ``host``."""

    host: str
    port: int
    tls_port: int
    run_dir: Path
    ca_cert: Path
    daemon: Daemon
    netns: str | None = None
    ws_port: int | None = None  # SIP over WebSocket (websocket=True)
    wss_port: int | None = None  # SIP over secure WebSocket, same certificate as TLS
    send_from: str | None = None  # the second address requests to bindings leave from

    @classmethod
    def start(
        cls,
        work_dir: Path,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        timeout: float = 10.0,
        websocket: bool = False,
        digest_algorithm: str = "MD5",
        one_binding: bool = False,
        gruu: bool = True,
        route_users: bool = False,
        options_self: bool = False,
        nat_fixup: bool = False,
        send_from: str | None = None,
        fr_timer_ms: int = FR_TIMER_MS,
    ) -> Kamailio:
        """Write cert + tls.cfg into ``work_dir``, start Kamailio (inside ``netns`` if given).

        ``websocket``: also SIP over WS and WSS (Kamailio's websocket + xhttp modules) on ports
        of their own; ``digest_algorithm`` "SHA-256" challenges with RFC 7616 SHA-256;
        ``one_binding``: one registration per user, a new REGISTER replaces the others.

        Requests to users (tests/README.md §Kamailio): ``route_users`` authenticates OPTIONS
        and INVITE to a user (407) and relays them to every binding (``lookup``, parallel
        forking; 480 without one); ``options_self`` answers OPTIONS to a user 200 itself
        (wins over ``route_users`` for OPTIONS); ``nat_fixup`` saves a NATed REGISTER with its
        source address (nathelper ``fix_nated_register``), so requests go back through the NAT;
        ``send_from`` (an address of this host) also listens there on the same port and sends
        every request relayed to a binding from it; ``fr_timer_ms``: tm's final-answer timer
        (408 after it)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        run_dir = work_dir / "run"
        check_unix_path(run_dir / "kamailio_ctl")
        cert, key = make_self_signed_cert(work_dir / "tls", host)
        tls_cfg = work_dir / "tls.cfg"
        tls_cfg.write_text(TLS_CFG.format(key=key, cert=cert))
        hosts = [host] if send_from is None else [host, send_from]
        port = free_port(hosts, ("udp", "tcp"), netns=netns)
        tls_port = free_port([host], ("tcp",), netns=netns)
        while tls_port == port:
            tls_port = free_port([host], ("tcp",), netns=netns)
        ws_ports: list[int] = []
        while websocket and len(ws_ports) < 2:
            candidate = free_port([host], ("tcp",), netns=netns)
            if candidate not in (port, tls_port, *ws_ports):
                ws_ports.append(candidate)
        substitutions = {
            "SIP_IP": host,
            "SIP_PORT": str(port),
            "TLS_PORT": str(tls_port),
            "RUN_DIR": str(run_dir),
            "TLS_CFG": str(tls_cfg),
        }
        defines = ["-A", "WITH_TLS"]
        if websocket:
            substitutions.update(WS_PORT=str(ws_ports[0]), WSS_PORT=str(ws_ports[1]))
            defines += ["-A", "WITH_WEBSOCKET"]
        if digest_algorithm == "SHA-256":
            defines += ["-A", "AUTH_SHA256"]
        if not gruu:  # registrar gruu_enabled 0: no pub-gruu in the 200 OK to a REGISTER
            defines += ["-A", "NO_GRUU"]
        if one_binding:  # save("location", "0x04"): a REGISTER replaces the other bindings
            defines += ["-A", "ONE_BINDING"]
        if route_users:
            defines += ["-A", "ROUTE_USERS"]
        if options_self:
            defines += ["-A", "OPTIONS_SELF"]
        if nat_fixup:
            defines += ["-A", "NAT_FIXUP"]
        if send_from is not None:
            defines += ["-A", "SEND_FROM"]
            substitutions["SEND_IP"] = send_from
        if fr_timer_ms != FR_TIMER_MS:
            substitutions["FR_TIMER"] = str(fr_timer_ms)
        argv = [
            "kamailio", "-f", str(CONFIG), "-DD", "-E", "-m", "32", "-M", "4", *defines,
            *(f"--substdef=!{name}!{value}!g" for name, value in substitutions.items()),
            "-P", str(run_dir / "kamailio.pid"), "-Y", str(run_dir),
        ]  # fmt: skip
        # TZ=UTC: the 200 OK to REGISTER carries "Date: $timef(... GMT)", which is local time.
        daemon = Daemon("kamailio", argv, work_dir, netns=netns, env={"TZ": "UTC"}, cwd=work_dir)
        daemon.start(
            all_of(
                udp_answers(
                    host,
                    port,
                    lambda local: sip.request("OPTIONS", f"sip:{host}:{port}", local),
                    lambda answer: answer.startswith(b"SIP/2.0 200 "),
                    netns=netns,
                ),
                tcp_accepts(host, port, netns),
                tcp_accepts(host, tls_port, netns),
                *(tcp_accepts(host, p, netns) for p in ws_ports),
                *([] if send_from is None else [tcp_accepts(send_from, port, netns)]),
            ),
            timeout,
        )
        server = cls(host, port, tls_port, run_dir, cert, daemon, netns, send_from=send_from)
        if websocket:
            server.ws_port, server.wss_port = ws_ports
        return server

    @property
    def udp_port(self) -> int:
        return self.port

    @property
    def tcp_port(self) -> int:
        return self.port

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def port_for(self, transport: str) -> int:
        return self.tls_port if transport.lower() == "tls" else self.port

    def registrar_uri(self, transport: str = "udp") -> str:
        """E.g. ``sip:127.0.0.1:PORT;transport=tcp``; the port follows the transport."""
        transport = transport.lower()
        return f"sip:{self.host}:{self.port_for(transport)};transport={transport}"

    def ws_url(self, transport: str = "wss") -> str:
        """``ws://host:WS_PORT/`` or ``wss://host:WSS_PORT/`` (started with websocket=True)."""
        port = self.wss_port if transport == "wss" else self.ws_port
        if port is None:
            raise RuntimeError("this Kamailio was started without websocket=True")
        return f"{transport}://{self.host}:{port}/"

    def kamcmd(self, *args: str) -> str:
        """Run one RPC over the ctl socket, e.g. ``kamcmd("htable.dump", "users")``."""
        argv = ["kamcmd", "-s", f"unix:{self.run_dir / 'kamailio_ctl'}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        # kamcmd exits 0 even when the RPC fails; the answer then starts with "error:".
        if done.returncode != 0 or done.stdout.startswith("error:"):
            raise KamcmdError(
                f"{' '.join(argv)} -> exit {done.returncode}: {(done.stdout + done.stderr).strip()}"
            )
        return done.stdout

    def bindings(self, user: str) -> list[dict[str, str]]:
        """Registered contacts of AoR ``user`` (``ul.lookup location``), one dict per Contact."""
        try:
            dump = self.kamcmd("ul.lookup", "location", user)
        except KamcmdError as exc:
            if "AOR not found" in str(exc):
                return []
            raise
        contacts: list[dict[str, str]] = []
        for line in dump.splitlines():
            line = line.strip()
            if line == "Contact: {":
                contacts.append({})
            elif contacts and (field := re.fullmatch(r"([\w-]+): (.*)", line)):
                contacts[-1][field.group(1)] = field.group(2)
        return contacts

    def log_text(self) -> str:
        return self.daemon.log_text()

    def stop(self) -> int | None:
        return self.daemon.stop()
