"""Settings from a TOML profile and flags (flags win), and where the password comes from."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.inputs import PROFILE_LIMIT, read_input
from diag.settings import (
    DEFAULT_PASSWORD_ENV,
    PROFILE_KEYS,
    SETTINGS,
    TRANSPORTS,
    WS_TRANSPORTS,
    Secret,
    Setting,
    Settings,
)
from diag.settings import (
    DEFAULT_TURN_PASSWORD_ENV as DEFAULT_TURN_PASSWORD_ENV,  # diag/bundle
)
from diag.validation import parse_port_range as parse_port_range  # checks/host/softphone

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYRING_SERVICE = "sipdiag"
# Keys that would put a secret into a file on disk; refused outright.
SECRET_KEYS = ("password", "passwd", "pass", "secret", "pin")
_PROFILE_SETTINGS = {s.name: s for s in SETTINGS if s.profile}


def load_profile(path: Path) -> dict[str, Any]:
    """Read and validate a profile; every problem is a one-line UsageError (exit 64)."""
    if str(path) in ("", "."):
        raise UsageError("--profile is empty", "give the path of a TOML profile")
    if path.is_dir():
        raise UsageError(f"profile {path} is a directory", "give the path of a TOML file")
    if not path.exists():
        raise UsageError(f"profile {path} not found", "check the --profile path")
    raw = read_input(path, "profile", PROFILE_LIMIT, "give the path of a TOML profile")
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # Windows editors write a BOM
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"profile {path} is not valid TOML: {exc}", "fix the syntax; see README 'Profile'"
        ) from None
    except RecursionError:
        raise UsageError(f"profile {path} is nested too deeply", "a profile is flat") from None
    try:
        keys = _all_keys(data)
    except RecursionError:
        raise UsageError(f"profile {path} is nested too deeply", "a profile is flat") from None
    for key in keys:
        if key.lower() in SECRET_KEYS or key.lower().endswith(("_password", "_secret")):
            raise UsageError(
                f"profile {path} contains a password (key '{key}'); "
                "passwords are never read from files",
                f"remove it and export {DEFAULT_PASSWORD_ENV}, or store it in the OS keyring",
            )
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    if unknown:
        raise UsageError(
            f"profile {path} has unknown key(s): {', '.join(unknown)}",
            f"known keys are {', '.join(PROFILE_KEYS)}",
        )
    if isinstance(data.get("policy"), str) and not os.path.isabs(data["policy"]):
        data["policy"] = str(path.parent / data["policy"])
    return _normalise(data, source=f"profile {path}")


def _all_keys(data: Any) -> list[str]:
    """Every key at any depth: a password in a nested table is refused like a top-level one."""
    if isinstance(data, dict):
        return [k for key, value in data.items() for k in (key, *_all_keys(value))]
    if isinstance(data, list):
        return [k for item in data for k in _all_keys(item)]
    return []


def _normalise(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {
        key: _profile_value(_PROFILE_SETTINGS[key], value, source) for key, value in data.items()
    }


def _profile_value(s: Setting, value: Any, source: str) -> Any:
    """A profile value of the setting's kind, else a one-line UsageError naming the key."""
    key = s.name
    if s.kind == "list":
        if isinstance(value, str):
            value = [value]
        if s.int_items and isinstance(value, list):  # ports: 5080 or "10000-10100"; idle: 30
            kinds = (int, float) if s.name == "idle" else int  # seconds may be 2.5; ports not
            value = [
                str(v) if isinstance(v, kinds) and not isinstance(v, bool) else v for v in value
            ]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            example = f"e.g. [{s.example}]" if s.example else 'e.g. ["udp"]'
            raise UsageError(f"{source}: '{key}' must be a list of strings", example)
        return tuple(value)
    if s.kind == "switch":
        if not isinstance(value, bool):
            raise UsageError(f"{source}: '{key}' must be true or false", "e.g. true")
        return value
    if s.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{source}: '{key}' must be a number of seconds", f"e.g. {s.example}")
        return float(value)
    if not isinstance(value, str):
        raise UsageError(f"{source}: '{key}' must be a string", f"quote the value of {key}")
    return value


def build_settings(
    profile: Path | None, flags: Mapping[str, Any], refused: Mapping[str, str] | None = None
) -> Settings:
    """Profile values overridden by every flag the user actually gave (None / empty = not given).
    `refused`: settings the command does not allow (name -> why), refused before validation,
    so their checks (--idle against --timeout, say) cannot hide the real reason."""
    merged: dict[str, Any] = load_profile(profile) if profile is not None else {}
    for key, value in flags.items():
        if value is None or value == () or value == []:
            continue
        merged[key] = tuple(value) if isinstance(value, list) else value
    settings = Settings(**merged)
    for name, why in (refused or {}).items():
        if getattr(settings, name) not in (None, False, (), 0):
            raise UsageError(why, "remove it from the profile or the command line")
    validate(settings)
    return settings


