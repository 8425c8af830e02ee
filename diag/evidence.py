"""Evidence that crosses module lines, as typed records.

The probes build these (checks/sip/register.py, checks/sip/register_ws.py, checks/net/dns.py,
checks/net/stun.py, checks/net/sip_options_verdict.py, checks/number/dial_test.py); the
diagnosis rules and actions (diag/diagnosis.py, diag/actions.py), net.sip-alg and the DNS -> SIP
hand-over read them. They are TypedDicts, not dataclasses, because they go into a result's JSON
``details`` as they are (report schema v1). A key every producer sets is ``Required``; the
others may be missing (``total=False``), and readers use ``.get`` for them.

A check's ``details`` is an untyped mapping once it is in a ``CheckResult``: the accessors at
the end (``register_details``, ``options_details``, ...) are the one place it becomes typed, so
mypy checks the keys readers index and the types of what they read. A result that is not the
check's own evidence (skipped, or an ``error`` from the runner) holds none of these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Required, TypedDict, cast

# ---- shared pieces


class Challenge(TypedDict):
    """A WWW-/Proxy-Authenticate header (checks/wire/sip.py parse_challenge; never the nonce)."""

    scheme: str | None
    realm: str | None
    algorithm: str | None
    qop: str | None


class Certificate(TypedDict, total=False):
    """The peer's TLS certificate, as checks/wire/tls.py certificate_details reads it."""

    subject: str | None
    subject_cn: str | None
    san: list[str]
    issuer: str | None
    self_signed: bool | None
    not_before: str | None
    not_after: str | None
    days_left: int | None
    sha256: str | None
    verified: bool
    verify_error: str | None


# ---- sip.register / sip.register-ws


class Binding(TypedDict, total=False):
    """One binding a registrar listed for the account (checks/wire/sip.py Binding, as a dict):
    sip.register's and sip.register-ws' ``details["bindings"]`` and ``["replaced_bindings"]``."""

    contact: Required[str]
    expires: Required[int | None]
    transport: Required[str]
    instance: Required[str | None]
    reg_id: Required[int | None]
    q: Required[float | None]
    ours: Required[bool]
    params: Required[dict[str, str]]
    replaced_over: str  # in replaced_bindings: the transport whose 200 OK no longer lists it


class BindingView(Binding, total=False):
    """A binding as sip.bindings reads it: where its contact points and what routes back to it."""

    host: str  # the contact URI's host
    address_class: str  # private | cgnat | link-local | loopback | public | name
    private: bool  # private, cgnat or link-local: unreachable from outside without NAT fix-up
    nat_fixup: list[str]  # received/alias/path/reg-id/ob parameters present


class SeenFrom(TypedDict):
    """The source address the registrar saw for our query (Via received/rport)."""

    address: str
    port: int | None
    transport: str


class RegisterTarget(TypedDict, total=False):
    """Where a REGISTER went: sip.register's plan, or sip.register-ws' URL parts."""

    host: Required[str]
    port: Required[int]
    address: str | None  # sip.register: the resolved address (None: the OS resolves host)
    path: str  # sip.register-ws


class SentRequest(TypedDict, total=False):
    """The Via and Contact of the first REGISTER pjsua sent for an attempt."""

    via: str | None
    contact: str | None


class FirstOk(TypedDict):
    """The first 2xx on the Call-ID of the REGISTER in ``sent``: it answers that request."""

    via: str | None
    contacts: list[str]


class BindingPlan(TypedDict):
    """Whether sip.register may make a binding of its own, and why (``details["binding"]``)."""

    create: bool
    reason: str


