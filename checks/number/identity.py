"""number.identity: the registered SIP identity covers the agent's numbers."""

from __future__ import annotations

import re
from typing import Any

from checks.number.format import describe
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def check_identity(ctx: Context) -> CheckResult:
    """The registration covers a number when the SIP user part is that number (E.164 forms
    compared); a non-numeric user cannot be compared from here: the platform maps it."""
    s = ctx.settings
    user = s.user or ""
    details: dict[str, Any] = {"aor": s.sip_uri, "user": user, "region": s.region}
    if not re.fullmatch(r"\+?[\d\s().-]+", user):
        return skipped(
            f"SIP user '{user}' is not a number: which numbers reach it is set on the platform",
            "check on the platform that the agent's numbers route to this SIP account",
            **details,
        )
    mine = describe(user, s.region)
    # A user without + and no --region cannot be placed in a country: compare its digits.
    user_key = mine["e164"] if mine["e164"] and not mine["error"] else "+" + _digits(user)
    details["user_e164"] = user_key
    rows: list[dict[str, Any]] = []
    for number in s.numbers:
        theirs = describe(number, s.region)
        key: str = theirs["e164"] or "+" + _digits(number)
        rows.append({"number": number, "e164": key, "covered": key == user_key})
    details["numbers"] = rows
    missed = [r for r in rows if not r["covered"]]
    if missed:
        text = ", ".join(str(r["e164"]) for r in missed)
        return failed(
            f"the registration {s.sip_uri or user} ({user_key}) does not cover {text}",
            f"set the agent's number in the platform to {user_key}, or register the softphone "
            f"with the SIP account of {missed[0]['e164']}",
            **details,
        )
    return passed(f"the registration {s.sip_uri or user} is {user_key}", **details)
