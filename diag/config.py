"""Settings from a TOML profile and flags (flags win), and where the password comes from."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from diag.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TRANSPORTS = ("udp", "tcp", "tls")
FORMATS = ("text", "json", "md", "html")
FAIL_ON = ("warn", "fail")
DEFAULT_PASSWORD_ENV = "SIPDIAG_PASSWORD"
DEFAULT_TIMEOUT = 10.0
KEYRING_SERVICE = "sipdiag"
# Keys that would put a secret into a file on disk; refused outright.
SECRET_KEYS = ("password", "passwd", "pass", "secret", "pin")


class Secret:
    """A password that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    registrar: str | None = None
    domain: str | None = None
    user: str | None = None
    auth_user: str | None = None
    password_env: str = DEFAULT_PASSWORD_ENV
    transports: tuple[str, ...] = ()
    agent_id: str | None = None
    numbers: tuple[str, ...] = ()
    policy: str | None = None
    stun: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    format: str = "text"
    out: str | None = None
    fail_on: str = "fail"
    debug: bool = False
    password: Secret | None = field(default=None, repr=False)

    @property
    def effective_transports(self) -> tuple[str, ...]:
        """--transport, else the registrar URI's ;transport= parameter, else UDP."""
        if self.transports:
            return self.transports
        found = re.search(r";transport=(\w+)", self.registrar or "", re.IGNORECASE)
        return (found.group(1).lower(),) if found else ("udp",)

    @property
    def sip_uri(self) -> str | None:
        host = self.domain or _host_of(self.registrar)
        if not self.user or not host:
            return None
        return f"sip:{self.user}@{host}"


def _host_of(registrar: str | None) -> str | None:
    if not registrar:
        return None
    rest = registrar.split(":", 1)[1] if registrar.startswith(("sip:", "sips:")) else registrar
    rest = rest.split(";", 1)[0].split("@")[-1]
    if rest.startswith("["):
        return rest.split("]", 1)[0] + "]"
    return rest.split(":", 1)[0] or None


# Profile keys: everything a flag can set except debug and the password itself.
PROFILE_KEYS = tuple(f.name for f in fields(Settings) if f.name not in ("debug", "password"))
_LIST_KEYS = ("transports", "numbers", "stun", "only", "skip")


def load_profile(path: Path) -> dict[str, Any]:
    """Read and validate a profile; every problem is a one-line UsageError (exit 64)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"profile {path} not found", "check the --profile path") from None
    except OSError as exc:
        raise UsageError(
            f"cannot read profile {path}: {exc.strerror}", "check its permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"profile {path} is not valid TOML: {exc}", "fix the syntax; see README 'Profile'"
        ) from None
    for key in data:
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


def _normalise(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _LIST_KEYS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{source}: '{key}' must be a list of strings", 'e.g. ["udp"]')
            out[key] = tuple(value)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{source}: 'timeout' must be a number of seconds", "e.g. 10")
            out[key] = float(value)
        else:
            if not isinstance(value, str):
                raise UsageError(f"{source}: '{key}' must be a string", f"quote the value of {key}")
            out[key] = value
    return out


def build_settings(profile: Path | None, flags: Mapping[str, Any]) -> Settings:
    """Profile values overridden by every flag the user actually gave (None / empty = not given)."""
    merged: dict[str, Any] = load_profile(profile) if profile is not None else {}
    for key, value in flags.items():
        if value is None or value == () or value == []:
            continue
        merged[key] = tuple(value) if isinstance(value, list) else value
    settings = Settings(**merged)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    for t in s.effective_transports:
        if t not in TRANSPORTS:
            raise UsageError(f"unknown transport '{t}'", f"use one of {', '.join(TRANSPORTS)}")
    if s.format not in FORMATS:
        raise UsageError(f"unknown format '{s.format}'", f"use one of {', '.join(FORMATS)}")
    if s.fail_on not in FAIL_ON:
        raise UsageError(f"unknown --fail-on value '{s.fail_on}'", "use warn or fail")
    if not s.timeout > 0:
        raise UsageError(f"timeout must be positive, got {s.timeout:g}", "e.g. --timeout 10")
    if s.policy and not Path(s.policy).is_file():
        raise UsageError(f"policy file {s.policy} not found", "check the --policy path")
    if not s.password_env.replace("_", "").isalnum():
        raise UsageError(
            f"--password-env must name an environment variable, got '{s.password_env}'",
            f"e.g. --password-env {DEFAULT_PASSWORD_ENV}; never pass the password itself",
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
