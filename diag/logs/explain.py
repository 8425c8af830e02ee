"""What a platform's call-offer status means: a catalogue (data, not branches), tolerant lookup.

The statuses are what the platform logs for an offer to an agent; SIP codes are the final
response the agent's side sent to the platform's INVITE. `checks` names check families (or ids)
that gather evidence for it; `cause_ids` are diag/causes.py IDs a report can show for it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

CATEGORIES = ("agent_action", "timeout", "configuration", "network", "platform")


@dataclass(frozen=True)
class StatusEntry:
    status: str  # as the platform shows it (or "SIP 486 Busy Here")
    category: str  # one of CATEGORIES
    meaning: str
    typical_causes: tuple[str, ...]
    next_step: str
    checks: tuple[str, ...] = ()  # sipdiag check families or ids that test it
    cause_ids: tuple[str, ...] = ()  # diag/causes.py IDs a report can show for it
    sip_code: int | None = None
    aliases: tuple[str, ...] = ()  # extra spellings, matched after normalise()

    @property
    def reason(self) -> str | None:
        """The SIP reason phrase ("Forbidden"), when this is a SIP response."""
        if self.sip_code is None:
            return None
        return self.status.split(f"SIP {self.sip_code} ", 1)[1].rstrip(")")


_AUDIO = (
    "audio.backend_unavailable",
    "audio.no_input_device",
    "audio.no_output_device",
    "audio.input_unavailable",
    "audio.output_unavailable",
    "audio.permission_denied",
)
_NUMBER = ("number.invalid", "number.not_permitted", "number.identity_mismatch")
_REACH = ("network.udp_blocked", "network.tcp_blocked", "network.tls_blocked")
# An offer that never reaches the softphone: no registration, one the platform cannot route back
# to, requests from the platform dropped, or a path the network forgets while the softphone idles.
_INBOUND = (
    "sip.not_registered",
    "sip.binding_unroutable",
    "network.inbound_blocked",
    "network.nat_binding_short",
)
_INBOUND_CHECKS = ("sip.bindings", "sip.inbound", "net.idle")  # match pairs rows with these
_IDLE_TEST = "; for offers lost after idle periods, add `--idle 30,90,300 --timeout 480`"
# Wordings shared by several entries.
_BLOCKED = "inbound requests blocked by a firewall/NAT: the offer never reached the softphone"
_IDLE = (
    "the network forgets the UDP path after 30-90 s idle, sooner than the softphone "
    "re-registers or sends keepalives"
)
_OTHER_DEVICE = "another device logged in with the same account rejected the offer"
_NOT_REGISTERED = "no softphone registered for the agent's account"
_RUN_CHECK = "Run `sipdiag check` on that agent's machine and attach the report to the ticket."
_RUN_CHECK_LC = "r" + _RUN_CHECK[1:]

CATALOGUE: tuple[StatusEntry, ...] = (
    StatusEntry(
        "Failure (Rejected by Agent Console)",
        "agent_action",
        "The agent's console refused the offer: the agent was logged out or had set a busy/"
        "not-ready state. Not a technical fault.",
        ("agent logged out", "agent set busy / not ready / break", "agent console closed"),
        "Check the agent's state changes in the platform's audit log at that time.",
        aliases=("rejected by agent console", "agent console", "rejected by agent"),
    ),
    StatusEntry(
        "Failure (No Answer)",
        "timeout",
        "The call rang but nobody answered before the alerting timer (typically 20-30 s) expired.",
        (
            "agent away from the desk",
            "ringing not audible (wrong or missing output device, volume muted)",
            "softphone minimised or not running",
            _BLOCKED,
            _IDLE,
            "another device logged in with the same account rang instead, or rejected the offer",
            _NOT_REGISTERED,
        ),
        "Check the agent was present and the softphone rang audibly (output device, volume); if "
        "it never rang, run `sipdiag check --idle 30,90,300 --timeout 480` on that agent's "
        "machine.",
        ("audio", "host", *_INBOUND_CHECKS),
        (
            "audio.no_output_device",
            "audio.output_unavailable",
            "host.softphone_not_running",
            *_INBOUND,
            "sip.extra_bindings",
        ),
        aliases=("no answer", "not answered", "noanswer", "unanswered"),
    ),
    StatusEntry(
        "SIP 400 Bad Request",
        "network",
        "The agent's side could not parse the platform's INVITE.",
        (
            "a SIP ALG rewrote headers or SDP in transit",
            "a large UDP message arrived truncated or its fragments were dropped",
            "a softphone that does not understand the platform's SIP",
        ),
        "Run `sipdiag check` on that agent's machine (net.sip-alg, net.udp-fragmentation).",
        ("net",),
        ("network.sip_alg", "network.udp_fragmentation"),
        400,
    ),
    StatusEntry(
        "SIP 401 Unauthorized",
        "configuration",
        "The agent's softphone (or a proxy in front of it) demanded credentials for the "
        "incoming call.",
        (
            "softphone set to authenticate incoming calls",
            "the softphone's registration uses stale or wrong credentials",
            "another device registered with the same account",
        ),
        "Check the softphone's account settings and that it registers with the right "
        "credentials; " + _RUN_CHECK_LC,
        ("sip",),
        ("sip.credentials_rejected",),
        401,
    ),
    StatusEntry(
        "Failure (Rejected – SIP 403 Forbidden)",
        "configuration",
        "A technical rejection, not the agent's doing: no usable audio device on the softphone, a "
        "number the platform may not call, or network/firewall restrictions (blocked ports, SIP "
        "ALG, dropped UDP fragments, a source address the registrar does not allow).",
        (
            "no usable microphone or speaker on the softphone",
            "the platform calls the agent on a number it may not use",
            "firewall blocks SIP ports, SIP ALG rewriting, dropped UDP fragments",
            "a source IP address or account the registrar refuses",
            _OTHER_DEVICE,
            _BLOCKED,
            _IDLE,
            _NOT_REGISTERED,
        ),
        _RUN_CHECK,
        ("audio", "number", "net", "sip", "host", *_INBOUND_CHECKS),
        (
            *_AUDIO,
            *_NUMBER,
            *_REACH,
            "network.registrar_unreachable",
            "network.sip_alg",
            "network.udp_fragmentation",
            "host.vpn_active",
            "sip.forbidden",
            "sip.transport_not_offered",
            "sip.credentials_rejected",
            "sip.extra_bindings",
            *_INBOUND,
        ),
        403,
    ),
    StatusEntry(
        "SIP 404 Not Found",
        "configuration",
        "The agent's user or number is unknown where the platform sent the offer.",
        (
            "softphone not running or not registered",
            "wrong SIP user or number in the agent's platform settings",
        ),
        "Check the agent's SIP user and number in the platform; " + _RUN_CHECK_LC,
        ("sip", "number", "host", "sip.bindings"),
        (
            "sip.not_registered",
            "sip.not_found",
            "host.softphone_not_running",
            "number.invalid",
            "number.identity_mismatch",
        ),
        404,
    ),
    StatusEntry(
        "SIP 407 Proxy Authentication Required",
        "configuration",
        "A proxy between the platform and the agent demanded credentials for the offer.",
        ("an outbound proxy or SBC on the agent's site requires authentication",),
        "Check the SIP proxy/SBC configuration between the platform and the agent's site.",
        ("sip", "net"),
        ("sip.credentials_rejected",),
        407,
    ),
    StatusEntry(
        "SIP 408 Request Timeout",
        "network",
        "No final answer came back in time: the INVITE or its answers were lost on the way.",
        (
            _BLOCKED,
            _IDLE,
            "a registration whose private contact the platform cannot route back to",
            "fragmented UDP dropped",
            "a VPN or firewall in the path",
        ),
        _RUN_CHECK[:-1] + _IDLE_TEST + ".",
        ("net", "sip", "host", *_INBOUND_CHECKS),
        (
            "network.inbound_blocked",
            "network.nat_binding_short",
            "sip.binding_unroutable",
            *_REACH,
            "network.registrar_unreachable",
            "network.udp_fragmentation",
            "network.nat_restrictive",
            "host.vpn_active",
        ),
        408,
        ("request timeout", "timeout"),
    ),
    StatusEntry(
        "SIP 480 Temporarily Unavailable",
        "agent_action",
        "The agent's softphone is reachable but unavailable: do-not-disturb or not logged in.",
        (
            "agent set do-not-disturb",
            "agent not logged in to the softphone",
            "softphone starting",
            _NOT_REGISTERED + " (the platform answers 480 itself)",
            _BLOCKED + " (the platform gave up on it)",
            _IDLE,
        ),
        "Check the agent's state at that time; if the agent was available, " + _RUN_CHECK_LC,
        ("host", "sip", *_INBOUND_CHECKS),
        ("host.softphone_not_running", *_INBOUND),
        480,
    ),
    StatusEntry(
        "SIP 481 Call/Transaction Does Not Exist",
        "platform",
        "A request referred to a call the other side no longer knows.",
        (
            "the call was already torn down on one side",
            "softphone restarted during the call",
            "a SIP ALG rewrote dialog identifiers",
        ),
        "Look up the Call-ID in the platform's SIP logs; " + _RUN_CHECK_LC,
        ("net",),
        ("network.sip_alg",),
        481,
        ("call transaction does not exist", "call leg transaction does not exist"),
    ),
    StatusEntry(
        "SIP 484 Address Incomplete",
        "configuration",
        "The number the platform dialled for the agent is incomplete.",
        ("agent number truncated or not in E.164 form in the platform's agent settings",),
        "Correct the agent's number in the platform (E.164, e.g. +4420...).",
        ("number",),
        ("number.invalid",),
        484,
    ),
    StatusEntry(
        "SIP 486 Busy Here",
        "agent_action",
        "The agent's softphone is busy: on another call, or the agent set busy.",
        (
            "agent on another call",
            "agent set busy on the softphone",
            "call waiting disabled",
            "another device logged in with the same account answered busy",
        ),
        "Check the agent's calls and state at that time in the platform.",
        ("sip.bindings",),
        ("sip.extra_bindings",),
        aliases=("busy here", "busy"),
        sip_code=486,
    ),
    StatusEntry(
        "SIP 487 Request Terminated",
        "timeout",
        "The platform cancelled the offer before it was answered: the alerting timer ran out, "
        "the caller hung up, or the call went to another agent.",
        ("alerting timer expired", "caller abandoned", "offer re-routed to another agent"),
        "Compare the offer's duration with the alerting timer; check the agent's presence.",
        ("audio",),
        ("audio.no_output_device", "audio.output_unavailable"),
        487,
    ),
    StatusEntry(
        "SIP 488 Not Acceptable Here",
        "configuration",
        "The agent's softphone refused the offered media: no common codec, SRTP mismatch, "
        "rewritten SDP, or no audio device to offer media on.",
        (
            "codec or SRTP settings of the softphone and platform do not overlap",
            "a SIP ALG rewrote the SDP",
            "no usable audio device",
        ),
        "Compare the softphone's codec/SRTP settings with the platform's; " + _RUN_CHECK_LC,
        ("net", "audio"),
        ("network.sip_alg", "audio.backend_unavailable", "audio.no_input_device"),
        488,
    ),
    StatusEntry(
        "SIP 500 Server Internal Error",
        "platform",
        "The far end (softphone, proxy or platform component) failed internally.",
        ("softphone or proxy crash or bug", "platform component fault"),
        "Report it to the platform with the time and Call-ID; retry.",
        ("sip",),
        ("sip.server_error",),
        500,
    ),
    StatusEntry(
        "SIP 502 Bad Gateway",
        "platform",
        "A proxy or gateway got an invalid answer from the next hop towards the agent.",
        ("SBC/proxy misconfiguration", "next hop answered garbage (ALG, broken proxy)"),
        "Report it to the platform with the time and Call-ID.",
        ("sip", "net"),
        ("sip.server_error", "network.sip_alg"),
        502,
    ),
    StatusEntry(
        "SIP 503 Service Unavailable",
        "platform",
        "A server on the path was overloaded or in maintenance, or had no working route to the "
        "agent's softphone.",
        (
            "platform overload or maintenance",
            "no flow to the softphone (its connection dropped, or closed by the network while "
            "idle)",
        ),
        "Check the platform's status page; if only some agents see it, " + _RUN_CHECK_LC,
        ("sip", "net", "sip.inbound", "net.idle"),
        (
            "sip.server_error",
            "network.registrar_unreachable",
            *_REACH,
            "network.inbound_blocked",
            "network.nat_binding_short",
        ),
        503,
    ),
    StatusEntry(
        "SIP 504 Server Time-out",
        "network",
        "A proxy got no timely answer from the next hop: the agent's softphone could not be "
        "reached.",
        (_BLOCKED, _IDLE, "VPN in the path", "softphone offline"),
        _RUN_CHECK[:-1] + _IDLE_TEST + ".",
        ("net", "host", *_INBOUND_CHECKS),
        (
            *_INBOUND,
            *_REACH,
            "network.registrar_unreachable",
            "network.nat_restrictive",
            "host.vpn_active",
        ),
        504,
        ("server timeout",),
    ),
    StatusEntry(
        "SIP 600 Busy Everywhere",
        "agent_action",
        "All of the agent's devices are busy or the agent refused the call everywhere.",
        ("agent on another call on every device", "agent set busy"),
        "Check the agent's calls and state at that time in the platform.",
        sip_code=600,
    ),
    StatusEntry(
        "Failure (Rejected – SIP 603 Decline)",
        "agent_action",
        "The agent pressed Decline on the softphone.",
        (
            "agent declined the call",
            _OTHER_DEVICE,
            "sipdiag's own --inbound-call test (match labels it `sipdiag inbound test`)",
        ),
        "Nothing technical to fix; review with the agent if declines are unexpected, and check "
        "no other device is logged in with the agent's account.",
        ("sip.bindings",),
        ("sip.extra_bindings",),
        sip_code=603,
        aliases=("decline", "declined"),
    ),
    StatusEntry(
        "SIP 604 Does Not Exist Anywhere",
        "configuration",
        "The agent's number or user does not exist anywhere the platform can route to.",
        ("wrong number in the agent's platform settings", "SIP account removed"),
        "Correct the agent's number or SIP user in the platform's agent settings.",
        ("number", "sip"),
        ("number.invalid", "number.identity_mismatch", "sip.not_found"),
        604,
    ),
    StatusEntry(
        "SIP 606 Not Acceptable",
        "configuration",
        "The session the platform offered is not acceptable anywhere (media or codec).",
        ("no common codec or SRTP setting", "a SIP ALG rewrote the SDP"),
        "Compare the softphone's codec/SRTP settings with the platform's.",
        ("net", "audio"),
        ("network.sip_alg",),
        606,
    ),
)

_BY_CODE = {e.sip_code: e for e in CATALOGUE if e.sip_code is not None}
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"


def normalise(text: str) -> str:
    """'Failure (Rejected – SIP 403 Forbidden)' -> 'sip 403 forbidden'."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(f"[{_DASHES}:()/.,;\"'_]+", " ", t)
    t = " ".join(t.split())
    t = re.sub(r"^failure\b\s*", "", t)
    return re.sub(r"^rejected\s+(?=sip\b|\d)", "", t)


