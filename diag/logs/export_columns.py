"""Which columns of a central-log export hold the fields match needs: header names seen in
platform exports, and the `--column FIELD=NAME` overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping

from diag.errors import UsageError

FIELDS = ("time", "agent", "status", "call_id", "number")
REQUIRED = ("time", "agent", "status")

# Header names seen in platform exports, compared lower-case with only letters and digits kept.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "time": (
        "datetime", "timestamp", "time", "eventtime", "offertime", "offeredat", "starttime",
        "calltime", "createdat", "date", "ts", "when",
    ),
    "agent": (
        "agent", "agentid", "agentname", "agentlogin", "agentuser", "user", "userid", "username",
        "login", "extension", "agentextension", "sipuser", "sipuri", "agentsipuri", "endpoint",
    ),
    "status": (
        "status", "result", "outcome", "disposition", "offerstatus", "callstatus", "offerresult",
        "statusreason", "reason", "sipstatus", "state",
    ),
    "call_id": ("callid", "sipcallid", "callidheader"),
    "number": (
        "number", "agentnumber", "phonenumber", "phone", "diallednumber", "dialednumber",
        "destinationnumber", "destination", "callednumber", "to", "ddi", "dnis",
    ),
}  # fmt: skip

_CONTAINS = {
    "time": ("timestamp", "datetime"),
    "agent": ("agent",),
    "status": ("status", "result", "outcome"),
    "call_id": ("callid",),
    "number": ("number",),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def detect_columns(available: list[str], overrides: Mapping[str, str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for fld, name in overrides.items():
        if name not in available:
            raise UsageError(
                f"--column {fld}={name}: the export has no column '{name}'",
                "use one of " + ", ".join(f"'{c}'" for c in available),
            )
        chosen[fld] = name
    by_norm: dict[str, str] = {}
    for col in available:
        by_norm.setdefault(_norm(col), col)
    for fld in FIELDS:
        if fld in chosen:
            continue
        for candidate in CANDIDATES[fld]:
            found = by_norm.get(candidate)
            if found is not None and found not in chosen.values():
                chosen[fld] = found
                break
    for fld, words in _CONTAINS.items():  # then a header containing the word: "Offer status"
        for col in available:
            if fld not in chosen and col not in chosen.values():
                if any(w in _norm(col) for w in words):
                    chosen[fld] = col
    missing = [f for f in REQUIRED if f not in chosen]
    if missing:
        raise UsageError(
            f"cannot tell which column holds the {' and '.join(missing)} "
            f"(columns: {', '.join(available)})",
            " ".join(f'--column {m}="COLUMN NAME"' for m in missing),
        )
    return chosen


def parse_column_options(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        fld, sep, name = value.partition("=")
        fld = fld.strip().lower().replace("-", "_")
        fld = "call_id" if fld == "callid" else fld
        if not sep or not name or fld not in FIELDS:
            raise UsageError(
                f"invalid --column '{value}'",
                f'use FIELD=NAME with FIELD one of {", ".join(FIELDS)}, e.g. time="Date/Time"',
            )
        out[fld] = name
    return out


def names_fields(available: list[str], overrides: Mapping[str, str]) -> bool:
    """Whether these columns yield the required fields (detect_columns would not fail)."""
    try:
        detect_columns(available, overrides)
    except UsageError:
        return False
    return True