def given_flags(options: Mapping[str, Any]) -> dict[str, Any]:
    """The `check` command's options, by setting name (None: not given)."""
    return {s.name: s.given(options[s.parameter]) for s in SETTINGS}


def validate(s: Settings) -> None:
    """Every value by the table's rules, then the settings that are checked together."""
    for setting in SETTINGS:
        if setting.not_empty:
            _check_not_empty(setting, getattr(s, setting.name))
    _validate_registrar(s)
    _validate_web(s)
    for setting in SETTINGS:
        value = getattr(s, setting.name)
        if setting.check is not None and value is not None:
            setting.check(setting.flag, value)
    _validate_idle(s)


def _validate_idle(s: Settings) -> None:
    """net.idle's periods run one after another: together they must fit the run's budget."""
    total = sum(s.idle_periods)
    if total and total > s.timeout:
        raise UsageError(
            f"--idle periods add up to {total:g} s, more than --timeout {s.timeout:g}",
            f"raise --timeout to at least {total + 10:g} or shorten the periods",
        )


def _check_not_empty(setting: Setting, value: Any) -> None:
    if setting.kind == "list":
        if any(not v.strip() for v in value):
            raise UsageError(
                f"an empty value was given for {setting.name}", "remove the empty value"
            )
    elif value == "":
        flag = setting.flag
        raise UsageError(f"{flag} is empty", f"give {flag} a value or leave it out")


def _validate_registrar(s: Settings) -> None:
    """The registrar (parsed once, by Settings) and the transports it is reached over."""
    rest = re.sub(r"^sips?:", "", s.registrar or "", flags=re.IGNORECASE)
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        # sip:user:password@host (RFC 3261 19.1.1 says it SHOULD NOT be used): it would be
        # copied into the report and the timeline as the registrar's name.
        raise UsageError(
            "--registrar holds a password (user:password@); it would end up in the report",
            f"give the registrar without it and the password in {s.password_env} or the keyring",
        )
    if s.registrar_problem is not None:
        raise UsageError(
            f"invalid registrar '{s.registrar}': {s.registrar_problem}",
            "use sip:host[:port], sips:host[:port], host[:port] or [IPv6]:port",
        )
    if s.target is not None and s.target.scheme == "sips":
        if set(s.effective_transports) - {"tls"}:
            raise UsageError(
                f"a sips: registrar needs TLS, not {', '.join(s.effective_transports)}",
                "use --transport tls or a sip: URI",
            )
    for t in s.effective_transports:
        if t not in TRANSPORTS:
            raise UsageError(f"unknown transport '{t}'", f"use one of {', '.join(TRANSPORTS)}")


def _validate_web(s: Settings) -> None:
    """--ws-url with --transport ws|wss (the WebRTC softphone's SIP over WebSocket)."""
    from urllib.parse import urlsplit

    asked = [t for t in dict.fromkeys(s.transports) if t in WS_TRANSPORTS]
    if s.ws_url is not None:
        try:
            url = urlsplit(s.ws_url)
            port = url.port
        except ValueError as exc:
            raise UsageError(
                f"invalid --ws-url '{s.ws_url}': {exc}", "use wss://host[:port]/path"
            ) from None
        if url.scheme.lower() not in WS_TRANSPORTS or not url.hostname:
            raise UsageError(
                f"invalid --ws-url '{s.ws_url}': not a ws:// or wss:// URL with a host",
                "use wss://host[:port]/path, e.g. wss://sip.example.com:7443/ws",
            )
        if port == 0:
            raise UsageError(f"invalid --ws-url '{s.ws_url}': port 0", "use a port 1-65535")
        other = [t for t in asked if t != s.ws_transport]
        if other:
            raise UsageError(
                f"--transport {other[0]} does not match --ws-url '{s.ws_url}'",
                f"use --transport {s.ws_transport} or a {other[0]}:// URL",
            )
    elif asked:
        raise UsageError(
            f"--transport {asked[0]} needs --ws-url",
            f"give the softphone's WebSocket URL, e.g. --ws-url {asked[0]}://sip.example.com/ws",
        )


def resolve_password(
    s: Settings,
    environ: Mapping[str, str],
    interactive: bool,
    prompt: Callable[[str], str] = getpass.getpass,
) -> Settings:
    """Environment variable, then the OS keyring, then a prompt on a terminal; never a flag."""
    if not s.user:
        return s
    value = environ.get(s.password_env)
    if not value:
        value = _from_keyring(s)
    if not value and interactive:
        value = prompt(f"SIP password for {s.auth_user or s.user}: ")
    return replace(s, password=Secret(value)) if value else s


def _from_keyring(s: Settings) -> str | None:
    try:
        import keyring  # optional: `pip install sipdiag[keyring]`
    except ImportError:
        return None
    account = s.auth_user or s.user or ""
    try:
        found = keyring.get_password(KEYRING_SERVICE, account)
    except Exception:  # noqa: BLE001 - a broken keyring backend only means "no password there"
        return None
    return found if isinstance(found, str) else None