class RegisterAttempt(TypedDict, total=False):
    """One REGISTER and what came of it: an entry of ``details["attempts"]`` or ``["queries"]``,
    ``details["baseline"]`` (the control probe), or number.dial-test's ``register``.

    Built by checks/wire/sipclient.py register_probe (a query without Contact),
    checks/sip/worker.py (pjsua's own REGISTER) and checks/sip/register_ws.py. ``transport`` is
    missing only on sip.register-ws' nested ``query``."""

    outcome: Required[str]  # diag/outcomes.py
    code: Required[int]  # 0: no SIP answer
    reason: Required[str | None]
    transport: str
    uri: str
    target: RegisterTarget
    user: str
    credentials: bool  # our answer to a challenge carried the password
    remote: bool  # the registrar sent the answer (False: the stack made it up)
    registrar_answered: bool  # anything came back, e.g. a challenge followed by silence
    challenged: bool
    challenge: Challenge | None
    challenges: int
    auth_error: str
    warning: list[str]
    reason_header: list[str]
    server: str | None
    server_date: str | None
    local_time: str
    call_id: str | None
    source: str
    local: str | None  # the query's own address (host:port), raw query only
    received: str | None
    rport: int | None
    via_echoed: str
    sent: SentRequest | None
    first_ok: FirstOk
    # A query's 200 OK: the parsed bindings; a registration's (pjsua, WebSocket): the raw
    # Contact header values.
    bindings: list[Binding] | list[str]
    expires: int | None
    unregistered: bool
    duration_ms: int
    rtt_ms: int | None
    error: str | None
    tls_verified: bool | None
    tls_error: str
    # The registrar answered with something a softphone cannot use (a status outside 100-699,
    # an absurd Content-Length): what it was. The registrar's fault, never the path's.
    unusable: str
    # An answer pjsua took for ours that carried another Call-ID: {"code", "call_id"}.
    foreign_answer: dict[str, Any]
    # Characters that were not UTF-8 on the wire, replaced by U+FFFD (checks/wire/text.py).
    undecodable_characters: int
    # sip.register-ws only
    websocket: dict[str, Any]
    options: dict[str, Any]
    ignored: list[str]
    query: RegisterAttempt
    # sip.register-ws' attempt carries these until its details take them over
    binding: BindingPlan
    account_bindings: list[Binding]
    replaced_bindings: list[Binding]


class BindingEvidence(TypedDict, total=False):
    """What sip.register and sip.register-ws record of the account's bindings."""

    queries: list[RegisterAttempt]  # when our own REGISTER followed the queries
    bindings: list[Binding]  # the account's other bindings, as the query listed them
    binding: BindingPlan
    replaced_bindings: list[Binding]  # listed by the query, gone from our REGISTER's 200 OK


class RegisterDetails(BindingEvidence, total=False):
    """sip.register's and sip.register-ws' details."""

    mode: Required[str]  # challenge_only | query | register
    attempts: Required[list[RegisterAttempt]]
    baseline: Required[RegisterAttempt | None]
    call_ids: Required[list[str]]
    registrar: str | None  # sip.register
    user: str | None  # sip.register
    domain: str | None  # sip.register
    ws_url: str  # sip.register-ws
    websocket: dict[str, Any] | None  # sip.register-ws
    local_address: str
    public_addresses: list[str]
    clock_offset_ms: int


# ---- net.sip-options


class OptionsResult(TypedDict, total=False):
    """One OPTIONS probe's result (checks/wire/sipclient.py Probe.out)."""

    target: Required[str]  # "host:port"
    target_source: Required[str]
    address: Required[str | None]
    local: Required[str | None]
    outcome: Required[str]
    code: Required[int | None]
    reason: Required[str | None]
    rtt_ms: Required[int | None]
    connect_ms: Required[int | None]
    server: Required[str | None]
    allow: Required[list[str]]
    received: Required[str | None]
    rport: Required[int | None]
    call_id: Required[str | None]
    error: Required[str | None]
    ignored: Required[list[str]]
    retransmitted: bool  # UDP
    handshake_ms: int | None  # TLS
    tls_version: str | None  # TLS
    certificate: Certificate | None  # TLS
    auth_error: str


class OptionsTransport(OptionsResult, total=False):
    """``details["transports"][t]``: the target that sums the transport up, with every
    target's own result and why the transport was probed."""

    why_probed: Required[str]  # configured | dns | all_transports
    targets: Required[list[OptionsResult]]


class OptionsDetails(TypedDict, total=False):
    """net.sip-options' details."""

    registrar: Required[str]
    configured_transports: Required[list[str]]
    probed_transports: Required[list[str]]
    transports: Required[dict[str, OptionsTransport]]
    public_addresses: Required[list[str]]
    local_address: Required[str | None]
    call_ids: Required[list[str]]
    dns_error: str
    host_lookups: list[dict[str, Any]]


