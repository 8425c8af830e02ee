"""Settings from a TOML profile and flags (flags win), and where the password comes from."""

from __future__ import annotations

import getpass
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.target import Registrar, is_ip, parse_registrar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TRANSPORTS = ("udp", "tcp", "tls")
WS_TRANSPORTS = ("ws", "wss")  # SIP over WebSocket (RFC 7118): sip.register-ws, with --ws-url
FORMATS = ("text", "json", "md", "html")
FAIL_ON = ("warn", "fail")
DEFAULT_PASSWORD_ENV = "SIPDIAG_PASSWORD"
DEFAULT_TURN_PASSWORD_ENV = "SIPDIAG_TURN_PASSWORD"
DEFAULT_TIMEOUT = 10.0
DEFAULT_CAPTURE_SECONDS = 1.0
MAX_CAPTURE_SECONDS = 30.0  # a level check, not a recording
MAX_TIMEOUT = 3600.0  # a diagnostic that runs longer than an hour is a hang, not a check
DEFAULT_DIAL_MAX_DURATION = 5.0  # seconds a --dial-test call may last, at most
MAX_DIAL_DURATION = 60.0
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
    dns_server: str | None = None  # resolve via this DNS server instead of the system's
    ca: str | None = None  # extra CA bundle that verifies the registrar's TLS certificate
    no_register: bool = False  # OPTIONS + a challenge-only probe; never a real REGISTER
    # net.sip-options also probes the transports neither configured nor published in DNS
    probe_all_transports: bool = False
    turn: tuple[str, ...] = ()  # TURN servers HOST[:PORT] for the media-path checks
    turn_user: str | None = None
    turn_password_env: str = DEFAULT_TURN_PASSWORD_ENV
    media: tuple[str, ...] = ()  # the platform's media (RTP) endpoints HOST:PORT[-PORT]
    quiet: bool = False  # no progress and no "report saved" notes on stderr; errors still
    ws_url: str | None = None  # ws[s]://host[:port]/path of a WebRTC softphone's SIP server
    softphone_url: str | None = None  # the WebRTC softphone's web origin (browser mic permission)
    # Audio and softphone host checks.
    input_device: str | None = None  # substring of the headset/mic the softphone uses
    output_device: str | None = None
    capture_seconds: float = DEFAULT_CAPTURE_SECONDS
    play_tone: bool = False
    softphone_processes: tuple[str, ...] = ()  # process names, e.g. "zoiper", "chrome"
    softphone_ports: tuple[str, ...] = ()  # local PORT or LOW-HIGH, added to 5060 and 5061
    debug: bool = False
    region: str | None = None  # default region (ISO 3166, e.g. GB) for national numbers
    dial_test: str | None = None  # --dial-test: the one test call of the run (flag only)
    # --register-binding (flag only): sip.register may register even when the account has
    # other bindings, which a one-binding registrar then replaces (sip.binding_replaced)
    register_binding: bool = False
    dial_max_duration: float = DEFAULT_DIAL_MAX_DURATION
    password: Secret | None = field(default=None, repr=False)

    @property
    def target(self) -> Registrar | None:
        """The parsed registrar (validated by validate(), so parsing cannot fail here)."""
        return parse_registrar(self.registrar) if self.registrar else None

    @property
    def effective_transports(self) -> tuple[str, ...]:
        """--transport (each once), else the URI's ;transport=, else TLS for sips:, else UDP."""
        if self.transports and set(self.transports) - set(WS_TRANSPORTS):
            return tuple(t for t in dict.fromkeys(self.transports) if t not in WS_TRANSPORTS)
        target = self.target
        if target and target.transport:
            return (target.transport,)
        return ("tls",) if target and target.scheme == "sips" else ("udp",)

    @property
    def ws_transport(self) -> str | None:
        """ws or wss: the --ws-url's scheme (validate() keeps --transport ws|wss in step)."""
        if not self.ws_url:
            return None
        scheme = self.ws_url.partition("://")[0].lower()
        return scheme if scheme in WS_TRANSPORTS else None

    @property
    def sip_uri(self) -> str | None:
        target = self.target
        host = self.domain or (target.host_literal if target else None)
        if not self.user or not host:
            return None
        return f"sip:{self.user}@{host}"


