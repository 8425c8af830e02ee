"""net.sip-alg: does a middlebox (a router's "SIP ALG") rewrite our signalling on the way?

Three sources of evidence, each a comparison of what we sent with what arrived:
(a) our own OPTIONS over UDP, with an SDP offer: the top Via the registrar echoes must equal the
    one we sent, byte for byte, apart from the received/rport parameters a server adds (RFC 3261
    §18.2.1, RFC 3581). A server that reflects the request as it arrived (a message/sipfrag
    body, asked for with X-Sipdiag-Reflect) also shows its Via, Contact and SDP o=/c=/m= lines,
    which no response header can: ALGs rewrite those to the public address;
(b) sip.register's attempts: the Via sent-by the registrar echoes, and our Contact (the one with
    ``;sipdiag=``) among the bindings of its 200 OK. Only ``first_ok`` (the 2xx on the Call-ID of
    the REGISTER in ``sent``) is sure to answer what we sent: pjsua's NAT "contact rewrite" moves
    to the address the registrar saw, so a change to exactly that address in the 2xx pjsua
    reported is "ambiguous", no evidence either way;
(c) net.stun: a MAPPED-ADDRESS that differs from the XOR-MAPPED-ADDRESS of the same response
    (an ALG rewrites addresses it can read; XOR hides them).
A NAT alone changes none of these: it only shows in received/rport and in the mapped address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from checks.net.dns import dns_deadline, targets_for
from checks.net.sip_options import derived_port
from checks.wire import sip as sipwire
from checks.wire.budget import PROBE_TIMEOUT, RESERVE
from checks.wire.dns import Target, hostport
from checks.wire.sip import SipMessage, parse, via_received
from checks.wire.udp import Exchange, exchange
from diag.context import Context
from diag.evidence import RegisterAttempt, register_details, stun_details
from diag.model import CheckResult, failed, passed, skipped
from diag.outcomes import TIMEOUT

NAT_PARAMS = frozenset({"received", "rport"})  # what a server adds to our Via (RFC 3581)
NOT_COMPARED = "not compared"
UNCHANGED, REWRITTEN = "unchanged", "rewritten"
AMBIGUOUS = "ambiguous"  # could be the softphone's own NAT rewrite: no evidence either way
PASS_SUMMARY = "Via and Contact arrived unchanged"
_SIPDIAG_PARAM = re.compile(r";\s*sipdiag=([^;>\s]+)", re.IGNORECASE)


def hint(registrar_host: str) -> str:
    return (
        "disable SIP ALG ('SIP helper', 'SIP transformations') on the router/firewall between "
        f"this machine and {registrar_host}"
    )


def _name(param: str) -> str:
    return param.split("=", 1)[0].strip().lower()


def _via_parts(via: str) -> tuple[str, str, list[str], list[str]]:
    """(protocol, sent-by, branch, other params but received/rport), as the bytes showed them."""
    head, *params = via.strip().split(";")
    protocol, _, sent_by = head.strip().partition(" ")
    kept = [p for p in params if _name(p) not in NAT_PARAMS]
    branch = [p for p in kept if _name(p) == "branch"]
    return protocol.strip(), sent_by.strip(), branch, [p for p in kept if p not in branch]


def sent_by(via: str) -> str:
    """``SIP/2.0/UDP 10.0.0.1:5060;branch=...`` -> ``10.0.0.1:5060``."""
    return _via_parts(via)[1]


def without_nat_params(via: str) -> str:
    """The Via as sent: what the server added (received, rport's value) taken out again."""
    head, *params = via.strip().split(";")
    return ";".join([head, *(p for p in params if _name(p) not in NAT_PARAMS)])


def via_changes(sent: str, seen: str) -> list[str]:
    """What a middlebox changed in our Via: [] if ``seen`` is ``sent`` plus received/rport."""
    names = ("protocol", "sent-by", "branch", "params")
    parts = zip(names, _via_parts(sent), _via_parts(seen), strict=True)
    changed = [name for name, a, b in parts if a != b]
    if not changed and without_nat_params(sent) != without_nat_params(seen):
        changed.append("formatting")  # e.g. whitespace: still not the bytes we sent
    return changed


def split_contacts(values: list[str]) -> list[str]:
    """Contact header values -> one entry per contact (commas inside <> or quotes kept)."""
    out: list[str] = []
    for value in values:
        depth, quoted, start = 0, False, 0
        for i, c in enumerate(value):
            if c == '"':
                quoted = not quoted
            elif not quoted and c in "<>":
                depth += 1 if c == "<" else -1
            elif not quoted and depth == 0 and c == ",":
                out.append(value[start:i].strip())
                start = i + 1
        out.append(value[start:].strip())
    return [c for c in out if c]


def contact_uri(contact: str) -> str:
    """The URI of one contact: inside <...>, else up to its first header parameter."""
    if "<" in contact:
        return contact[contact.index("<") + 1 :].split(">", 1)[0].strip()
    return contact.split(";", 1)[0].strip()


def _uri_parts(uri: str) -> tuple[str, str, str]:
    """(user, host:port, params) of a SIP URI, as text."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    user, _, rest = rest.rpartition("@")
    hostport_, _, params = rest.partition(";")
    return user, hostport_, params


def contact_changes(sent: str, seen: str) -> list[str]:
    a, b = _uri_parts(sent), _uri_parts(seen)
    return [n for n, x, y in zip(("user", "host:port", "params"), a, b, strict=True) if x != y]


def options_evidence(
    exchanged: Exchange, target: Target, source: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Source (a): the probe's record and the rewrites it shows."""
    msg = parse(exchanged.request.decode(errors="replace")) if exchanged.request else None
    sent_via = msg.first("via") if msg else None
    echoed = sipwire.top_via(exchanged.answer) if exchanged.answer else None
    probe = {
        "target": hostport(target.address, target.port),
        "target_source": source,
        "local": exchanged.local,
        "outcome": exchanged.outcome,
        "code": exchanged.code,
        "rtt_ms": exchanged.rtt_ms,
        "error": exchanged.error,
        "sent_via": sent_via,
        "echoed_via": echoed,
        "compared": bool(sent_via and echoed),
    }
    rewrites: list[dict[str, Any]] = []
    if sent_via and echoed:
        changed = via_changes(sent_via, echoed)
        if changed:
            rewrites.append(_rewrite("options", "Via", sent_via, echoed, changed, transport="udp"))
    reflected = (
        sipwire.reflected_request(exchanged.answer, exchanged.probe_id)
        if exchanged.answer
        else None
    )
    probe["reflected"] = reflected is not None
    probe["contact"] = probe["sdp"] = NOT_COMPARED
    if msg is not None and reflected is not None:
        rewrites += _reflection_rewrites(msg, reflected, probe, already=bool(rewrites))
        probe["compared"] = True
    return probe, rewrites


def sdp_addresses(body: str) -> dict[str, str]:
    """The SDP lines an ALG rewrites (session o=, c=, first m=), by type, as written."""
    found: dict[str, str] = {}
    for line in body.replace("\r\n", "\n").split("\n"):
        kind = line[:2]
        if kind in ("o=", "c=", "m=") and kind not in found:
            found[kind] = line.strip()
    return found


def _reflection_rewrites(
    sent: SipMessage, seen: SipMessage, probe: dict[str, Any], already: bool
) -> list[dict[str, Any]]:
    """Source (a'), from the request the server reflected: the Via (unless its echo already
    showed the change), the Contact and the SDP exactly as they arrived."""
    out: list[dict[str, Any]] = []
    where = {"transport": "udp", "seen_in": "reflection"}
    sent_via, seen_via = sipwire.top_via(sent), sipwire.top_via(seen)
    if sent_via and seen_via and not already:
        changed = via_changes(sent_via, seen_via)
        if changed:
            out.append(_rewrite("options", "Via", sent_via, seen_via, changed, **where))
    sent_contact, seen_contact = sent.first("contact"), seen.first("contact")
    if sent_contact and seen_contact:
        a, b = contact_uri(sent_contact), contact_uri(seen_contact)
        probe["contact"] = UNCHANGED if a == b else REWRITTEN
        if a != b:
            out.append(_rewrite("options", "Contact", a, b, contact_changes(a, b), **where))
    ours, theirs = sdp_addresses(sent.body), sdp_addresses(seen.body)
    if ours:
        changed = [k for k in ours if ours[k] != theirs.get(k)]
        probe["sdp"] = REWRITTEN if changed else UNCHANGED
        if changed:
            out.append(
                _rewrite(
                    "options",
                    "SDP",
                    " / ".join(ours[k] for k in changed),
                    " / ".join(theirs.get(k, "(missing)") for k in changed),
                    changed,
                    **where,
                )
            )
    return out


def _public(via: str) -> str:
    """The address the registrar saw us at, from its received/rport (else the sent-by)."""
    received, rport = via_received(via)
    host, _, port = sent_by(via).rpartition(":")
    host = sipwire.host_literal(received) if received else host
    return f"{host}:{rport if rport is not None else port}"


def _answer(attempt: RegisterAttempt) -> tuple[str | None, list[str], bool]:
    """(echoed Via, Contact values, certain) that answer the REGISTER in ``sent``.

    ``first_ok`` (the first 2xx on the attempt's Call-ID) answers the Via/Contact in ``sent``
    for certain. ``via_echoed``/``bindings`` come from the 2xx pjsua reported, which after its
    NAT "contact rewrite" answers a later REGISTER that already carries the public address.
    """
    first = attempt.get("first_ok")
    if first:
        return first.get("via"), list(first.get("contacts") or []), True
    # A binding query's 200 lists the account's bindings as parsed records (other devices'):
    # only Contact values a REGISTER of ours got back say anything about our Contact.
    contacts = [b for b in attempt.get("bindings") or [] if isinstance(b, str)]
    return attempt.get("via_echoed"), contacts, False


def _verdict(sent: str, seen: str, certain: bool, public_address: bool) -> str:
    if sent == seen:
        return UNCHANGED
    # After a NAT, pjsua re-registers from the address the registrar saw (received/rport): a
    # change to exactly that address may be pjsua's own doing, unless ``seen`` answers ``sent``.
    return REWRITTEN if certain or not public_address else AMBIGUOUS


def register_evidence(
    result: CheckResult | None, tag: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Source (b): per sip.register attempt, what could be compared, and the rewrites."""
    probes: list[dict[str, Any]] = []
    rewrites: list[dict[str, Any]] = []
    attempts = register_details(result.details).get("attempts", []) if result is not None else []
    for attempt in attempts:
        transport = attempt.get("transport")
        sent = attempt.get("sent")
        echoed, contacts, certain = _answer(attempt)
        public = _public(echoed) if echoed else None
        probe = {"transport": transport, "via": NOT_COMPARED, "contact": NOT_COMPARED}
        probe["basis"] = "first 2xx" if certain else "reported 2xx"
        sent_via = sent.get("via") if sent else None
        if sent_via and echoed:  # other branch (the REGISTER with credentials): sent-by only
            seen_by = sent_by(echoed)
            probe["via"] = _verdict(sent_by(sent_via), seen_by, certain, seen_by == public)
            if probe["via"] == REWRITTEN:
                rewrites.append(
                    _rewrite("register", "Via", sent_via, echoed, ["sent-by"], transport=transport)
                )
        sent_contact = sent.get("contact") if sent else None
        ours = _SIPDIAG_PARAM.search(sent_contact or "")
        wanted = ours.group(1) if ours else tag
        bindings = [
            contact_uri(c)
            for c in split_contacts(contacts)
            if any(m.group(1) == wanted for m in _SIPDIAG_PARAM.finditer(contact_uri(c)))
        ]
        if sent_contact and bindings:
            uri = contact_uri(sent_contact)
            seen = uri if uri in bindings else bindings[0]
            at_public = _uri_parts(seen)[1] == public
            probe["contact"] = _verdict(uri, seen, certain, at_public)
            if probe["contact"] == REWRITTEN:
                changed = contact_changes(uri, seen)
                rewrites.append(
                    _rewrite("register", "Contact", uri, seen, changed, transport=transport)
                )
        probes.append(probe)
    return probes, rewrites


def stun_evidence(result: CheckResult | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Source (c): servers whose MAPPED-ADDRESS could be compared, and those that differed."""
    probes: list[dict[str, Any]] = []
    rewrites: list[dict[str, Any]] = []
    servers = stun_details(result.details).get("servers", []) if result is not None else []
    for server in servers:
        suspected = server.get("alg_suspected") is True
        compared = suspected or server.get("mapped_plain") is not None
        where = {"server": server.get("server"), "transport": server.get("transport")}
        probes.append({**where, "compared": compared, "alg": suspected})
        if suspected:
            rewrites.append(
                _rewrite(
                    "stun",
                    "MAPPED-ADDRESS",
                    server.get("mapped"),  # XOR-MAPPED-ADDRESS: what no ALG could read
                    server.get("mapped_plain"),
                    ["address"],
                    **where,
                )
            )
    return probes, rewrites


def _rewrite(
    source: str, field: str, sent: Any, seen: Any, changed: list[str], **more: Any
) -> dict[str, Any]:
    return dict(source=source, field=field, sent=sent, seen=seen, changed=changed, **more)


def udp_probe_target(ctx: Context) -> tuple[Target | None, str]:
    """Where to send the OPTIONS, and where that came from (or why there is nowhere): the UDP
    target; for TCP-only setups the UDP twin of the TCP target (an ALG rewrites both); none for
    TLS-only ones (no ALG can read TLS)."""
    registrar = ctx.settings.target
    assert registrar is not None
    configured = ctx.settings.effective_transports
    found = targets_for(replace(ctx, deadline=dns_deadline(ctx)))
    udp = next((t for t in found if t.transport == "udp"), None)
    tcp = next((t for t in found if t.transport == "tcp"), None)
    if udp is not None:
        return udp, "dns"
    if tcp is not None:
        port = derived_port(registrar, "udp", configured)
        return Target("udp", tcp.host, port, tcp.address), "derived"
    if "udp" in configured or "tcp" in configured:
        return None, f"no UDP target for {registrar.host} (see net.dns)"
    return None, f"signalling uses {', '.join(configured)}, which no ALG can read"


def _describe(rewrite: Mapping[str, Any]) -> str:
    if rewrite["field"] == "Via":
        what = f"Via sent-by {sent_by(rewrite['sent'])} arrived as {sent_by(rewrite['seen'])}"
        if sent_by(rewrite["sent"]) == sent_by(rewrite["seen"]):
            what = f"Via {'/'.join(rewrite['changed'])} changed on the way"
        return f"{what} ({rewrite['source'].upper()})"
    if rewrite["field"] == "Contact" and rewrite["source"] == "register":
        return f"Contact {rewrite['sent']} was registered as {rewrite['seen']} (REGISTER)"
    if rewrite["field"] in ("Contact", "SDP"):
        return f"{rewrite['field']} {rewrite['sent']} arrived as {rewrite['seen']} (OPTIONS)"
    return (
        f"STUN server {rewrite.get('server')} sent MAPPED-ADDRESS {rewrite['seen']} "
        f"but XOR-MAPPED-ADDRESS {rewrite['sent']}"
    )


def _no_register_evidence(result: CheckResult | None, probes: list[dict[str, Any]]) -> str:
    if result is None:
        return "sip.register did not run"
    if any(AMBIGUOUS in (p["via"], p["contact"]) for p in probes):
        return (
            "sip.register: pjsua re-registered from its public address, so its 200 OK "
            "cannot tell a NAT from an ALG"
        )
    return "sip.register got no 200 OK with our Via and Contact"


def _udp_silent(register: CheckResult | None) -> str | None:
    """Why not to wait for an OPTIONS answer over UDP: sip.register's UDP REGISTER got nothing
    back at all (no answer, no ICMP) in this run."""
    attempts = (
        (register_details(register.details).get("attempts") or []) if register is not None else []
    )
    udp = next((a for a in attempts if a.get("transport") == "udp"), None)
    if udp is None or udp.get("outcome") != TIMEOUT or udp.get("registrar_answered"):
        return None
    return "sip.register's UDP REGISTER got no answer at all in this run"


def check_sip_alg(ctx: Context) -> CheckResult:
    registrar = ctx.settings.target
    assert registrar is not None  # requires=("registrar",)
    probes: dict[str, Any] = {}
    rewrites: list[dict[str, Any]] = []
    nothing: list[str] = []  # why a source gave nothing to compare

    target, source = udp_probe_target(ctx)
    silent = _udp_silent(ctx.results.get("sip.register"))
    if target is not None and silent:
        # Conclusive already: the same path gave sip.register nothing through its
        # retransmissions, so a second wait would only spend the budget (no comparison).
        target, source = None, silent
    if target is None:
        probes["options"] = {"skipped": source, "compared": False}
        nothing.append(f"no OPTIONS sent: {source}")
    else:
        uri = f"sip:{hostport(target.host, target.port)}"
        pid = sipwire.probe_id(ctx.run_id, "alg")
        probe = Exchange(
            pid,
            lambda host, port: sipwire.options_request(
                uri, "udp", host, port, pid, ctx.user_agent, sdp=sipwire.sdp_offer(host, port, "1")
            ),
        )
        deadline = min(ctx.deadline - RESERVE, ctx.monotonic() + PROBE_TIMEOUT)
        exchange([probe], target.address, target.port, deadline, ctx.monotonic)
        probes["options"], found = options_evidence(probe, target, source)
        rewrites += found
        if not probes["options"]["compared"]:
            nothing.append(f"OPTIONS over UDP to {probes['options']['target']}: {probe.outcome}")

    register = ctx.results.get("sip.register")
    probes["register"], found = register_evidence(register, ctx.run_id[:8])
    rewrites += found
    verdicts = {v for p in probes["register"] for v in (p["via"], p["contact"])}
    if not verdicts & {UNCHANGED, REWRITTEN}:
        nothing.append(_no_register_evidence(register, probes["register"]))

    stun = ctx.results.get("net.stun")
    probes["stun"], found = stun_evidence(stun)
    rewrites += found
    if not any(p["compared"] for p in probes["stun"]):
        nothing.append("net.stun did not run" if stun is None else "no STUN MAPPED-ADDRESS")

    if rewrites:
        more = f" (+{len(rewrites) - 1} more)" if len(rewrites) > 1 else ""
        what = (
            "the addresses in our packets" if rewrites[0]["source"] == "stun" else "our signalling"
        )
        return failed(
            f"a middlebox rewrites {what}: {_describe(rewrites[0])}{more}",
            hint(registrar.host),
            rewrites=rewrites,
            probes=probes,
        )
    if len(nothing) == 3:
        return skipped(f"nothing to compare: {'; '.join(nothing)}", rewrites=[], probes=probes)
    return passed(PASS_SUMMARY, rewrites=[], probes=probes)
