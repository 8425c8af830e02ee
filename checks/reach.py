"""net.sip-options: one raw OPTIONS to the registrar over UDP, TCP and TLS, side by side.

All three transports are always probed, in parallel, whatever the softphone is configured to
use: a blocked transport only means something next to one that works. The wire format lives
in checks/sipwire.py; this module does the sockets, the timing, the TLS certificate evidence
and the verdict with its hints (longer than most modules: three transports, one check).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from checks import sipwire
from checks.dns import DEFAULT_PORTS, Target, targets_for
from checks.sipmsg import SipMessage, via_received
from diag.context import Context
from diag.model import CheckResult, Status
from diag.target import Registrar

ALL_TRANSPORTS = ("udp", "tcp", "tls")
PROBE_TIMEOUT = 2.0  # seconds per transport: a healthy registrar answers in milliseconds
UDP_RETRANSMIT = 0.5  # RFC 3261 T1: one retransmission, as a softphone would
MIN_CONCLUSIVE_WAIT = 1.0  # a shorter wait that timed out is no evidence (budget too small)
RESERVE = 0.15  # kept back from the deadline to build the result
MAX_IGNORED = 10  # stray datagrams listed in details (a flood must not bloat the report)

# What happened to one transport's probe; diagnosis keys on these words.
ANSWERED = "answered"  # any SIP response (even 4xx/5xx): the path works
TIMEOUT = "timeout"  # nothing came back in time
REFUSED = "refused"  # ICMP port unreachable (UDP) or TCP RST
UNREACHABLE = "unreachable"  # no route to the host / network unreachable
TLS_UNTRUSTED = "tls_untrusted"  # the certificate failed verification
TLS_FAILED = "tls_failed"  # the TLS handshake failed for another reason
ERROR = "error"  # something else (closed without an answer, name not resolved, ...)
NOT_FINISHED = "not_finished"  # the check's budget ran out first: no evidence either way
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class CaFileError(Exception):
    """The --ca file cannot be loaded: the user's input, not the network, is at fault."""


@dataclass(frozen=True)
class Plan:
    """Where one transport's probe goes and how its TLS identity is checked."""

    transport: str
    host: str  # name the target came from (for the R-URI)
    port: int
    address: str | None  # None: resolve host in the probe thread
    source: str  # "dns" (net.dns / targets_for) or "derived" (registrar + default port)
    server_hostname: str  # the registrar host: SNI and the certificate name check
    ca: str | None
    probe_id: str
    user_agent: str


def derived_port(registrar: Registrar, transport: str, configured: tuple[str, ...]) -> int:
    """The port to use for ``transport`` when DNS gave no target for it.

    An explicit URI port belongs to the configured transports, and to the one sharing its
    port class (UDP and TCP share 5060; TLS has 5061): ``sip:pbx:5080`` probes UDP and TCP
    on 5080 and TLS on 5061; ``sips:pbx:5071`` probes TLS on 5071 and UDP/TCP on 5060.
    """
    if registrar.port is None:
        return DEFAULT_PORTS[transport]
    if transport in configured:
        return registrar.port
    tls_class = transport == "tls"
    if any((t == "tls") == tls_class for t in configured):
        return registrar.port
    return DEFAULT_PORTS[transport]


def find_targets(ctx: Context) -> list[Target]:
    """targets_for(ctx), plus RFC 3263 targets for the transports the user did not configure.

    With an explicit port or an IP address RFC 3263 does no SRV lookup, so there is nothing
    more to ask DNS: plan_probes() derives those targets instead.
    """
    found = targets_for(ctx)
    registrar = ctx.settings.target
    assert registrar is not None
    configured = ctx.settings.effective_transports
    have = {t.transport for t in found}
    missing = tuple(t for t in ALL_TRANSPORTS if t not in configured and t not in have)
    if missing and registrar.port is None and not _is_ip(registrar.host):
        others = {k: v for k, v in ctx.results.items() if k != "net.dns"}
        more = replace(ctx, settings=replace(ctx.settings, transports=missing), results=others)
        found = [*found, *targets_for(more)]
    return found


