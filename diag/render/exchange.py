"""The run's SIP exchanges as a ladder: who talked to whom (columns) and each request and
answer in order (messages), rebuilt from the checks' evidence in the JSON report, for the
HTML report's ladder diagram (diag/render/pictures.py draws it).

Built from evidence, never from a SIP trace: the report records that credentials went out,
never what they were, so no Authorization value can reach the picture. The evidence records
that a challenge came, not its status: a REGISTER's is drawn as 401 (what registrars send), a
request to a user's as 407 (what proxies send). Times are the evidence's own (a REGISTER's
`local_time`, `sent_at`, `started_at`/`checked_at`), relative to the first of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from diag.evidence import RegisterAttempt, options_details, register_details

# sip.bindings reads sip.register's query: its findings rest on that exchange.
EVIDENCE_FROM = {"sip.bindings": "sip.register"}


def checks_by_id(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["id"]: c for c in report.get("checks") or [] if isinstance(c, Mapping)}


def details_of(report: Mapping[str, Any], check: str) -> Mapping[str, Any]:
    details = checks_by_id(report).get(check, {}).get("details")
    return details if isinstance(details, Mapping) else {}


def _time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _hostport(text: Any) -> tuple[str | None, int | None]:
    """'host:port', '[v6]:port' or a bare host."""
    text = str(text or "")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else None
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host or not port.isdigit():
        return text or None, None
    return host, int(port)


def _said(code: Any, reason: Any) -> str:
    return f"{code} {reason or ''}".strip()


@dataclass
class Message:
    src: str
    dst: str
    label: str
    code: int | None = None  # None: a request
    at_ms: float | None = None  # since its group's start, where the evidence says
    inferred: bool = False  # not seen by sipdiag: what its answer implies
    lost: str | None = None  # nothing came back: why
    via_nat: bool = False
    causes: list[str] = field(default_factory=list)


@dataclass
class Group:
    """One exchange: a request and what came of it, from one check."""

    check: str
    title: str
    start: dt.datetime | None
    transport: str | None = None
    messages: list[Message] = field(default_factory=list)
    final: Message | None = None  # the answer (or silence) that decided the exchange
    failed: bool = False

    def send(self, src: str, dst: str, label: str, **kw: Any) -> Message:
        self.messages.append(Message(src, dst, label, **kw))
        return self.messages[-1]

    def conclude(self, message: Message, failed: bool) -> None:
        self.final, self.failed = message, failed


@dataclass
class Ladder:
    local: str = ""
    registrars: dict[str, list[str]] = field(default_factory=dict)  # host:port -> transports
    platforms: list[str] = field(default_factory=list)  # other addresses requests came from
    nat_seen: list[str] = field(default_factory=list)  # how the registrar saw us, if not as us
    binding: tuple[str, str] | None = None  # (title, contact)
    groups: list[Group] = field(default_factory=list)

    def registrar(self, host: Any, port: Any, transport: str) -> str:
        where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        transports = self.registrars.setdefault(where, [])
        if transport not in transports:
            transports.append(transport)
        return f"registrar {where}"

    def source(self, source: Any, registrar: str) -> str:
        """The column a request from the platform came from: the registrar's, or another."""
        host = _hostport(source)[0]
        if not host or host == _hostport(registrar.split(" ", 1)[1])[0]:
            return registrar
        if host not in self.platforms:
            self.platforms.append(host)
        return f"platform {host}"

    def saw_us(self, local: Any, received: Any, rport: Any) -> bool:
        """Whether the registrar saw another source than ours (a NAT between)."""
        host, port = _hostport(local)
        if not received or not host or (received == host and rport in (None, port)):
            return False
        seen = f"{received}:{rport}" if rport else str(received)
        if seen not in self.nat_seen:
            self.nat_seen.append(seen)
        return True

    def columns(self) -> list[tuple[str, str, str]]:
        """(key, title, subtitle), left to right."""
        cols = [] if self.binding is None else [("binding", *self.binding)]
        cols.append(("local", "This machine", self.local or "sipdiag"))
        if self.nat_seen:
            cols.append(("nat", "NAT", "seen as " + ", ".join(self.nat_seen[:2])))
        cols += [
            (f"registrar {w}", "Registrar", f"{w} {'/'.join(t)}")
            for w, t in self.registrars.items()
        ]
        cols += [(f"platform {h}", "Platform (other address)", h) for h in self.platforms]
        return cols


