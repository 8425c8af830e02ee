"""Each finding's next action, computed from the evidence of the rule that raised it.

A check that finds several causes at once has one hint, about its worst result; a finding that
borrowed it would tell a TLS problem to allow UDP 5060. So the SIP and network rules of
diag/diagnosis.py name an action here, read from their own check's details and from `SipRun`,
what every SIP check of the run saw per transport: a finding may suggest switching to a
transport only if that transport got a SIP answer somewhere in the same run.

The details read here are typed in diag/evidence.py: sip.register / sip.register-ws'
``RegisterDetails`` (``attempts`` and ``queries`` of ``RegisterAttempt``, ``baseline``,
``user``, ``domain``, ``registrar``) and net.sip-options' ``OptionsDetails`` (``transports``
{t: ``OptionsTransport``}, ``configured_transports``, ``probed_transports``). Optional keys are
read with .get: a skipped or broken check's details hold none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from diag import outcomes as o
from diag.context import CheckRun
from diag.evidence import (
    Certificate,
    OptionsTransport,
    RegisterAttempt,
    options_details,
    register_details,
)

Details = Mapping[str, Any]  # a check's details, as its CheckResult holds them
Item = RegisterAttempt | OptionsTransport  # one REGISTER attempt, or one transport's OPTIONS

SIP_TRANSPORTS = ("udp", "tcp", "tls")
PROTO = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}

BLOCKED = frozenset({o.TIMEOUT, o.UNREACHABLE})
"""Silence, or no route (ICMP unreachable/prohibited): the path is closed. Not o.REFUSED: a
refusal is the far end answering that nothing listens on that port, a fact about the server."""

REGISTER_CHECKS = ("sip.register", "sip.register-ws")


# ---- one request's evidence


def attempts(d: Details) -> list[RegisterAttempt]:
    return list(register_details(d).get("attempts") or [])


def probed(d: Details) -> dict[str, OptionsTransport]:
    """net.sip-options' result per transport it probed (``probed_transports`` when given)."""
    options = options_details(d)
    per = options.get("transports") or {}
    names = options.get("probed_transports")
    return {t: v for t, v in per.items() if names is None or t in names}


def is_configured(d: Details, transport: str) -> bool:
    """The softphone uses this transport (net.sip-options probed it because it is configured)."""
    mine = probed(d).get(transport)
    why = mine.get("why_probed") if mine else None
    configured = options_details(d).get("configured_transports") or []
    return transport in configured or why == "configured"


def silent(item: Item) -> bool:
    """Nothing came back on this path: silence or no route (a challenge followed by silence is
    no path problem: the registrar was reached; a refusal is the server's answer)."""
    return item.get("outcome") in BLOCKED and not item.get("registrar_answered")


def got_nothing(item: Item) -> bool:
    """No answer at all from the registrar: silent, or refused (nothing listens)."""
    return item.get("outcome") in o.NETWORK and not item.get("registrar_answered")


def where(item: Item | None, transport: str = "udp") -> tuple[str, int | str]:
    """(host, port) of one request, from a REGISTER attempt's target {host, port} or an
    OPTIONS result's "host:port" (None: no request to name)."""
    target = item.get("target") if item else None
    host: str | None
    port: int | str | None
    if isinstance(target, Mapping):
        host, port = target.get("host"), target.get("port")
    elif isinstance(target, str) and target.rpartition(":")[0]:
        host, _, port = target.rpartition(":")
    else:
        host, port = target, None
    return str(host or "the registrar"), port or DEFAULT_PORT.get(transport, 5060)


def port_text(transport: str, port: int | str) -> str:
    """What a firewall rule names: TLS is TCP on its own port."""
    return f"TLS (TCP {port})" if transport == "tls" else f"{PROTO[transport]} {port}"


# ---- what the whole run saw, per transport


@dataclass(frozen=True)
class Seen:
    """One request of the run over one transport."""

    check: str
    transport: str
    reached: bool  # the registrar sent something back: a SIP answer, a challenge, a certificate
    usable: bool  # a SIP answer over a transport a softphone could use as it is


