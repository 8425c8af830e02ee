"""The run's one pjsua2 Endpoint: created lazily, shared by SIP checks, torn down once.

pjsua2's Endpoint is process-global: the run's one endpoint lives in the SIP worker process
(checks/sip/worker.py), so a PJSIP abort() cannot take the run and its report down. pjsua2 is a
native library and is only imported here, on first use by a check.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

INSTALL_HINT = (
    "install PJSIP's Python binding: pip install pjsua2-python==2.15.1.post1 "
    "(wheels for Linux x86_64, macOS and Windows, CPython 3.8-3.12)"
)


class SipUnavailable(Exception):
    """pjsua2 cannot be loaded on this machine; SIP checks report skip with INSTALL_HINT."""


def load_pjsua2() -> Any:
    try:
        import pjsua2
    except Exception as exc:  # ImportError, or OSError from a broken native library
        raise SipUnavailable(f"pjsua2 cannot be loaded ({type(exc).__name__}: {exc})") from None
    return pjsua2


def t1_for_budget(seconds: float) -> int:
    """SIP timer T1 (ms) so that a transaction gives up (Timer B/F = 64*T1) inside `seconds`.

    pjsip's default T1 of 500 ms means 32 s per black-holed request: far beyond a run's budget.
    Keep 20 % headroom; never below 10 ms (Timer F 0.64 s), never above the default (500 ms).
    """
    return int(max(10, min(500, seconds * 1000 * 0.8 / 64)))


def source_address_for(host: str, port: int = 5060) -> tuple[int, str] | None:
    """(family, local address) the OS would use to reach host; IPv4 preferred.

    A connected UDP socket sends nothing; it only asks the routing table.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                return int(family), str(s.getsockname()[0]).split("%", 1)[0]
        except OSError:
            continue
    return None


def system_ca_file() -> str | None:
    """The OS CA bundle for pjsip's own OpenSSL (it does not read the system store itself)."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for candidate in (
        paths.cafile,
        paths.openssl_cafile,
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


PROBE_HEADER = "X-Sipdiag-Probe"  # on every REGISTER we send: ties the attempt to its Call-ID


class SipTrace:
    """What pjsip exchanged, from its message log, reduced to what diagnosis needs.

    Requests we send carry Authorization headers (digest responses derived from the
    password): of a transmitted message only its Call-ID and our probe header are read, and
    nothing of it is kept. Received responses are kept parsed, keyed by Call-ID.
    """

    def __init__(self) -> None:
        self._responses: list[tuple[str, int, str]] = []  # (call_id, code, raw response)
        self._call_ids: dict[str, str] = {}  # probe id -> Call-ID
        self._sent: dict[str, dict[str, str | None]] = {}  # probe id -> Via/Contact we sent
        self._lock = threading.Lock()
        self._log: Any = None  # the run's SIP trace file (support bundles), if asked for

    def log_to(self, path: str) -> None:
        """Also append every SIP message to `path`, its Authorization/Proxy-Authorization
        headers scrubbed before it is written (owner-only file: it still names the account and
        addresses). By structure, not by the password: pjsip never sends the password itself,
        and a numeric one may equal a port or an extension that the trace must keep."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, msg: str) -> None:
        if self._log is not None and (msg.startswith("TX ") or msg.startswith("RX ")):
            from diag.scrub import scrub_sip

            with self._lock:
                log = self._log  # re-read under the lock: a failed write clears it
                try:
                    if log is not None:
                        log.write(scrub_sip(msg).rstrip("\n") + "\n\n")
                        log.flush()
                except OSError:  # e.g. disk full: stop tracing, never break the probe
                    self._log = None
        first, _, raw = msg.partition("\n")
        if msg.startswith("TX ") and " Request msg " in first:
            self._note_request(raw)
        elif msg.startswith("RX ") and " Response msg " in first:
            self._note_response(raw)

    def _note_request(self, raw: str) -> None:
        from checks.wire.sip import parse

        parsed = parse(raw)  # parse() itself drops Authorization/Proxy-Authorization
        probe = parsed.first(PROBE_HEADER) if parsed else None
        call_id = parsed.first("call-id") if parsed else None
        if parsed and probe and call_id:
            with self._lock:
                self._call_ids.setdefault(probe, call_id)
                # What left this machine, to compare with what the registrar saw (SIP ALG).
                self._sent.setdefault(
                    probe, {"via": parsed.first("via"), "contact": parsed.first("contact")}
                )

    def _note_response(self, raw: str) -> None:
        from checks.wire.sip import parse

        parsed = parse(raw)
        if parsed is None:
            return
        parts = parsed.start_line.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        with self._lock:
            self._responses.append((parsed.first("call-id") or "", code, raw))

    def call_id(self, probe: str) -> str | None:
        with self._lock:
            return self._call_ids.get(probe)

    def sent(self, probe: str) -> dict[str, str | None] | None:
        """The Via and Contact of the first request sent for this probe."""
        with self._lock:
            return self._sent.get(probe)

    def responses(self, call_id: str) -> list[tuple[int, str]]:
        """(code, raw response) received on this Call-ID, in order."""
        with self._lock:
            return [(code, raw) for cid, code, raw in self._responses if cid == call_id]