def _register(
    ladder: Ladder, check: str, a: RegisterAttempt, title: str, later: list[Any] | None = None
) -> Group | None:
    """One REGISTER as the wire had it: the request, its challenge and our answer to it, the
    final answer (or none), and pjsua's un-REGISTER when the attempt made a binding (or, with
    ``later``, its registrar column and NAT flag there, for a caller to draw it later)."""
    transport, target = a.get("transport"), a.get("target") or {"host": "", "port": 0}
    host = target.get("address") or target.get("host")
    if not transport or not host:
        return None
    reg = ladder.registrar(host, target.get("port"), transport)
    g = Group(check, f"{title} over {transport.upper()}", _time(a.get("local_time")), transport)
    nat = ladder.saw_us(a.get("local"), a.get("received"), a.get("rport"))
    code, outcome = int(a.get("code") or 0), a.get("outcome", "")
    g.send("local", reg, "REGISTER", at_ms=0.0, via_nat=nat)
    if a.get("challenged") and outcome != "challenged":
        g.send(reg, "local", "401 challenge", code=401)
        if a.get("credentials"):
            g.send("local", reg, "REGISTER with credentials", via_nat=nat)
    took = a.get("duration_ms", a.get("rtt_ms"))
    if code:
        g.conclude(
            g.send(reg, "local", _said(code, a.get("reason")), code=code, at_ms=took),
            not 200 <= code < 300,
        )
    else:
        g.messages[-1].lost = outcome or "no answer"
        g.conclude(g.messages[-1], True)
    if later is None:
        _unregister(g, reg, a, nat)
    else:
        later.extend([reg, nat])
    return g


def _unregister(g: Group, reg: str, a: RegisterAttempt, nat: bool) -> None:
    """pjsua's own binding, removed again with Expires: 0 (a second challenge, if one came,
    was for it)."""
    if "unregistered" not in a:
        return
    g.send("local", reg, "REGISTER Expires: 0", via_nat=nat)
    if int(a.get("challenges") or 0) - (a.get("code") in (401, 407)) >= 2:
        g.send(reg, "local", "401 challenge", code=401)
        g.send("local", reg, "REGISTER with credentials", via_nat=nat)
    if a.get("unregistered"):
        g.send(reg, "local", "200 un-registered", code=200)
    else:
        g.messages[-1].lost = "no 2xx: our binding stays until it expires"


def _sip_register(ladder: Ladder, details: Mapping[str, Any], check: str) -> list[Group]:
    d = register_details(details)
    queries = d.get("queries") or []
    steps: list[tuple[RegisterAttempt, str]] = [(q, "REGISTER query (no Contact)") for q in queries]
    mine = "our own binding" if queries or d.get("mode") == "register" else "query (no Contact)"
    steps += [(a, f"REGISTER {mine}") for a in d.get("attempts") or []]
    groups = [g for a, title in steps if (g := _register(ladder, check, a, title))]
    baseline = d.get("baseline")
    control = baseline and _register(ladder, check, baseline, "control probe (no such user)")
    if control:  # refused on purpose: the comparison, not what a finding is about
        control.failed = False
        groups.append(control)
    return groups


def _options(ladder: Ladder, details: Mapping[str, Any]) -> list[Group]:
    groups = []
    for transport, probe in (options_details(details).get("transports") or {}).items():
        host, port = _hostport(probe.get("target"))
        reg = ladder.registrar(probe.get("address") or host, port, transport)
        g = Group("net.sip-options", f"OPTIONS over {transport.upper()}", None, transport)
        nat = ladder.saw_us(probe.get("local"), probe.get("received"), probe.get("rport"))
        g.send("local", reg, "OPTIONS", via_nat=nat)
        code = int(probe.get("code") or 0)
        if code:
            label = f"{_said(code, probe.get('reason'))} ({probe.get('rtt_ms')} ms)"
            g.conclude(g.send(reg, "local", label, code=code), not 200 <= code < 300)
        else:
            g.messages[-1].lost = probe.get("outcome") or "no answer"
            g.conclude(g.messages[-1], True)
        groups.append(g)
    return groups