@dataclass(frozen=True)
class SipRun:
    """What every SIP check of the run saw: the evidence no finding may contradict."""

    seen: tuple[Seen, ...] = ()
    # sip.inbound passed through a registered softphone: the platform does reach it.
    inbound_reached: bool = False

    @classmethod
    def of(cls, runs: Iterable[CheckRun]) -> SipRun:
        seen: list[Seen] = []
        inbound_reached = False
        for run in runs:
            d, check = run.result.details, run.check.id
            if check == "sip.inbound":
                inbound_reached = run.result.status.value == "pass" and d.get("mode") == "softphone"
            if check in REGISTER_CHECKS:
                register = register_details(d)
                baseline = register.get("baseline")
                requests = [*attempts(d), *(register.get("queries") or [])]
                for a in [*requests, *([baseline] if baseline else [])]:
                    if not a.get("transport"):
                        continue
                    answered = a.get("outcome") in o.REGISTRAR_ANSWERED
                    reached = answered or bool(a.get("registrar_answered"))
                    reached = reached or a.get("outcome") == o.TLS_UNTRUSTED
                    seen.append(Seen(check, str(a["transport"]), reached, answered))
            elif check == "net.sip-options":
                for t, v in probed(d).items():
                    answered = v.get("outcome") == o.ANSWERED
                    reached = answered or v.get("outcome") == o.TLS_UNTRUSTED
                    seen.append(Seen(check, t, reached, answered))
        return cls(tuple(seen), inbound_reached)

    def reached(self, transport: str | None = None) -> bool:
        """Something came back from the registrar (over `transport`, or over any)."""
        return any(s.reached and transport in (None, s.transport) for s in self.seen)

    def working(self, besides: str | Iterable[str]) -> list[str]:
        """SIP transports other than `besides` that got a SIP answer in this run: the only
        ones an action may suggest switching to."""
        ok = {s.transport for s in self.seen if s.usable}
        skip = {besides} if isinstance(besides, str) else set(besides)
        return [t for t in SIP_TRANSPORTS if t in ok and t not in skip]


Action = Callable[[Details, SipRun], str]


# ---- network actions


def _silent_item(d: Details, transport: str) -> Item | None:
    mine = [a for a in attempts(d) if a.get("transport") == transport and silent(a)]
    return mine[0] if mine else probed(d).get(transport)


def blocked_action(transport: str, configured: bool = True) -> Action:
    """network.<t>_blocked: this transport's path is closed; name a transport that works."""

    def action(d: Details, run: SipRun) -> str:
        item = _silent_item(d, transport)
        host, port = where(item, transport)
        t = PROTO[transport]
        closed = (
            "gets no route (ICMP unreachable or prohibited)"
            if item is not None and item.get("outcome") == o.UNREACHABLE
            else "is dropped (no answer)"
        )
        what = f"SIP over {t} to {host}:{port} {closed}"
        allow = f"allow outbound {port_text(transport, port)} to {host} in the firewall/VPN"
        if not configured:
            return f"nothing to do while the softphone does not use {t}; to use it, {allow}"
        working = run.working(besides=transport)
        if working:
            other = PROTO[working[0]]
            return (
                f"{what}; {other} reaches the registrar: switch the softphone to {other}, "
                f"or {allow}"
            )
        return f"{what}: {allow}"

    return action


def _items(d: Details) -> list[tuple[str, Item]]:
    """(transport, request) for each REGISTER attempt, else each OPTIONS result."""
    found: list[tuple[str, Item]] = [(str(a.get("transport")), a) for a in attempts(d)]
    return found or list(probed(d).items())


def _by_host(items: list[tuple[str, Item]]) -> dict[str, list[str]]:
    """{host: ["UDP 5060", "TCP 5060"]}, in the order the requests were made."""
    hosts: dict[str, list[str]] = {}
    for t, a in items:
        host, port = where(a, t)
        hosts.setdefault(host, []).append(port_text(t, port) if t in PROTO else f"{t} {port}")
    return hosts