def _names(entry: StatusEntry) -> list[str]:
    names = [normalise(entry.status), *(normalise(a) for a in entry.aliases)]
    if entry.sip_code is not None:
        reason = normalise(entry.reason or "")
        names += [f"sip {entry.sip_code} {reason}", f"{entry.sip_code} {reason}", reason]
    return names


_BY_NAME = {name: e for e in CATALOGUE for name in _names(e)}


def lookup(text: str) -> StatusEntry | None:
    key = normalise(text)
    if key in _BY_NAME:
        return _BY_NAME[key]
    # Any spelling that carries a SIP code ("SIP 403", "403", "Rejected - 403 ...") means that code.
    code = re.fullmatch(r"(?:sip\s+)?([1-6]\d\d)\b.*", key)
    if code:
        return _BY_CODE.get(int(code.group(1)))
    return None


def suggestions(text: str) -> list[str]:
    """The closest known statuses, as the platform shows them (never empty)."""
    key = normalise(text)
    code = re.fullmatch(r"(?:sip\s+)?(\d{3})\b.*", key)
    if code:  # an unknown SIP code: the numerically nearest known ones
        nearest = sorted(_BY_CODE, key=lambda c: (abs(c - int(code.group(1))), c))[:3]
        return [_BY_CODE[c].status for c in nearest]
    found: list[str] = []
    for cutoff in (0.5, 0.0):
        for name in difflib.get_close_matches(key, list(_BY_NAME), n=8, cutoff=cutoff):
            if _BY_NAME[name].status not in found:
                found.append(_BY_NAME[name].status)
        if found:
            break
    return found[:3]
