"""number.format, number.policy, number.identity: the agent's numbers, with no server needed.

Parsing, validity, type and country come from `phonenumbers` (Google's libphonenumber
metadata); it is imported lazily so `sipdiag --help` never loads its tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped
from diag.policy import NumberFacts, evaluate, load_policy

_PARSE_REASONS = {
    0: "it has no country code (write it as +CC…, or set --region)",  # INVALID_COUNTRY_CODE
    1: "it is not a phone number",  # NOT_A_NUMBER
    2: "it is too short after the international prefix",  # TOO_SHORT_AFTER_IDD
    3: "it is too short",  # TOO_SHORT_NSN
    4: "it is too long",  # TOO_LONG
}


def describe(number: str, region: str | None) -> dict[str, Any]:
    """Everything the number checks know about one number; `error` says why it is unusable."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, ValidationResult

    region = region.upper() if region else None
    out: dict[str, Any] = {"input": number, "e164": None, "valid": False, "possible": False}
    out.update(type=None, country=None, error=None)
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        out["error"] = _PARSE_REASONS.get(exc.error_type, str(exc))
        code = re.match(r"\s*\+\s*(\d{1,3})", number)
        if exc.error_type == exc.INVALID_COUNTRY_CODE and code:
            out["error"] = f"+{code.group(1)} is no country code"
        return out
    out["e164"] = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    out["country"] = phonenumbers.region_code_for_number(parsed)
    out["international"] = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    out["possible"] = reason == ValidationResult.IS_POSSIBLE
    out["valid"] = phonenumbers.is_valid_number(parsed)
    kind = phonenumbers.number_type(parsed)
    out["type"] = _type_name(kind)
    if not out["possible"]:
        out["error"] = {
            ValidationResult.INVALID_COUNTRY_CODE: f"+{parsed.country_code} is no country code",
            ValidationResult.TOO_SHORT: "it is too short",
            ValidationResult.TOO_LONG: "it is too long",
            ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "it can only be dialled locally",
        }.get(reason, "it has a length no number there has")
    elif not out["valid"]:
        region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
        where = region if region not in ("ZZ", "001") else f"+{parsed.country_code}"
        out["error"] = f"it is in no number range allocated in {where}"
    return out


def _type_name(kind: int) -> str:
    from phonenumbers import PhoneNumberType

    for name in dir(PhoneNumberType):
        if name.isupper() and getattr(PhoneNumberType, name) == kind:
            return name.lower()
    return "unknown"


def check_format(ctx: Context) -> CheckResult:
    s = ctx.settings
    numbers = [describe(n, s.region) for n in s.numbers]
    bad = [n for n in numbers if n["error"]]
    details = {"region": s.region, "numbers": numbers}
    if bad:
        text = "; ".join(f"{n['input']}: {n['error']}" for n in bad)
        return failed(
            f"invalid agent number: {text}",
            "correct the agent's number in the platform (E.164 with + and country code, "
            "e.g. +442079460123), or give --region for national numbers",
            **details,
        )
    text = ", ".join(
        f"{n['e164']} ({n['country']}, {n['type'].replace('_', ' ')})" for n in numbers
    )
    return passed(f"valid: {text}", **details)


def check_policy(ctx: Context) -> CheckResult:
    s = ctx.settings
    assert s.policy is not None  # requires=("numbers", "policy")
    policy = load_policy(Path(s.policy))  # validated before the run: cannot fail here
    results: list[dict[str, Any]] = []
    for number in s.numbers:
        facts = describe(number, s.region)
        entry: dict[str, Any] = {"number": number, "e164": facts["e164"]}
        if facts["e164"] is None:
            entry.update(evaluated=False, why=f"not evaluated: {facts['error']}")
        else:
            decision = evaluate(
                policy, NumberFacts(facts["e164"], facts["country"], facts["type"] or "unknown")
            )
            entry.update(evaluated=True, permitted=decision.permitted, rule=decision.rule)
        results.append(entry)
    details = {"policy": s.policy, "default": policy.default, "numbers": results}
    denied = [r for r in results if r["evaluated"] and not r["permitted"]]
    if denied:
        text = "; ".join(f"{r['e164']} denied by {r['rule']}" for r in denied)
        return failed(
            f"not permitted: {text}",
            "use a permitted number for this agent, or ask the platform administrator to "
            f"change the rule ({denied[0]['rule']})",
            **details,
        )
    checked = [r for r in results if r["evaluated"]]
    if not checked:
        return skipped("no agent number could be parsed (see number.format)", None, **details)
    text = "; ".join(f"{r['e164']} by {r['rule']}" for r in checked)
    return passed(f"permitted: {text}", **details)


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