def unreachable_action(d: Details, run: SipRun) -> str:
    """network.registrar_unreachable: no transport reached the registrar in this run, so no
    transport is suggested; each way this check's requests failed gets its own step."""
    items = [(t, a) for t, a in _items(d) if got_nothing(a)]
    steps = []
    noroute = [(t, a) for t, a in items if a.get("outcome") == o.UNREACHABLE]
    if noroute:
        hosts = " or ".join(dict.fromkeys(where(a, t)[0] for t, a in noroute))
        steps.append(f"there is no route to {hosts}: check the network connection and VPN")
    dropped = [(t, a) for t, a in items if a.get("outcome") == o.TIMEOUT]
    for host, ports in _by_host(dropped).items():
        steps.append(
            f"nothing answers at {host}: allow outbound {' and '.join(ports)} to {host} in the "
            "firewall/VPN, and check that it is the right registrar"
        )
    refused = [(t, a) for t, a in items if a.get("outcome") == o.REFUSED]
    if refused:
        listening = " or ".join(
            f"{where(a, t)[0]}:{where(a, t)[1]} over {PROTO.get(t, t.upper())}" for t, a in refused
        )
        # A refusal (TCP RST, ICMP port unreachable) is the far end's answer: a server fact.
        steps.append(
            f"nothing listens on {listening} (connection refused): check the registrar "
            "address and port"
        )
    return "; ".join(steps)


def refused_configured(d: Details) -> list[tuple[str, Item]]:
    """(transport, request) for each configured transport refused outright (TCP RST, ICMP port
    unreachable): every REGISTER attempt is over a configured transport; an OPTIONS result
    counts only where the softphone is configured to use that transport."""
    mine: list[tuple[str, Item]] = [
        (str(a.get("transport")), a)
        for a in attempts(d)
        if a.get("outcome") == o.REFUSED and not a.get("registrar_answered")
    ]
    return mine or [
        (t, v)
        for t, v in probed(d).items()
        if v.get("outcome") == o.REFUSED and is_configured(d, t)
    ]


def _joined(names: list[str], word: str) -> str:
    return ", ".join(names[:-1]) + f" {word} " + names[-1] if len(names) > 1 else names[0]


def not_offered_action(d: Details, run: SipRun) -> str:
    """sip.transport_not_offered: nothing listens for the softphone's transport; name only
    the transports that got a SIP answer in this run."""
    refused = refused_configured(d)
    names = list(dict.fromkeys(PROTO.get(t, t.upper()) for t, _ in refused)) or ["it"]
    closed = (
        " or ".join(
            dict.fromkeys(
                f"{PROTO.get(t, t.upper())} {':'.join(map(str, where(a, t)))}" for t, a in refused
            )
        )
        or "the registrar's address"
    )
    working = [PROTO[t] for t in run.working(besides=[t for t, _ in refused])]
    if not working:
        return (
            f"nothing listens on {closed} (connection refused): ask the platform which "
            "transport and port to use"
        )
    reach = "reaches" if len(working) == 1 else "reach"
    return (
        f"nothing listens on {closed}; {_joined(working, 'and')} {reach} the registrar: switch "
        f"the softphone to {_joined(working, 'or')}, or ask the platform which port serves "
        f"{_joined(names, 'or')}"
    )


# ---- TLS certificate


def _untrusted_item(d: Details) -> tuple[Item | None, Certificate, bool]:
    """The TLS request whose certificate failed, its certificate (a REGISTER attempt records
    none), and whether the softphone uses TLS."""
    mine = [a for a in attempts(d) if a.get("outcome") == o.TLS_UNTRUSTED]
    if mine:
        return mine[0], {}, True
    options = probed(d).get("tls")
    cert = (options.get("certificate") if options else None) or {}
    return options, cert, is_configured(d, "tls")