def plan_probes(ctx: Context, dns_targets: list[Target]) -> list[Plan]:
    """One probe per transport: DNS's first target for it, else one derived from the registrar."""
    registrar = ctx.settings.target
    assert registrar is not None  # requires=("registrar",)
    configured = tuple(ctx.settings.effective_transports)
    plans = []
    for transport in ALL_TRANSPORTS:
        found = next((t for t in dns_targets if t.transport == transport), None)
        address: str | None
        if found is not None:
            host, port, address, source = found.host, found.port, found.address, "dns"
        else:
            # Reuse an address DNS already gave for the registrar host (no second lookup).
            address = next((t.address for t in dns_targets if t.host == registrar.host), None)
            if address is None and _is_ip(registrar.host):
                address = registrar.host
            host, port, source = (
                registrar.host,
                derived_port(registrar, transport, configured),
                "derived",
            )
        plans.append(
            Plan(
                transport=transport,
                host=host,
                port=port,
                address=address,
                source=source,
                server_hostname=registrar.host,
                ca=ctx.settings.ca,
                probe_id=sipwire.probe_id(ctx.run_id, transport),
                user_agent=ctx.user_agent,
            )
        )
    return plans


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _hostport(host: str, port: int) -> str:
    return f"{sipwire.host_literal(host)}:{port}"


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class _Probe:
    """One transport's probe; fills ``self.out`` step by step, so a late result still says
    how far it got."""

    def __init__(
        self, plan: Plan, deadline: float, clock: Callable[[], float], now: Callable[[], float]
    ) -> None:
        self.plan = plan
        self.deadline = deadline
        self.clock = clock
        self.now = now  # wall clock (epoch seconds) for the certificate's days_left
        self.wait = deadline - clock()
        self.local_ip = ""
        self.verify_error: str | None = None
        self.out: dict[str, Any] = {
            "target": _hostport(plan.host, plan.port),
            "target_source": plan.source,
            "address": plan.address,
            "local": None,
            "outcome": NOT_FINISHED,
            "code": None,
            "reason": None,
            "rtt_ms": None,
            "connect_ms": None,
            "server": None,
            "allow": [],
            "received": None,
            "rport": None,
            "call_id": None,
            "error": None,
        }
        if plan.transport == "tls":
            self.out["handshake_ms"] = None
            self.out["certificate"] = None

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def _arm(self, sock: socket.socket, until: float | None = None) -> None:
        """Time the next socket call out at ``until`` (default: the probe's deadline)."""
        if self.clock() >= self.deadline:
            raise TimeoutError
        wait = min(self.deadline, until or self.deadline) - self.clock()
        sock.settimeout(max(wait, 0.001))  # never 0: that would make the socket non-blocking

    def run(self) -> None:
        try:
            address = self.plan.address or self._resolve()
            self.out["address"] = address
            if self.plan.transport == "udp":
                self._udp(address)
            else:
                self._stream(address)
        except TimeoutError:
            if self.out["code"] is not None:  # a provisional answer, then no final one
                self.out["error"] = f"no final answer after {self.out['code']}"
            elif self.wait < MIN_CONCLUSIVE_WAIT:
                self._end(NOT_FINISHED, f"only {self.wait:.1f} s of the budget was left to wait")
            else:
                self._end(TIMEOUT, f"no answer within {self.wait:.1f} s")
        except ConnectionRefusedError as exc:
            self._end(REFUSED, exc)
        except ssl.SSLError as exc:
            self._end(TLS_FAILED, exc)
        except OSError as exc:
            self._end(UNREACHABLE if exc.errno in _UNREACHABLE_ERRNOS else ERROR, exc)
        except (ValueError, CaFileError) as exc:  # a stream we cannot frame; a bad --ca file
            self._end(ERROR, exc)
        if self.verify_error is not None:
            # The certificate is the evidence, whatever the unverified retry then did.
            self.out["outcome"] = TLS_UNTRUSTED
            if self.out["certificate"] is None:
                self.out["certificate"] = certificate_details(
                    None, None, verified=False, verify_error=self.verify_error, now=self.now()
                )

    def _resolve(self) -> str:
        kind = socket.SOCK_DGRAM if self.plan.transport == "udp" else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(self.plan.host, self.plan.port, type=kind)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {self.plan.host}: {exc.strerror}") from None
        return str(infos[0][4][0])

    def _end(self, outcome: str, exc: BaseException | str) -> None:
        self.out["outcome"] = outcome
        self.out["error"] = exc if isinstance(exc, str) else _describe_error(exc)

    def _socket(self, address: str, kind: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return socket.socket(family, kind)

    def _request(self, sock: socket.socket) -> bytes:
        local = sock.getsockname()
        self.out["local"] = _hostport(str(local[0]), int(local[1]))
        self.local_ip = str(local[0])
        uri = f"sip:{_hostport(self.plan.host, self.plan.port)}"
        if self.plan.transport != "udp":
            uri += f";transport={self.plan.transport}"
        self.out["call_id"] = f"{self.plan.probe_id}@{sipwire.host_literal(self.local_ip)}"
        return sipwire.options_request(
            uri,
            self.plan.transport,
            self.local_ip,
            int(local[1]),
            self.plan.probe_id,
            self.plan.user_agent,
        )

    def _udp(self, address: str) -> None:
        with self._socket(address, socket.SOCK_DGRAM) as sock:
            # Connected, so an ICMP port unreachable comes back as ConnectionRefusedError.
            sock.connect((address, self.plan.port))
            request = self._request(sock)
            sent = self.clock()
            sock.send(request)
            retransmit_at: float | None = sent + UDP_RETRANSMIT
            while True:
                if retransmit_at is not None and self.clock() >= retransmit_at:
                    sock.send(request)  # the same bytes: same branch, same transaction
                    self.out["retransmitted"] = True
                    retransmit_at = None
                    continue
                wake = self.deadline if retransmit_at is None else min(retransmit_at, self.deadline)
                self._arm(sock, wake)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                if self._accept(data, sent):
                    return

    def _accept(self, data: bytes, sent: float) -> bool:
        """Record ``data`` if it is our final answer; stray or provisional ones are skipped."""
        try:
            msg = sipwire.match_response(data, self.plan.probe_id)
        except ValueError as exc:
            self._ignore(str(exc))
            return False
        if msg is None:
            self._ignore("an answer to another request")
            return False
        self._record(msg, sent)
        return sipwire.status_code(msg) >= 200

    def _ignore(self, why: str) -> None:
        ignored = self.out.setdefault("ignored", [])
        if len(ignored) < MAX_IGNORED:
            ignored.append(why)

    def _record(self, msg: SipMessage, sent: float) -> None:
        self.out["outcome"] = ANSWERED
        self.out["error"] = None
        self.out["code"] = sipwire.status_code(msg)
        self.out["reason"] = sipwire.reason_phrase(msg)
        self.out["rtt_ms"] = _ms(self.clock() - sent)
        self.out["server"] = msg.first("server") or msg.first("user-agent")
        self.out["allow"] = sipwire.header_list(msg, "allow")
        via = sipwire.top_via(msg)
        if via:
            self.out["received"], self.out["rport"] = via_received(via)

    def _connect(self, address: str) -> socket.socket:
        sock = self._socket(address, socket.SOCK_STREAM)
        try:
            self._arm(sock)
            t0 = self.clock()
            sock.connect((address, self.plan.port))
            self.out["connect_ms"] = _ms(self.clock() - t0)
        except BaseException:
            sock.close()
            raise
        return sock

    def _stream(self, address: str) -> None:
        sock = self._connect(address)
        try:
            if self.plan.transport == "tls":
                tls = self._handshake(sock, verify=True)
                if tls is None:  # untrusted: look at the certificate without verifying
                    sock.close()
                    sock = self._connect(address)
                    tls = self._handshake(sock, verify=False)
                if tls is None:  # pragma: no cover - nothing is verified on the retry
                    raise ssl.SSLError("handshake without verification failed")
                sock = tls
            self._exchange(sock)
        finally:
            sock.close()

    def _handshake(self, sock: socket.socket, verify: bool) -> ssl.SSLSocket | None:
        context = ssl.create_default_context()  # the system store ...
        if self.plan.ca:
            try:
                context.load_verify_locations(cafile=self.plan.ca)  # ... plus --ca
            except (ssl.SSLError, OSError) as exc:
                raise CaFileError(f"cannot load the --ca file {self.plan.ca}: {exc}") from None
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._arm(sock)
        t0 = self.clock()
        try:
            tls = context.wrap_socket(sock, server_hostname=self.plan.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            self.verify_error = exc.verify_message or str(exc)
            return None
        self.out["handshake_ms"] = _ms(self.clock() - t0)
        self.out["tls_version"] = tls.version()
        der = tls.getpeercert(binary_form=True)
        decoded = tls.getpeercert() if verify else None
        self.out["certificate"] = certificate_details(
            der, decoded, verified=verify, verify_error=self.verify_error, now=self.now()
        )
        return tls

    def _exchange(self, sock: socket.socket) -> None:
        request = self._request(sock)
        sent = self.clock()
        self._arm(sock)
        sock.sendall(request)
        buffer = b""
        while True:
            size = sipwire.message_length(buffer)
            if size is not None:
                message, buffer = buffer[:size], buffer[size:]
                if self._accept(message, sent):
                    break
                continue
            self._arm(sock)
            chunk = sock.recv(65535)
            if not chunk:
                raise OSError("the server closed the connection without answering")
            buffer += chunk


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.errno:
        return exc.strerror
    return str(exc) or type(exc).__name__


def certificate_details(
    der: bytes | None,
    decoded: Mapping[str, Any] | None,
    verified: bool,
    verify_error: str | None,
    now: float,
) -> dict[str, Any]:
    """Subject, SAN, issuer and validity of the peer's certificate, for the report."""
    info: dict[str, Any] = {
        "subject": None,
        "subject_cn": None,
        "san": [],
        "issuer": None,
        "self_signed": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "sha256": hashlib.sha256(der).hexdigest() if der else None,
        "verified": verified,
        "verify_error": verify_error,
    }
    if not decoded and der:
        decoded = decode_der_certificate(der)
    if not decoded:
        return info
    subject = _dn(decoded.get("subject", ()))
    issuer = _dn(decoded.get("issuer", ()))
    names = {"IP Address": "IP"}
    info.update(
        subject=subject,
        subject_cn=_dn_field(decoded.get("subject", ()), "commonName"),
        san=[
            f"{names.get(kind, kind)}:{value}" for kind, value in decoded.get("subjectAltName", ())
        ],
        issuer=issuer,
        self_signed=subject == issuer,
    )
    for key, field in (("not_before", "notBefore"), ("not_after", "notAfter")):
        if decoded.get(field):
            with contextlib.suppress(ValueError):
                stamp = ssl.cert_time_to_seconds(decoded[field])
                info[key] = (
                    dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
                    .isoformat()
                    .replace("+00:00", "Z")
                )
                if key == "not_after":
                    info["days_left"] = int((stamp - now) // 86400)
    return info


_DN_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


def _dn(rdns: Any) -> str:
    return ",".join(f"{_DN_SHORT.get(k, k)}={v}" for rdn in rdns for k, v in rdn)


def _dn_field(rdns: Any, wanted: str) -> str | None:
    return next((v for rdn in rdns for k, v in rdn if k == wanted), None)


def decode_der_certificate(der: bytes) -> dict[str, Any] | None:
    """The stdlib's certificate decoder (the one behind getpeercert()); it reads a PEM file.

    Without verification getpeercert() returns {}, and `cryptography` is not a dependency.
    """
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    fd, path = tempfile.mkstemp(prefix="sipdiag-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ssl.DER_cert_to_PEM_cert(der))
        decoded: dict[str, Any] = decode(path)
        return decoded
    except (ssl.SSLError, ValueError, OSError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _run_with_deadline(
    fn: Callable[[], list[Target]], deadline: float, clock: Callable[[], float]
) -> tuple[list[Target], str | None]:
    """fn() in a daemon thread, given until ``deadline``: (targets, what went wrong)."""
    box: list[list[Target]] = []
    failure: list[str] = []

    def call() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # noqa: BLE001 - a DNS bug must not hide the transport evidence
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=call, daemon=True, name="sipdiag-options-dns")
    thread.start()
    thread.join(max(0.0, deadline - clock()))
    if box:
        return box[0], None
    return [], failure[0] if failure else "name resolution did not finish in time"


def check_options(ctx: Context) -> CheckResult:
    settings = ctx.settings
    registrar = settings.target
    assert registrar is not None  # requires=("registrar",)
    clock = ctx.monotonic
    end = ctx.deadline - RESERVE
    # DNS may take half of a probe's time at most; a probe then still gets the other half.
    dns_deadline = min(end - PROBE_TIMEOUT / 2, clock() + PROBE_TIMEOUT)
    dns_targets, dns_error = _run_with_deadline(
        lambda: find_targets(ctx), min(end, max(dns_deadline, clock() + 0.2)), clock
    )
    probe_deadline = clock() + min(PROBE_TIMEOUT, max(0.0, end - clock()))
    now = ctx.now().timestamp() - clock()  # wall clock = monotonic + this offset
    probes = {
        plan.transport: _Probe(plan, probe_deadline, clock, lambda: now + clock())
        for plan in plan_probes(ctx, dns_targets)
    }
    threads = {
        t: threading.Thread(target=probe.run, daemon=True, name=f"sipdiag-options-{t}")
        for t, probe in probes.items()
    }
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, end - clock()))
    results = {}
    for t, probe in probes.items():
        results[t] = dict(probe.out)
        if threads[t].is_alive():  # e.g. stuck in getaddrinfo(); its sockets time out soon
            results[t].update(outcome=NOT_FINISHED, error="still running at the deadline")
    configured = tuple(settings.effective_transports)
    return verdict(results, configured, registrar, bool(settings.ca), dns_error)


def verdict(
    results: Mapping[str, dict[str, Any]],
    configured: tuple[str, ...],
    registrar: Registrar,
    ca_given: bool = False,
    dns_error: str | None = None,
) -> CheckResult:
    """Status, summary, hint and details from the three transports' results (pure)."""
    local_ips = {t: _local_ip(r) for t, r in results.items()}
    public = sorted(
        {
            r["received"]
            for t, r in results.items()
            if r.get("received") and not _same_ip(r["received"], local_ips[t])
        }
    )
    details: dict[str, Any] = {
        "registrar": registrar.host,
        "configured_transports": list(configured),
        "transports": {t: results[t] for t in ALL_TRANSPORTS if t in results},
        "public_addresses": public,
        "local_address": next((ip for ip in local_ips.values() if ip), None),
        "call_ids": [r["call_id"] for r in results.values() if r.get("call_id")],
    }
    if dns_error:
        details["dns_error"] = dns_error
    summary = "; ".join(_summary_part(t, results[t]) for t in ALL_TRANSPORTS if t in results)
    bad = [t for t in configured if t in results and not _usable(results[t])]
    evidence = [t for t in bad if results[t]["outcome"] != NOT_FINISHED]
    if evidence:
        hint = _hint(evidence[0], results, registrar, ca_given, suggest_switch=True)
        return CheckResult(Status.FAIL, summary, details, hint)
    if bad:
        return CheckResult(Status.ERROR, summary, details, "re-run with a larger --timeout")
    spare = [
        t
        for t in ALL_TRANSPORTS
        if t not in configured
        and t in results
        and results[t]["outcome"] != NOT_FINISHED
        and not _usable(results[t])
    ]
    if spare:
        hint = _hint(spare[0], results, registrar, ca_given, suggest_switch=False)
        works = "/".join(t.upper() for t in configured)
        return CheckResult(
            Status.WARN, summary, details, f"{works} works; {spare[0].upper()} would not: {hint}"
        )
    return CheckResult(Status.PASS, summary, details)


def _local_ip(r: Mapping[str, Any]) -> str | None:
    local = r.get("local")
    return str(local).rsplit(":", 1)[0].strip("[]") if local else None


def _same_ip(a: str, b: str | None) -> bool:
    if b is None:
        return False
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _usable(r: Mapping[str, Any]) -> bool:
    """Answered, and for TLS over a verified certificate: what a softphone could use."""
    return bool(r["outcome"] == ANSWERED)


def _summary_part(transport: str, r: Mapping[str, Any]) -> str:
    outcome = r["outcome"]
    answer = f"{r['code']} {r['reason'] or ''}".strip() + f" {r['rtt_ms']} ms"
    if outcome == ANSWERED:
        return f"{transport} {answer}"
    if outcome == TLS_UNTRUSTED:
        why = (r.get("certificate") or {}).get("verify_error")
        if r["code"] is not None:
            return f"{transport} untrusted ({why}), unverified: {answer}"
        return f"{transport} untrusted ({why})"
    if outcome == TIMEOUT:
        connected = " (connected, then silence)" if r.get("connect_ms") is not None else ""
        return f"{transport} no answer{connected}"
    label = {
        REFUSED: "refused",
        UNREACHABLE: "unreachable",
        TLS_FAILED: "handshake failed",
        NOT_FINISHED: "not finished",
    }
    return f"{transport} {label.get(outcome, 'error')} ({r['error']})"


_PROTO = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


def _hint(
    transport: str,
    results: Mapping[str, dict[str, Any]],
    registrar: Registrar,
    ca_given: bool,
    suggest_switch: bool,
) -> str:
    """The next concrete action for ``transport``'s problem."""
    r = results[transport]
    host = registrar.host_literal  # IPv6 in brackets
    port = r["target"].rsplit(":", 1)[1]
    proto = "TCP" if transport == "tls" else _PROTO[transport]
    where = f"{proto} {port}{' (SIP over TLS)' if transport == 'tls' else ''} to {host}"
    working = [t for t in ALL_TRANSPORTS if t != transport and _usable(results[t])]
    switch = f", or re-run with --transport {working[0]}" if working and suggest_switch else ""
    outcome = r["outcome"]
    if outcome == TLS_UNTRUSTED:
        return _tls_hint(r, host, ca_given)
    if outcome == TIMEOUT and all(x["code"] is None for x in results.values()):
        return (
            f"nothing answers at {host}: allow outbound SIP (UDP 5060, TCP 5060, TLS 5061) to "
            "it in the firewall/VPN, and check that it is the right registrar"
        )
    if outcome == TIMEOUT:
        return f"allow outbound {where} in the firewall{switch}"
    if outcome == REFUSED:
        return (
            f"{host} refused {_PROTO[transport]} {port}: check the registrar's port and allow "
            f"outbound {where} in the firewall{switch}"
        )
    if outcome == UNREACHABLE:
        return f"there is no route to {host}: check the network connection and VPN"
    if outcome == TLS_FAILED:
        return (
            f"the TLS handshake with {host}:{port} failed: check that this port speaks SIP over "
            f"TLS and that no proxy intercepts it{switch}"
        )
    if str(r["error"]).startswith("cannot load the --ca file"):
        return "give --ca a PEM file that holds the platform's CA certificate"
    return f"quote the error ({r['error']}) and the run id to the platform administrator{switch}"


def _tls_hint(r: Mapping[str, Any], host: str, ca_given: bool) -> str:
    cert = r.get("certificate") or {}
    why = (cert.get("verify_error") or "").lower()
    if "mismatch" in why:
        names = ", ".join(cert.get("san") or []) or cert.get("subject_cn") or "other names"
        return (
            f"the certificate is not valid for {host} (it names {names}): use a registrar name "
            "the certificate names, or ask the platform to fix its certificate"
        )
    if "expired" in why:
        return (
            f"the registrar's certificate expired ({cert.get('not_after')}): ask the platform "
            "to renew it, and check this machine's clock"
        )
    if "not yet valid" in why:
        return "the registrar's certificate is not valid yet: check this machine's clock (NTP)"
    given = " (the --ca file given does not verify it)" if ca_given else ""
    return (
        f"install the platform's CA certificate or pass --ca FILE{given}; if a TLS-inspecting "
        f"proxy signs it, exempt {host} from inspection"
    )
