"""number.format: the agent's numbers are valid E.164 numbers.

Parsing, validity, type and country come from `phonenumbers` (Google's libphonenumber
metadata); it is imported lazily so `sipdiag --help` never loads its tables.
"""

from __future__ import annotations

import re
from typing import Any

from diag.context import Context
from diag.model import CheckResult, failed, passed

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


def e164(number: str, region: str | None) -> str | None:
    """The number in E.164 form (+CC…) when it parses, valid or not; None when it does not."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


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