def tls_action(d: Details, run: SipRun) -> str:
    """network.tls_untrusted: what the certificate's own verification error calls for."""
    item, cert, configured = _untrusted_item(d)
    host = where(item, "tls")[0]
    why = str(cert.get("verify_error") or "").lower()
    if "mismatch" in why:
        names = ", ".join(cert.get("san") or []) or cert.get("subject_cn") or "other names"
        step = (
            f"the certificate is not valid for {host} (it names {names}): use a registrar name "
            "the certificate names, or ask the platform to fix its certificate"
        )
    elif "expired" in why:
        step = (
            f"the registrar's certificate expired ({cert.get('not_after')}): ask the platform "
            "to renew it, and check this machine's clock"
        )
    elif "not yet valid" in why:
        step = "the registrar's certificate is not valid yet: check this machine's clock (NTP)"
    else:
        step = (
            f"the certificate of {host} is not trusted: install the platform's CA certificate "
            f"or pass --ca FILE; if a TLS-inspecting proxy signs it, exempt {host} from "
            "inspection"
        )
    if not configured:
        return f"nothing to do while the softphone does not use TLS; to use it, {step}"
    return step


# ---- SIP answers from the registrar


def first_rejected(d: Details) -> RegisterAttempt | None:
    return next((a for a in attempts(d) if a.get("outcome") == o.REJECTED), None)


def user_and_domain(d: Details) -> tuple[str, str]:
    """The user and domain the REGISTER used (sip.register's ``user``/``domain``; else the
    registrar's host, which is the domain when the SIP URI gives none)."""
    register, rejected = register_details(d), first_rejected(d)
    user = register.get("user") or (rejected.get("user") if rejected else None) or ""
    domain = register.get("domain") or ""
    if not domain and register.get("registrar"):
        from diag.target import parse_registrar

        try:
            domain = parse_registrar(str(register.get("registrar"))).host
        except ValueError:
            domain = ""
    if not domain and rejected is not None and rejected.get("target"):
        domain = where(rejected)[0]
    return str(user), str(domain)


def _named(user: str, domain: str) -> tuple[str, str]:
    return (f"the SIP user {user}" if user else "the SIP user"), (
        f"the domain {domain}" if domain else "the domain"
    )


def every_user_not_found(d: Details) -> bool:
    """The control probe (a user that cannot exist) got 404 as well."""
    base = register_details(d).get("baseline")
    return base is not None and base.get("outcome") == o.REJECTED and base.get("code") == 404


def baseline_told_apart(d: Details) -> bool:
    """The control probe got an answer other than 404: the registrar tells users apart."""
    base = register_details(d).get("baseline")
    answered = base is not None and base.get("outcome") in (o.REJECTED, o.CHALLENGED, o.OK)
    return answered and not every_user_not_found(d)


def not_found_action(d: Details, run: SipRun) -> str:
    user, domain = _named(*user_and_domain(d))
    if every_user_not_found(d):
        return (
            f"check both {user} and {domain} against the platform's account: the registrar "
            "answers 404 even for a user that cannot exist, so either may be wrong"
        )
    if baseline_told_apart(d):
        return f"check {user} against the platform's account: the registrar does not know it"
    return f"check {user} and {domain} against the platform's account"


def credentials_action(d: Details, run: SipRun) -> str:
    return "check the SIP user, auth user and password with the platform administrator"


def forbidden_action(d: Details, run: SipRun) -> str:
    return (
        "ask the platform administrator whether this account, domain and network (source "
        "address) are allowed to register; quote the Warning text and the run id"
    )


def server_error_action(d: Details, run: SipRun) -> str:
    a = first_rejected(d)
    if a is not None and a.get("unusable"):
        return (
            f"the registrar answered with something a softphone cannot use ({a['unusable']}): "
            "report it to the platform with the run id"
        )
    code = a.get("code") if a else None
    return (
        f"the registrar reported a server error ({code}): retry later, and report it "
        "to the platform with the run id if it persists"
    )


def dns_action(d: Details, run: SipRun) -> str:
    a = next((a for a in attempts(d) if a.get("outcome") == o.DNS_FAILURE), None)
    host = where(a)[0]
    return f"{host} does not resolve: check the registrar name and this machine's DNS"