class SipStack:
    def __init__(self, user_agent: str, registrar_host: str | None, ca_file: str | None = None):
        self.user_agent = user_agent
        self.registrar_host = registrar_host
        self.ca_file = ca_file
        self.trace = SipTrace()
        self._writer: Any = None
        self._lock = threading.RLock()
        self._ep: Any = None
        self._pj: Any = None
        self._lib: Any = None
        self.transport_ids: dict[str, int] = {}
        self.local_address: str | None = None
        self.ipv6 = False

    @contextmanager
    def session(self, route_to: str | None = None) -> Iterator[Any]:
        """Exclusive use of the endpoint by one check; yields the pjsua2 module.

        The first session starts the endpoint bound to the local address that routes to
        `route_to` (default: the registrar host)."""
        with self._lock:
            self._ensure_started(route_to or self.registrar_host)
            ep = self._ep
            if not ep.libIsThreadRegistered():
                ep.libRegisterThread(threading.current_thread().name[:30])
            yield self._pj

    def set_transaction_budget(self, seconds: float) -> None:
        """Bound every SIP transaction that starts from now on (the timers are process-wide)."""
        t1 = t1_for_budget(seconds)
        self._lib.pjsip_tsx_set_timers(t1, 4000, 5000, 64 * t1)

    def _ensure_started(self, route_to: str | None) -> None:
        if self._ep is not None:
            return
        pj: Any = load_pjsua2()
        # Bind to the address that routes to the registrar, as a softphone would use, so
        # Via/Contact carry a reachable address (on loopback or in a VPN alike).
        family: int = socket.AF_INET
        route = source_address_for(route_to) if route_to else None
        if route is not None:
            family, self.local_address = route
        v6 = self.ipv6 = family == socket.AF_INET6
        lib = ctypes.CDLL(pj._pjsua2.__file__)  # pjsip is linked statically and exports its C API
        lib.pj_log_set_level(0)  # silence the banner libCreate() prints
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # no pjsip worker thread: checks pump events themselves
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = self.user_agent
        trace = self.trace

        class Writer(pj.LogWriter):  # only ever sees what pjsip logs; keeps RX responses
            def write(self, entry: Any) -> None:
                trace.write(entry.msg)

        self._writer = Writer()  # must outlive the endpoint
        # The writer receives entries up to consoleLevel; 4 includes the message log.
        cfg.logConfig.level = 4
        cfg.logConfig.consoleLevel = 4
        cfg.logConfig.msgLogging = True
        cfg.logConfig.decor = 0
        cfg.logConfig.writer = self._writer
        ep.libInit(cfg)
        # pjsip switches any request over 1300 bytes from UDP to TCP; a softphone test over
        # UDP must stay on UDP (int #4 of pjsip_sip_cfg_var is endpt.disable_tcp_switch).
        (ctypes.c_uint * 5).in_dll(lib, "pjsip_sip_cfg_var")[4] = 1
        for name, kind in (
            ("udp", pj.PJSIP_TRANSPORT_UDP6 if v6 else pj.PJSIP_TRANSPORT_UDP),
            ("tcp", pj.PJSIP_TRANSPORT_TCP6 if v6 else pj.PJSIP_TRANSPORT_TCP),
            ("tls", pj.PJSIP_TRANSPORT_TLS6 if v6 else pj.PJSIP_TRANSPORT_TLS),
        ):
            tc = pj.TransportConfig()
            tc.port = 0
            if self.local_address:
                tc.boundAddress = self.local_address
            if name == "tls":
                tc.tlsConfig.verifyServer = True  # TLS verified by default
                tc.tlsConfig.CaListFile = self.ca_file or system_ca_file() or ""
            try:
                self.transport_ids[name] = ep.transportCreate(kind, tc)
            except pj.Error:
                continue  # e.g. no TLS support: the check reports the missing transport
        ep.libStart()
        ep.audDevManager().setNullDev()
        self._pj, self._ep, self._lib = pj, ep, lib

    def pump(self, done: Callable[[], bool], deadline: float) -> bool:
        """Handle SIP events until done() or the monotonic deadline; returns done()."""
        while not done() and time.monotonic() < deadline:
            self._ep.libHandleEvents(20)
        return done()

    def close(self) -> None:
        """Destroy the endpoint. Every Account/Call object must already be deleted."""
        with self._lock:
            ep, self._ep = self._ep, None
            if ep is None:
                return
            if not ep.libIsThreadRegistered():
                ep.libRegisterThread("sipdiag-main")
            # Checks un-REGISTER their own bindings before returning, so no network is needed.
            ep.libDestroy(self._pj.PJSUA_DESTROY_NO_NETWORK)