def _to_user(
    ladder: Ladder, g: Group, reg: str, d: Mapping[str, Any], method: str, at: float | None
) -> None:
    """A request to the agent's address-of-record through the platform, and its answers;
    ``at``: when it went out, in ms since the group's start (None: not known)."""

    def when(ms: Any) -> float | None:
        return None if at is None or ms is None else at + float(ms)

    nat = bool(ladder.nat_seen)
    g.send("local", reg, method, at_ms=at, via_nat=nat)
    if d.get("challenged"):
        g.send(reg, "local", "407 challenge", code=407)
        g.send("local", reg, f"{method} with credentials", via_nat=nat)
    for code in d.get("provisional") or []:
        g.send(reg, "local", str(code), code=int(code))
    arrived, final = d.get("arrived"), d.get("final") or {}
    if arrived:
        src = ladder.source(arrived.get("source"), reg)
        g.send(src, "binding", f"{method} arrived", at_ms=when(arrived.get("after_ms")))
        if arrived.get("answered"):
            g.send("binding", src, str(arrived["answered"]), code=int(arrived["answered"]))
    elif final.get("by") == "binding" and final.get("code"):
        g.send(reg, "binding", method, inferred=True)
        answer = _said(final["code"], final.get("reason"))
        g.send("binding", reg, answer, code=int(final["code"]), inferred=True)
    if d.get("cancelled"):
        g.send("local", reg, "CANCEL", via_nat=nat)
    code = int(final.get("code") or 0)
    if code:
        answer = _said(code, final.get("reason"))
        last = g.send(reg, "local", answer, code=code, at_ms=when(final.get("rtt_ms")))
    else:
        last = g.messages[-1]
        last.lost = "no final answer"
    g.conclude(last, bool(d.get("problem")) or not code)


def _registrar_for(ladder: Ladder, transport: Any) -> str | None:
    return next((f"registrar {w}" for w, ts in ladder.registrars.items() if transport in ts), None)


def _inbound(ladder: Ladder, d: Mapping[str, Any]) -> Group | None:
    """sip.inbound: our request through the platform to the agent's binding and back."""
    transport, method = d.get("transport"), str(d.get("method") or "OPTIONS")
    registration = d.get("registration") or {}
    reg = _registrar_for(ladder, transport)
    if not transport or reg is None:
        return None
    own = d.get("mode") == "own_binding"
    contact = registration.get("contact") or next(iter(d.get("for_bindings") or []), "")
    ladder.binding = ("Test binding (ours)" if own else "Softphone binding", contact)
    title = f"{method} to the agent over {transport.upper()}"
    g = Group("sip.inbound", title, _time(d.get("sent_at")), transport)
    nat = bool(ladder.nat_seen)
    if own and registration:  # where the registrar sees us, then the binding (docs/checks-sip.md)
        g.send("local", reg, "REGISTER query (no Contact)", via_nat=nat)
        g.send(reg, "local", "401 challenge", code=401)
        g.send("local", reg, "REGISTER test binding, with credentials", via_nat=nat)
        if registration.get("code"):
            answer = _said(registration["code"], registration.get("reason"))
            g.send(reg, "local", answer, code=int(registration["code"]))
    _to_user(ladder, g, reg, d, method, 0.0)
    if own and registration.get("removed") is not None:
        g.send("local", reg, "REGISTER Expires: 0", via_nat=nat)
        if registration.get("removed"):
            g.send(reg, "local", "200 un-registered", code=200)
        else:
            g.messages[-1].lost = "no answer: our binding stays until it expires"
    return g


