"""SIP over WebSocket (RFC 7118) on the wire: open the `sip` subprotocol connection the way a
WebRTC softphone does (TLS verified, through the proxy the environment names) and exchange
SIP messages over it, one per WebSocket text message.

The WebSocket and proxy work is the `websockets` library's; the SIP text is checks/wire/sip.py's.
Every wait is bounded by the caller's deadline (a time.monotonic() value).
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from checks.wire import sip as sipwire
from checks.wire.budget import UNREACHABLE_ERRNOS
from checks.wire.sip import SipMessage
from checks.wire.tls import certificate_details
from diag import outcomes as o

SUBPROTOCOL = "sip"  # RFC 7118 section 4
DEFAULT_PORTS = {"ws": 80, "wss": 443}
CLOSE_TIMEOUT = 0.5  # closing the WebSocket may wait this long: callers keep it in reserve


@dataclass(frozen=True)
class WsTarget:
    url: str
    transport: str  # "ws" or "wss"
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> WsTarget:
        parts = urlsplit(url)
        transport = parts.scheme.lower()
        host = parts.hostname or ""
        return cls(url, transport, host, parts.port or DEFAULT_PORTS[transport], parts.path or "/")

    @property
    def hostport(self) -> str:
        return f"{sipwire.host_literal(self.host)}:{self.port}"


def proxy_for(target: WsTarget, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The HTTP(S) proxy a browser on this machine would use for ``target``: the environment's
    HTTPS_PROXY (wss) / HTTP_PROXY (ws) / ALL_PROXY unless NO_PROXY exempts the host, else the
    OS settings (Windows registry, macOS System Configuration) through urllib.
    {"url": redacted for reports, "source", "connect": the URL to use}, or None for direct."""

    def env(name: str) -> str | None:
        return environ.get(name.lower()) or environ.get(name.upper())

    names = (
        ("HTTPS_PROXY", "ALL_PROXY") if target.transport == "wss" else ("HTTP_PROXY", "ALL_PROXY")
    )
    found = next(((n, env(n)) for n in names if env(n)), None)
    source = "environment"
    quiet = not any(env(n) for n in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"))
    if found is None and quiet and sys.platform in ("win32", "darwin"):
        # The OS proxy settings (registry, System Configuration); on Linux urllib would only
        # read this process's environment again, not the one the run was given.
        system = urllib.request.getproxies()
        scheme = "https" if target.transport == "wss" else "http"
        value = system.get(scheme) or system.get("all")
        if value and not urllib.request.proxy_bypass(target.host):
            found, source = (scheme, value), "system"
    if found is None:
        return None
    name, value = found
    assert value is not None
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if source == "environment" and bypass(target.host, {"no": env("NO_PROXY") or ""}):
        return None
    if "://" not in value:
        value = "http://" + value
    return {
        "url": redact_url(value),
        "source": name.upper() if source == "environment" else "system",
        "connect": value,
    }


class WsFailure(Exception):
    """The WebSocket could not be opened; ``info`` says how far it got and why."""

    def __init__(self, outcome: str, stage: str, error: str, **info: Any) -> None:
        super().__init__(error)
        self.outcome, self.stage, self.error, self.info = outcome, stage, error, info


@dataclass
class WsSession:
    """An open SIP-over-WebSocket connection; ``info`` is what the report keeps about it."""

    conn: Any
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def local_port(self) -> int:
        return int(self.conn.local_address[1])

    def send(self, data: bytes) -> None:
        self.conn.send(data.decode())  # RFC 7118: text frames for UTF-8 SIP

    def exchange(
        self, request: bytes, probe_id: str, method: str, call_id: str | None, deadline: float
    ) -> tuple[SipMessage | None, int | None, list[str]]:
        """Send ``request`` and wait for its final answer: (answer, rtt ms, ignored messages).
        None when nothing final came by ``deadline``; ConnectionClosed if the server closes."""
        sent = time.monotonic()
        self.send(request)
        ignored: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None, ignored
            try:
                data = self.conn.recv(timeout=left)
            except TimeoutError:
                return None, None, ignored
            raw = data.encode() if isinstance(data, str) else bytes(data)
            try:
                msg = sipwire.match_response(raw, probe_id, method, call_id)
            except ValueError as exc:
                ignored.append(str(exc))
                continue
            if msg is None:
                ignored.append("an answer to another request")
                continue
            if sipwire.status_code(msg) >= 200:
                return msg, round((time.monotonic() - sent) * 1000), ignored


def _tls_context(ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system store ...
    if ca:
        context.load_verify_locations(cafile=ca)  # ... plus --ca, as for SIP over TLS
    return context


@contextmanager
def ws_session(
    target: WsTarget,
    ca: str | None,
    proxy: dict[str, str] | None,
    user_agent: str,
    deadline: float,
) -> Iterator[WsSession]:
    """Connect (through ``proxy``), TLS-verify (wss), upgrade with the `sip` subprotocol; the
    connection is closed on leaving. Raises WsFailure with the outcome (diag.outcomes) and the
    stage that failed."""
    from websockets import exceptions as wx
    from websockets.sync.client import connect

    info: dict[str, Any] = {
        "url": target.url,
        "proxy": None if proxy is None else {k: proxy[k] for k in ("url", "source")},
    }
    ssl_context = _tls_context(ca) if target.transport == "wss" else None
    budget = deadline - time.monotonic()
    if budget <= 0:
        raise WsFailure(o.NOT_FINISHED, "connect", "no time was left", **info)
    t0 = time.monotonic()
    via = f"the proxy {proxy['url']}" if proxy else f"{target.hostport}"
    try:
        conn = connect(
            target.url,
            ssl=ssl_context,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            proxy=proxy["connect"] if proxy else None,
            open_timeout=budget,
            user_agent_header=user_agent,
            compression=None,  # a softphone's SIP messages are small; keep the handshake plain
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT,
        )
    except wx.InvalidProxyStatus as exc:
        status = exc.response.status_code
        reason = exc.response.reason_phrase
        info["proxy"]["answer"] = f"{status} {reason}".strip()
        raise WsFailure(
            o.REFUSED,
            "proxy",
            f"{via} answered CONNECT {target.hostport} with {status} {reason}".strip(),
            http_status=status,
            **info,
        ) from None
    except (wx.InvalidProxyMessage, wx.InvalidProxy, wx.ProxyError) as exc:
        if info["proxy"] is not None:
            info["proxy"]["answer"] = str(exc)
        raise WsFailure(o.REFUSED, "proxy", f"{via}: {exc}", **info) from None
    except wx.InvalidStatus as exc:
        status = exc.response.status_code
        raise WsFailure(
            o.REFUSED,
            "upgrade",
            f"{target.hostport} answered the WebSocket upgrade with HTTP {status} "
            f"{exc.response.reason_phrase}".rstrip(),
            http_status=status,
            **info,
        ) from None
    except wx.InvalidHandshake as exc:  # a bad Upgrade/Accept/subprotocol answer
        raise WsFailure(o.REFUSED, "upgrade", f"WebSocket upgrade failed: {exc}", **info) from None
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc)
        info["certificate"] = _peek_certificate(target, proxy, why, deadline)
        raise WsFailure(o.TLS_UNTRUSTED, "tls", why, **info) from None
    except ssl.SSLError as exc:
        raise WsFailure(o.TLS_FAILED, "tls", f"TLS handshake failed: {exc}", **info) from None
    except TimeoutError:
        waited = time.monotonic() - t0
        raise WsFailure(
            o.TIMEOUT, "connect", f"no answer from {via} within {waited:.1f} s", **info
        ) from None
    except ConnectionRefusedError:
        raise WsFailure(o.REFUSED, "connect", f"{via} refused the connection", **info) from None
    except socket.gaierror as exc:
        raise WsFailure(
            o.DNS_FAILURE, "connect", f"cannot resolve {target.host}: {exc.strerror}", **info
        ) from None
    except OSError as exc:
        outcome = o.UNREACHABLE if exc.errno in UNREACHABLE_ERRNOS else o.ERROR
        raise WsFailure(outcome, "connect", exc.strerror or str(exc), **info) from None
    except ImportError as exc:  # a SOCKS proxy needs the optional python-socks package
        raise WsFailure(o.ERROR, "proxy", f"cannot use {via}: {exc}", **info) from None
    except wx.WebSocketException as exc:  # e.g. closed during the handshake
        raise WsFailure(o.ERROR, "upgrade", f"{type(exc).__name__}: {exc}", **info) from None
    info["handshake_ms"] = round((time.monotonic() - t0) * 1000)
    info["http_status"] = 101
    info["subprotocol"] = conn.subprotocol
    if info["proxy"] is not None:
        info["proxy"]["answer"] = "CONNECT accepted"
    tls = conn.socket if isinstance(conn.socket, ssl.SSLSocket) else None
    if tls is not None:
        info["tls_version"] = tls.version()
        info["certificate"] = certificate_details(
            tls.getpeercert(binary_form=True), verified=True, verify_error=None, now=time.time()
        )
    with conn:
        if conn.subprotocol != SUBPROTOCOL:
            raise WsFailure(
                o.REFUSED,
                "upgrade",
                f"{target.hostport} accepted the WebSocket but not the `sip` subprotocol",
                **info,
            )
        yield WsSession(conn, info)


def _peek_certificate(
    target: WsTarget, proxy: dict[str, str] | None, why: str, deadline: float
) -> dict[str, Any]:
    """The untrusted certificate's subject, issuer and validity, for the report (a direct,
    unverified handshake; through a proxy only the verification error is kept)."""
    empty = certificate_details(None, verified=False, verify_error=why, now=time.time())
    left = deadline - time.monotonic()
    if proxy is not None or left <= 0.05:
        return empty
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((target.host, target.port), timeout=left) as raw:
            with context.wrap_socket(raw, server_hostname=target.host) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError:
        return empty
    return certificate_details(der, verified=False, verify_error=why, now=time.time())


def redact_url(value: str) -> str:
    """Proxy URLs may carry user:password@; keep the host, drop the credentials."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "[unparseable]"
    if parts.username is None and parts.password is None:
        return value
    # The host and port as written (urllib splits user info off at the last '@'): reading
    # them through .hostname/.port would raise for a bad port and unbracket an IPv6 address.
    netloc = "[redacted]@" + parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
