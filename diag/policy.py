"""The permitted-numbers policy: a TOML file of allow and deny rules, and its evaluation.

    default = "deny"                       # numbers no rule matches: "allow" or "deny"
    [allow]
    numbers   = ["+442079460123"]          # exact E.164 numbers
    prefixes  = ["+44"]                    # E.164 prefixes
    countries = ["GB", "IE"]               # ISO 3166 region codes
    types     = ["fixed_line", "mobile"]   # phonenumbers' number types, lower case
    [deny]
    prefixes  = ["+4490"]
    types     = ["premium_rate"]

Deny wins: a number matched by any deny rule is denied, whatever allows it. Of several rules
on the same side, the most specific is the one named: number, then the longest prefix, then
type, then country. Pure logic, no I/O besides reading the file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.inputs import POLICY_LIMIT, read_input

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULTS = ("allow", "deny")
KINDS = ("numbers", "prefixes", "types", "countries")  # most specific first
# phonenumbers.PhoneNumberType names, lower case (PhoneNumberType.to_string would need the
# library at import time; these names have been stable since phonenumbers 7).
NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "fixed_line_or_mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
)
HINT = "fix the policy file; see README 'Number policy'"


@dataclass(frozen=True)
class RuleSet:
    numbers: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()

    @cached_property
    def number_set(self) -> frozenset[str]:
        return frozenset(self.numbers)

    @cached_property
    def prefix_set(self) -> frozenset[str]:
        return frozenset(self.prefixes)


@dataclass(frozen=True)
class Policy:
    default: str = "deny"
    allow: RuleSet = field(default_factory=RuleSet)
    deny: RuleSet = field(default_factory=RuleSet)
    source: str = ""


@dataclass(frozen=True)
class NumberFacts:
    """What the policy looks at: the E.164 form, its region code and its type."""

    e164: str
    country: str | None
    type: str


@dataclass(frozen=True)
class Decision:
    permitted: bool
    rule: str  # e.g. 'deny.prefixes "+4490"' or 'default = "deny"'


def _line_of(text: str, *tokens: str) -> int | None:
    """The first line holding every token: tomllib reports positions for syntax errors only,
    so a value that parses but makes no sense is found again in the text."""
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if all(t in code for t in tokens):
            return number
    return None


def _at(path: Path, line: int | None) -> str:
    return f"policy {path} line {line}" if line else f"policy {path}"


def load_policy(path: Path) -> Policy:
    """Read and validate a policy; every problem is a one-line UsageError (exit 64) that names
    the line at fault."""
    if not path.exists():
        raise UsageError(f"policy file {path} not found", "check the --policy path")
    raw = read_input(path, "policy", POLICY_LIMIT, "give the path of a TOML file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"policy {path} is not UTF-8 text ({exc.reason})", HINT) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line L, column C)": the line at fault.
        raise UsageError(f"policy {path} is not valid TOML: {exc}", HINT) from None
    except RecursionError:
        raise UsageError(f"policy {path} is nested too deeply", HINT) from None
    return parse_policy(data, text, path)


def parse_policy(data: Mapping[str, Any], text: str, path: Path) -> Policy:
    unknown = sorted(set(data) - {"default", "allow", "deny"})
    if unknown:
        where = _at(path, _line_of(text, unknown[0]))
        raise UsageError(
            f"{where}: unknown key '{unknown[0]}'", "the top-level keys are default, allow, deny"
        )
    default = data.get("default", "deny")
    if default not in DEFAULTS:
        where = _at(path, _line_of(text, "default"))
        raise UsageError(f'{where}: default must be "allow" or "deny", got {default!r}', HINT)
    sides = {side: _rules(data.get(side, {}), side, text, path) for side in ("allow", "deny")}
    return Policy(default, sides["allow"], sides["deny"], str(path))


def _rules(table: Any, side: str, text: str, path: Path) -> RuleSet:
    if not isinstance(table, dict):
        raise UsageError(f"{_at(path, _line_of(text, side))}: '{side}' must be a table", HINT)
    unknown = sorted(set(table) - set(KINDS))
    if unknown:
        raise UsageError(
            f"{_at(path, _line_of(text, unknown[0]))}: unknown key '{side}.{unknown[0]}'",
            f"a rule table has {', '.join(KINDS)}",
        )
    out: dict[str, tuple[str, ...]] = {}
    for kind in KINDS:
        values = table.get(kind, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            where = _at(path, _line_of(text, kind))
            raise UsageError(f"{where}: '{side}.{kind}' must be a list of strings", HINT)
        out[kind] = tuple(_rule_value(kind, v, side, text, path) for v in values)
    return RuleSet(**out)


def _rule_value(kind: str, value: str, side: str, text: str, path: Path) -> str:
    def where() -> str:  # found only for an error: a search per value would be quadratic
        return _at(path, _line_of(text, f'"{value}"') or _line_of(text, value))

    if kind in ("numbers", "prefixes"):
        compact = re.sub(r"[\s().-]", "", value)
        if not re.fullmatch(r"\+\d{1,15}", compact):
            raise UsageError(
                f"{where()}: {side}.{kind} value {value!r} is not an E.164 "
                f"{'number' if kind == 'numbers' else 'prefix'}",
                "write it with + and the country code, e.g. +4420",
            )
        return compact
    if kind == "types":
        if value.lower() not in NUMBER_TYPES:
            raise UsageError(
                f"{where()}: unknown number type {value!r} in {side}.types",
                f"use one of {', '.join(NUMBER_TYPES)}",
            )
        return value.lower()
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise UsageError(
            f"{where()}: {side}.countries value {value!r} is not a two-letter region code",
            "use ISO 3166 codes such as GB, DE, US",
        )
    return value.upper()


def _match(rules: RuleSet, side: str, n: NumberFacts) -> str | None:
    """The most specific rule of one side that matches, as text, or None."""
    if n.e164 in rules.number_set:
        return f'{side}.numbers "{n.e164}"'
    # The longest prefix first, by looking the number's own prefixes up: linear in its length,
    # whatever the size of the policy.
    known = rules.prefix_set
    prefix = next((n.e164[:k] for k in range(len(n.e164), 0, -1) if n.e164[:k] in known), None)
    if prefix is not None:
        return f'{side}.prefixes "{prefix}"'
    if n.type in rules.types:
        return f'{side}.types "{n.type}"'
    if n.country and n.country in rules.countries:
        return f'{side}.countries "{n.country}"'
    return None


def evaluate(policy: Policy, n: NumberFacts) -> Decision:
    """Deny wins; otherwise an allow rule; otherwise the default."""
    denied = _match(policy.deny, "deny", n)
    if denied:
        return Decision(False, denied)
    allowed = _match(policy.allow, "allow", n)
    if allowed:
        return Decision(True, allowed)
    return Decision(policy.default == "allow", f'default = "{policy.default}"')
