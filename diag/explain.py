"""What a platform's call-offer status means (catalogue grown by the central-logs issue)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class StatusEntry:
    key: str  # normalised form, e.g. "sip 403 forbidden"
    status: str  # as the platform shows it
    category: str  # agent_action | timeout | configuration | network | platform | technical
    meaning: str
    next_step: str
    families: tuple[str, ...] = ()  # sipdiag check families that test it


CATALOGUE: tuple[StatusEntry, ...] = (
    StatusEntry(
        "rejected by agent console",
        "Failure (Rejected by Agent Console)",
        "agent_action",
        "The agent's console refused the offer: the agent was logged out or had set a busy/"
        "not-ready state.",
        "Check the agent's state changes in the platform's audit log at that time.",
    ),
    StatusEntry(
        "sip 603 decline",
        "Failure (Rejected – SIP 603 Decline)",
        "agent_action",
        "The agent pressed Decline on the softphone.",
        "Nothing technical to fix; review with the agent if declines are unexpected.",
    ),
    StatusEntry(
        "no answer",
        "Failure (No Answer)",
        "timeout",
        "The call rang but nobody answered before the alerting timer (typically 20-30 s) expired.",
        "Check the agent was present and the softphone rang audibly (output device, volume).",
        ("audio",),
    ),
    StatusEntry(
        "sip 403 forbidden",
        "Failure (Rejected – SIP 403 Forbidden)",
        "technical",
        "A technical rejection, not the agent's doing: no usable audio device on the softphone, a "
        "number the platform may not call, or network/firewall restrictions (blocked ports, SIP "
        "ALG, dropped UDP fragments, a source address the registrar does not allow).",
        "Run `sipdiag check` on that agent's machine and attach the report to the ticket.",
        ("audio", "number", "net", "sip"),
    ),
)

_ALIASES = {
    "403": "sip 403 forbidden",
    "sip 403": "sip 403 forbidden",
    "403 forbidden": "sip 403 forbidden",
    "603": "sip 603 decline",
    "sip 603": "sip 603 decline",
    "603 decline": "sip 603 decline",
    "rejected sip 403 forbidden": "sip 403 forbidden",
    "rejected sip 603 decline": "sip 603 decline",
}


def normalise(text: str) -> str:
    t = text.strip().lower()
    t = re.sub(r"^failure\s*\((.*)\)$", r"\1", t)
    t = re.sub(r"[\u2010-\u2015\-:()]+", " ", t)  # en/em dashes and hyphens are the same here
    t = re.sub(r"^rejected\s+(?=sip\b)", "", " ".join(t.split()))
    return " ".join(t.split())


def lookup(text: str) -> StatusEntry | None:
    key = normalise(text)
    key = _ALIASES.get(key, key)
    return next((e for e in CATALOGUE if e.key == key), None)


def suggestions(text: str) -> list[str]:
    keys = [e.key for e in CATALOGUE] + list(_ALIASES)
    close = difflib.get_close_matches(normalise(text), keys, n=3, cutoff=0.4)
    found = {lookup(k) for k in close}
    return [e.status for e in CATALOGUE if e in found]