def _idle(ladder: Ladder, d: Mapping[str, Any]) -> list[Group]:
    """net.idle: after each silence, does a request from the platform still reach us?"""
    groups = []
    for p in d.get("periods") or []:
        reg = _registrar_for(ladder, p.get("transport"))
        if p.get("arrived") is None or reg is None:
            continue
        ladder.binding = ladder.binding or ("Test binding (ours)", str(p.get("contact") or ""))
        start, checked = _time(p.get("started_at")), _time(p.get("checked_at"))
        title = f"{p.get('seconds')} s of silence over {str(p.get('transport')).upper()}"
        g = Group("net.idle", title, start, p.get("transport"))
        g.send("local", reg, "REGISTER (test binding)", at_ms=0.0, via_nat=bool(ladder.nat_seen))
        if p.get("expires_granted") is not None:
            g.send(reg, "local", "200 OK", code=200)
        after = (checked - start).total_seconds() * 1000 if start and checked else None
        arrived = {"source": p.get("source"), "after_ms": p.get("after_ms")}
        request = {
            "arrived": arrived if p.get("arrived") else None,
            "final": p.get("final") or {},
            "problem": not p.get("arrived"),
        }
        _to_user(ladder, g, reg, request, f"OPTIONS after {p.get('seconds')} s", after)
        groups.append(g)
    return groups


def _dial_test(ladder: Ladder, d: Mapping[str, Any]) -> list[Group]:
    """number.dial-test: its REGISTER, the test INVITE and how it ended, the un-REGISTER."""
    register = cast(RegisterAttempt, d.get("register") or {})
    held: list[Any] = []  # the registrar's column and whether a NAT was crossed
    title = "REGISTER and the test call"
    g = _register(ladder, "number.dial-test", register, title, held) if register else None
    if g is None:
        return []
    reg, nat = held
    call = d.get("call") or {}
    if call:
        g.send("local", reg, f"INVITE {call.get('uri', '')}", via_nat=nat)
        if call.get("challenged"):
            g.send(reg, "local", "407 challenge", code=407)
            g.send("local", reg, "INVITE with credentials", via_nat=nat)
        for code in call.get("provisional") or []:
            g.send(reg, "local", str(code), code=int(code))
        code = int(call.get("code") or 0)
        if code:
            final = g.send(reg, "local", _said(code, call.get("reason")), code=code)
            g.conclude(final, not 200 <= code < 300)
        else:
            g.messages[-1].lost = str(call.get("outcome") or "no answer")
            g.conclude(g.messages[-1], True)
        if call.get("ended_by") in ("bye", "cancel"):
            g.send("local", reg, str(call["ended_by"]).upper(), via_nat=nat)
    _unregister(g, reg, register, nat)
    return [g]


def _causes(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """check id -> the finding causes (and the check's own `problem`) its evidence supported."""
    causes: dict[str, list[str]] = {}
    for f in report.get("findings") or []:
        for check in (f.get("evidence") or {}).get("checks") or []:
            causes.setdefault(EVIDENCE_FROM.get(check, check), []).append(str(f.get("cause")))
    for cid, c in checks_by_id(report).items():
        problem = (c.get("details") or {}).get("problem")
        mine = causes.setdefault(cid, [])
        if isinstance(problem, str) and problem and not any(problem in x for x in mine):
            mine.append(problem)
    return causes


def _label_causes(ladder: Ladder, causes: Mapping[str, list[str]]) -> None:
    """Each cause on the final answer of the exchanges it rests on: the check's failed ones
    (over the transport the cause names, if it names one), else its first."""
    for check, ids in causes.items():
        mine = [g for g in ladder.groups if g.check == check]
        for cause in ids:
            named = [t for t in ("udp", "tcp", "tls", "ws") if f".{t}_" in cause]
            here = [g for g in mine if not named or g.transport in named]
            for g in [g for g in here if g.failed] or here[:1]:
                if g.final is not None and cause not in g.final.causes:
                    g.final.causes.append(cause)


def build_ladder(report: Mapping[str, Any]) -> Ladder:
    """The run's SIP exchanges, ordered by when they started (undated ones first)."""
    ladder = Ladder()
    reg, options = details_of(report, "sip.register"), details_of(report, "net.sip-options")
    ladder.local = str(reg.get("local_address") or options.get("local_address") or "")
    ladder.groups += _options(ladder, options) + _sip_register(ladder, reg, "sip.register")
    ladder.groups += _dial_test(ladder, details_of(report, "number.dial-test"))
    inbound = _inbound(ladder, details_of(report, "sip.inbound"))
    ladder.groups += ([inbound] if inbound else []) + _idle(ladder, details_of(report, "net.idle"))
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    ladder.groups.sort(key=lambda g: (g.start is not None, g.start or epoch))
    _label_causes(ladder, _causes(report))
    return ladder
