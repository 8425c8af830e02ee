"""Checks of one setting's value, named in the settings table (diag/settings.py).

Each takes the flag and the value (never None) and raises a one-line UsageError (exit 64) that
names the flag and what to give instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.target import is_ip, parse_registrar

ValueCheck = Callable[[str, Any], None]


def choice(allowed: Sequence[str], what: str, hint: str = "") -> ValueCheck:
    """The value is one of `allowed`; `what` names it in the error ("format")."""

    def check(flag: str, value: str) -> None:
        if value not in allowed:
            raise UsageError(
                f"unknown {what} '{value}'", hint or f"use one of {', '.join(allowed)}"
            )

    return check


def seconds(most: float, name: str, example: str, unit: str = " seconds") -> ValueCheck:
    """More than 0 and at most `most` seconds; `name` starts the error ("timeout")."""

    def check(flag: str, value: float) -> None:
        if not (math.isfinite(value) and 0 < value <= most):
            raise UsageError(
                f"{name} must be between 0 and {most:g}{unit}, got {value:g}", f"e.g. {example}"
            )

    return check


def not_stdout(flag: str, value: str) -> None:
    if value == "-":
        raise UsageError("--out - is not a file", "use --format json to print the report")


def policy_file(flag: str, value: str) -> None:
    """The file exists. It is parsed (a malformed one stops the run with its line, before any
    check) by the check command, and only when number.policy is selected: a large policy costs
    nothing to a run that does not use it."""
    if not Path(value).exists():
        raise UsageError(f"policy file {value} not found", "check the --policy path")


def ca_file(flag: str, value: str) -> None:
    if not Path(value).is_file():
        raise UsageError(f"CA file {value} not found", "give a PEM file with the platform's CA")


def dns_server(flag: str, value: str) -> None:
    try:
        dns = parse_registrar(value)
    except ValueError as exc:
        raise UsageError(
            f"invalid --dns-server '{value}': {exc}",
            "use an address such as 192.0.2.53 or 192.0.2.53:5353",
        ) from None
    if not is_ip(dns.host):
        raise UsageError(
            f"--dns-server must be an IP address, got '{dns.host}'",
            "use an address such as 192.0.2.53 or [2001:db8::53]:53",
        )


def servers(flag: str, value: Sequence[str]) -> None:
    """STUN and TURN servers: HOST[:PORT] each."""
    for server in value:
        try:
            parse_registrar(server)
        except ValueError as exc:
            raise UsageError(
                f"invalid STUN/TURN server '{server}': {exc}",
                "use HOST[:PORT], e.g. stun.example.com:3478",
            ) from None


def media_endpoints(flag: str, value: Sequence[str]) -> None:
    for media in value:
        if not re.fullmatch(r".+:\d{1,5}(-\d{1,5})?", media):
            raise UsageError(
                f"invalid --media '{media}'",
                "use HOST:PORT or HOST:LOW-HIGH, e.g. media.example.com:10000-20000",
            )


def region(flag: str, value: str) -> None:
    import phonenumbers

    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise UsageError(f"unknown --region '{value}'", "use an ISO 3166 code such as GB, DE or US")


def dial_target(flag: str, value: str) -> None:
    if not re.fullmatch(r"sips?:\S+|\+?[0-9][0-9 ().-]*|[A-Za-z0-9._~-]+", value):
        raise UsageError(
            f"invalid --dial-test '{value}'",
            "give one number (e.g. +442079460123), an extension, or a sip: URI",
        )


def one_dial_test(values: list[str] | None) -> str | None:
    """At most one test call per run: a repeated --dial-test is refused, not half-ignored."""
    if values and len(values) > 1:
        raise UsageError(
            f"--dial-test was given {len(values)} times; a run places at most one test call",
            "give --dial-test once; run sipdiag again for another number",
        )
    return values[0] if values else None


def softphone_url(flag: str, value: str) -> None:
    from urllib.parse import urlsplit

    hint = "use the softphone's web address, e.g. https://agent.example.com"
    try:
        web = urlsplit(value)
        web.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"invalid --softphone-url '{value}': {exc}", hint) from None
    if web.scheme.lower() not in ("http", "https") or not web.hostname:
        raise UsageError(f"invalid --softphone-url '{value}': not an http(s):// URL", hint)


def device_name(flag: str, value: str) -> None:
    if not value.strip():
        raise UsageError(f"{flag} is empty", f"give part of the device name, e.g. {flag} Jabra")


def process_names(flag: str, value: Sequence[str]) -> None:
    if any(not v.strip() for v in value):
        raise UsageError(
            "an empty --softphone-process was given", "e.g. --softphone-process zoiper"
        )


MAX_IDLE = 900.0  # s: one idle period; NATs that keep a mapping longer are not the problem


def idle_periods(flag: str, value: Sequence[str]) -> None:
    """--idle S[,S...]: each a number of seconds from 1 to MAX_IDLE (the sum is checked
    against --timeout with the other settings)."""
    for item in value:
        for part in item.split(","):
            try:
                seconds = float(part)
            except ValueError:
                seconds = float("nan")
            if not 1 <= seconds <= MAX_IDLE:
                raise UsageError(
                    f"invalid {flag} period '{part.strip()}'",
                    f"give seconds from 1 to {MAX_IDLE:g}, e.g. {flag} 30,90,300",
                )


def port_ranges(flag: str, value: Sequence[str]) -> None:
    for spec in value:
        if parse_port_range(spec) is None:
            raise UsageError(
                f"invalid --softphone-port '{spec}'",
                "use a port 1-65535 or a range LOW-HIGH, e.g. 5080 or 10000-20000",
            )


def parse_port_range(spec: str) -> tuple[int, int] | None:
    """'5060' -> (5060, 5060); '10000-20000' -> (10000, 20000); anything else -> None."""
    m = re.fullmatch(r"\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*", spec)
    if not m:
        return None
    low = int(m.group(1))
    high = int(m.group(2) or low)
    return (low, high) if 1 <= low <= high <= 65535 else None


def env_var_name(default: str) -> ValueCheck:
    def check(flag: str, value: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            # The value is not echoed: it may be the password, given here by mistake.
            raise UsageError(
                f"{flag} must be the name of an environment variable (letters, digits, _)",
                f"e.g. {flag} {default}; never pass the password itself",
            )

    return check