# Profile keys: everything a flag can set except debug and the password itself.
# A test call is never a profile default: --dial-test must be asked for on each run.
PROFILE_KEYS = tuple(
    f.name
    for f in fields(Settings)
    if f.name not in ("debug", "password", "dial_test", "register_binding")
)
_LIST_KEYS: tuple[str, ...] = ("transports", "numbers", "stun", "only", "skip", "turn", "media")
_LIST_KEYS += ("softphone_processes", "softphone_ports")


def load_profile(path: Path) -> dict[str, Any]:
    """Read and validate a profile; every problem is a one-line UsageError (exit 64)."""
    if str(path) in ("", "."):
        raise UsageError("--profile is empty", "give the path of a TOML profile")
    if path.is_dir():
        raise UsageError(f"profile {path} is a directory", "give the path of a TOML file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"profile {path} not found", "check the --profile path") from None
    except OSError as exc:
        raise UsageError(
            f"cannot read profile {path}: {exc.strerror}", "check its permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # Windows editors write a BOM
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"profile {path} is not valid TOML: {exc}", "fix the syntax; see README 'Profile'"
        ) from None
    for key in _all_keys(data):
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
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "softphone_ports" and isinstance(value, list):
            # Ports are numbers in TOML; ranges ("10000-10100") are strings.
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if key in _LIST_KEYS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{source}: '{key}' must be a list of strings", 'e.g. ["udp"]')
            out[key] = tuple(value)
        elif key == "no_register":
            if not isinstance(value, bool):
                raise UsageError(f"{source}: 'no_register' must be true or false", "e.g. true")
            out[key] = value
        elif key == "probe_all_transports":
            if not isinstance(value, bool):
                raise UsageError(f"{source}: '{key}' must be true or false", "e.g. true")
            out[key] = value
        elif key == "play_tone":
            if not isinstance(value, bool):
                raise UsageError(f"{source}: 'play_tone' must be true or false", "e.g. true")
            out[key] = value
        elif key == "capture_seconds":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(
                    f"{source}: 'capture_seconds' must be a number of seconds", "e.g. 1.0"
                )
            out[key] = float(value)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{source}: 'timeout' must be a number of seconds", "e.g. 10")
            out[key] = float(value)
        elif key == "dial_max_duration":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{source}: '{key}' must be a number of seconds", "e.g. 5")
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
    for name in (
        "registrar",
        "domain",
        "user",
        "auth_user",
        "agent_id",
        "policy",
        "out",
        "dns_server",
        "ca",
        "region",
        "dial_test",
        "ws_url",
        "softphone_url",
    ):
        if getattr(s, name) == "":
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is empty", f"give {flag} a value or leave it out")
    for name in ("numbers", "stun", "transports", "turn", "media"):
        if any(not v.strip() for v in getattr(s, name)):
            raise UsageError(f"an empty value was given for {name}", "remove the empty value")
    if s.registrar is not None:
        try:
            target = parse_registrar(s.registrar)
        except ValueError as exc:
            raise UsageError(
                f"invalid registrar '{s.registrar}': {exc}",
                "use sip:host[:port], sips:host[:port], host[:port] or [IPv6]:port",
            ) from None
        if target.scheme == "sips" and set(s.effective_transports) - {"tls"}:
            raise UsageError(
                f"a sips: registrar needs TLS, not {', '.join(s.effective_transports)}",
                "use --transport tls or a sip: URI",
            )
    for t in s.effective_transports:
        if t not in TRANSPORTS:
            raise UsageError(f"unknown transport '{t}'", f"use one of {', '.join(TRANSPORTS)}")
    _validate_web(s)
    if s.format not in FORMATS:
        raise UsageError(f"unknown format '{s.format}'", f"use one of {', '.join(FORMATS)}")
    if s.fail_on not in FAIL_ON:
        raise UsageError(f"unknown --fail-on value '{s.fail_on}'", "use warn or fail")
    if not (math.isfinite(s.timeout) and 0 < s.timeout <= MAX_TIMEOUT):
        raise UsageError(
            f"timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got {s.timeout:g}",
            "e.g. --timeout 10",
        )
    if s.out == "-":
        raise UsageError("--out - is not a file", "use --format json to print the report")
    if s.policy and not Path(s.policy).is_file():
        raise UsageError(f"policy file {s.policy} not found", "check the --policy path")
    if s.ca and not Path(s.ca).is_file():
        raise UsageError(f"CA file {s.ca} not found", "give a PEM file with the platform's CA")
    if s.dns_server:
        try:
            dns = parse_registrar(s.dns_server)
        except ValueError as exc:
            raise UsageError(
                f"invalid --dns-server '{s.dns_server}': {exc}",
                "use an address such as 192.0.2.53 or 192.0.2.53:5353",
            ) from None
        if not is_ip(dns.host):
            raise UsageError(
                f"--dns-server must be an IP address, got '{dns.host}'",
                "use an address such as 192.0.2.53 or [2001:db8::53]:53",
            )
    for server in (*s.stun, *s.turn):
        try:
            parse_registrar(server)
        except ValueError as exc:
            raise UsageError(
                f"invalid STUN/TURN server '{server}': {exc}",
                "use HOST[:PORT], e.g. stun.example.com:3478",
            ) from None
    for media in s.media:
        if not re.fullmatch(r".+:\d{1,5}(-\d{1,5})?", media):
            raise UsageError(
                f"invalid --media '{media}'",
                "use HOST:PORT or HOST:LOW-HIGH, e.g. media.example.com:10000-20000",
            )
    _validate_audio_and_softphone(s)
    _check_env_name(s.password_env, "--password-env", DEFAULT_PASSWORD_ENV)
    _check_env_name(s.turn_password_env, "--turn-password-env", DEFAULT_TURN_PASSWORD_ENV)
    _validate_numbers(s)


def _validate_numbers(s: Settings) -> None:
    """--region, --dial-test, --dial-max-duration and the policy file (read here, so a
    malformed one stops the run with exit 64 and its line, before any check runs)."""
    if s.region is not None:
        import phonenumbers

        if s.region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise UsageError(
                f"unknown --region '{s.region}'", "use an ISO 3166 code such as GB, DE or US"
            )
    if s.dial_test is not None and not re.fullmatch(
        r"sips?:\S+|\+?[0-9][0-9 ().-]*|[A-Za-z0-9._~-]+", s.dial_test
    ):
        raise UsageError(
            f"invalid --dial-test '{s.dial_test}'",
            "give one number (e.g. +442079460123), an extension, or a sip: URI",
        )
    if not (math.isfinite(s.dial_max_duration) and 0 < s.dial_max_duration <= MAX_DIAL_DURATION):
        raise UsageError(
            f"--dial-max-duration must be between 0 and {MAX_DIAL_DURATION:g} seconds, "
            f"got {s.dial_max_duration:g}",
            f"e.g. --dial-max-duration {DEFAULT_DIAL_MAX_DURATION:g}",
        )
    if s.policy and Path(s.policy).is_file():
        from diag.policy import load_policy

        load_policy(Path(s.policy))


def _validate_web(s: Settings) -> None:
    """--ws-url / --transport ws|wss / --softphone-url (the WebRTC softphone checks)."""
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
    if s.softphone_url is not None:
        try:
            web = urlsplit(s.softphone_url)
            web.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise UsageError(
                f"invalid --softphone-url '{s.softphone_url}': {exc}",
                "use the softphone's web address, e.g. https://agent.example.com",
            ) from None
        if web.scheme.lower() not in ("http", "https") or not web.hostname:
            raise UsageError(
                f"invalid --softphone-url '{s.softphone_url}': not an http(s):// URL",
                "use the softphone's web address, e.g. https://agent.example.com",
            )


def _validate_audio_and_softphone(s: Settings) -> None:
    for name in ("input_device", "output_device"):
        if getattr(s, name) is not None and not getattr(s, name).strip():
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is empty", f"give part of the device name, e.g. {flag} Jabra")
    if not (math.isfinite(s.capture_seconds) and 0 < s.capture_seconds <= MAX_CAPTURE_SECONDS):
        raise UsageError(
            f"--capture-seconds must be between 0 and {MAX_CAPTURE_SECONDS:g}, "
            f"got {s.capture_seconds:g}",
            "e.g. --capture-seconds 1",
        )
    if any(not v.strip() for v in s.softphone_processes):
        raise UsageError(
            "an empty --softphone-process was given", "e.g. --softphone-process zoiper"
        )
    for spec in s.softphone_ports:
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


def _check_env_name(value: str, flag: str, default: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        # The value is not echoed: it may be the password, given here by mistake.
        raise UsageError(
            f"{flag} must be the name of an environment variable (letters, digits, _)",
            f"e.g. {flag} {default}; never pass the password itself",
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