# ---- net.dns


class DnsTarget(TypedDict):
    """One place to send SIP to (checks/wire/dns.py Target, as a dict), in preference order."""

    transport: str
    host: str
    port: int
    address: str
    source: str


class _DnsRefused(TypedDict, total=False):
    # Addresses DNS or the OS gave that are no one server's (multicast, broadcast, unspecified,
    # reserved): {"name", "address", "why"}; nothing is sent to them.
    refused_addresses: list[dict[str, str]]


class DnsDetails(_DnsRefused):
    """net.dns' details."""

    registrar: str
    nameserver: str | None
    dns_servers: list[str]
    os_resolver: bool
    naptr_transports: list[str]
    via: dict[str, str]
    lookups: list[dict[str, Any]]
    targets: list[DnsTarget]
    outcome: str
    remarks: list[str]


# ---- net.stun


class StunMapping(TypedDict, total=False):
    """One STUN Binding to one server over one transport: ``details["servers"][i]``."""

    server: Required[str]  # as configured
    transport: Required[str]
    address: Required[str | None]
    outcome: Required[str]
    rtt_ms: Required[int | None]
    mapped: Required[str | None]  # XOR-MAPPED-ADDRESS (else MAPPED-ADDRESS)
    mapped_plain: Required[str | None]  # MAPPED-ADDRESS: what an ALG can read and rewrite
    alg_suspected: Required[bool]  # the two differ
    other_address: Required[str | None]
    software: Required[str | None]
    local: Required[str | None]
    error: Required[str | None]
    sent: int  # Binding requests sent


class StunDetails(TypedDict):
    """net.stun's details."""

    servers: list[StunMapping]
    public_addresses: list[str]
    local_address: str | None
    alg_suspected: bool


# ---- number.dial-test


class CallAnswer(TypedDict):
    """A SIP answer to the test INVITE, quoted (checks/sip/dial_job.py)."""

    code: int
    reason: str
    warning: list[str]
    reason_header: list[str]
    server: str | None


class TestCall(TypedDict, total=False):
    """number.dial-test's ``call``: the test call and the platform's answer to it."""

    uri: Required[str]
    max_duration_s: Required[float]
    outcome: Required[str]  # answered | no_answer | local_error
    reason: Required[str]
    code: int
    warning: list[str]
    reason_header: list[str]
    server: str | None
    call_id: str
    provisional: list[int]
    finals: list[int]
    challenged: bool
    ended_by: str | None  # bye | cancel | max_duration
    ended_after_ms: int
    duration_ms: int
    disconnected: bool
    first_provisional: CallAnswer


class DialDetails(TypedDict, total=False):
    """number.dial-test's details (``code``… copied from ``call`` when a call was placed)."""

    number: Required[str]
    uri: Required[str]
    register: RegisterAttempt | dict[str, Any]  # {} when the worker reported none
    call: TestCall | None
    local_address: str
    call_ids: list[str]
    code: int | None
    reason: str | None
    warning: list[str] | None
    reason_header: list[str] | None
    ended_by: str | None


def evidence_text(call: TestCall | None) -> str:
    """'403 Number Not Permitted (Warning: …; Reason: …)': the platform's own words."""
    call = call or cast(TestCall, {})
    text = f"{call.get('code') or ''} {call.get('reason') or ''}".strip()
    quoted = [f"Warning: {w}" for w in call.get("warning") or []]
    quoted += [f"Reason: {r}" for r in call.get("reason_header") or []]
    return text + (f" ({'; '.join(quoted)})" if quoted else "")


# ---- accessors: a result's untyped details -> the typed record (cast once, here)


def register_details(details: Mapping[str, Any]) -> RegisterDetails:
    return cast(RegisterDetails, details)


def options_details(details: Mapping[str, Any]) -> OptionsDetails:
    return cast(OptionsDetails, details)


def dns_details(details: Mapping[str, Any]) -> DnsDetails:
    return cast(DnsDetails, details)


def stun_details(details: Mapping[str, Any]) -> StunDetails:
    return cast(StunDetails, details)


def dial_details(details: Mapping[str, Any]) -> DialDetails:
    return cast(DialDetails, details)
