"""Every setting of `sipdiag check`, declared once: the `Settings` fields are the table.

Each field carries its `Setting`: help text, flag spelling, whether a profile may set it, how its
value is checked and what a skipped check calls it. The `check` command's options, the profile's
keys and types, validation, skip reasons and the README synopsis all derive from this table.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from diag import validation as v
from diag.target import Registrar, parse_registrar

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

Kind = Literal["text", "number", "switch", "list"]


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
class Setting:
    """One row of the table; `name`, `kind` and `default` come from the Settings field."""

    help: str
    name: str = ""  # the Settings field, and the profile key when `profile`
    kind: Kind = "text"  # from the field's type: how a profile value and a flag are read
    default: Any = None
    option: str = ""  # the `check` parameter, when it differs from `name` (--transport)
    short: str = ""  # e.g. -q
    metavar: str | None = None  # in --help; None: typer's (TEXT, FLOAT)
    placeholder: str = ""  # in the README synopsis; "" = metavar
    profile: bool = True  # False: flag only, a profile may not set it
    label: str = ""  # a skipped check's reason: "no SIP user configured"
    not_empty: bool = False  # "" (or an empty list entry) is a usage error
    check: v.ValueCheck | None = None  # the value, once given
    example: str = ""  # a profile number's hint, e.g. "10"
    once: bool = False  # read as a list so that a second --dial-test is refused, not dropped
    int_items: bool = False  # a profile may write the list's items as numbers (ports)

    @property
    def parameter(self) -> str:
        return self.option or self.name

    @property
    def flag(self) -> str:
        return "--" + self.parameter.replace("_", "-")

    @property
    def repeatable(self) -> bool:
        return self.kind == "list"

    def given(self, value: Any) -> Any:
        """The flag's parsed value as a setting: None when not given."""
        if self.once:
            return v.one_dial_test(value)
        if self.kind == "switch":
            return value or None
        return value


def setting(default: Any, help: str, **row: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(help=help, **row)})


@dataclass(frozen=True)
class Settings:
    registrar: str | None = setting(
        None, "Registrar URI or host[:port].", placeholder="URI", label="registrar", not_empty=True
    )
    domain: str | None = setting(
        None, "SIP domain (default: registrar host).", placeholder="D", not_empty=True
    )
    user: str | None = setting(None, "SIP user.", placeholder="U", label="SIP user", not_empty=True)
    auth_user: str | None = setting(
        None, "Digest auth user (default: --user).", placeholder="U", not_empty=True
    )
    password_env: str = setting(
        DEFAULT_PASSWORD_ENV,
        "Environment variable holding the password [default: SIPDIAG_PASSWORD].",
        placeholder="VAR",
        check=v.env_var_name(DEFAULT_PASSWORD_ENV),
    )
    transports: tuple[str, ...] = setting(
        (),
        "udp, tcp, tls (native SIP) or ws/wss (with --ws-url); repeatable [default: udp].",
        option="transport",
        metavar="udp|tcp|tls|ws|wss",
        not_empty=True,
    )  # their names and --ws-url are checked together: config.validate()
    agent_id: str | None = setting(
        None,
        "The agent's id in the platform.",
        placeholder="ID",
        label="agent id",
        not_empty=True,
    )
    numbers: tuple[str, ...] = setting(
        (),
        "Agent number (E.164); repeatable.",
        option="number",
        metavar="NUMBER",
        placeholder="N",
        label="number",
        not_empty=True,
    )
    policy: str | None = setting(
        None,
        "Permitted-numbers policy file.",
        placeholder="FILE",
        label="number policy",
        not_empty=True,
        check=v.policy_file,
    )
    stun: tuple[str, ...] = setting(
        (),
        "STUN server HOST[:PORT]; repeatable.",
        metavar="HOST[:PORT]",
        label="STUN server",
        not_empty=True,
        check=v.servers,
    )
    only: tuple[str, ...] = setting((), "Run only this check id or family.", metavar="ID")
    skip: tuple[str, ...] = setting((), "Skip this check id or family.", metavar="ID")
    timeout: float = setting(
        DEFAULT_TIMEOUT,
        "Whole-run budget in seconds [default: 10].",
        placeholder="S",
        check=v.seconds(MAX_TIMEOUT, "timeout", "--timeout 10"),
    )
    format: str = setting(
        "text",
        "text, json, md or html [default: text].",
        placeholder="|".join(FORMATS),
        check=v.choice(FORMATS, "format"),
    )
    out: str | None = setting(
        None,
        "Also write the report here (format by extension).",
        placeholder="PATH",
        not_empty=True,
        check=v.not_stdout,
    )
    fail_on: str = setting(
        "fail",
        "warn or fail [default: fail].",
        placeholder="|".join(FAIL_ON),
        check=v.choice(FAIL_ON, "--fail-on value", "use warn or fail"),
    )
    dns_server: str | None = setting(
        None,
        "Resolve via this DNS server IP[:PORT], not the system's.",
        placeholder="IP[:PORT]",
        not_empty=True,
        check=v.dns_server,
    )
    ca: str | None = setting(
        None,
        "PEM CA bundle that verifies the registrar's TLS cert.",
        placeholder="FILE",
        not_empty=True,
        check=v.ca_file,
    )
    no_register: bool = setting(
        False, "Only OPTIONS and a challenge-only probe; no REGISTER."
    )  # OPTIONS + a challenge-only probe; never a real REGISTER
    # sip.register may register even when the account has other bindings, which a one-binding
    # registrar then replaces (sip.binding_replaced): asked for on each run, never a default.
    register_binding: bool = setting(
        False,
        "sip.register also registers a binding of its own when the account already has "
        "one. WARNING: a registrar that keeps one registration per account then replaces the "
        "softphone's, which stays off the platform until it re-registers (reported as "
        "sip.binding_replaced). Not accepted in a profile.",
        profile=False,
    )
    # One INVITE to the agent's own address: the real softphone may ring for a moment and the
    # platform may log one declined call, so it is asked for on each run, never a default.
    inbound_call: bool = setting(
        False,
        "sip.inbound sends ONE INVITE (not OPTIONS) to the agent's own address through the "
        "platform. WARNING: the agent's softphone may ring for a moment and the platform may log "
        "one declined call (Subject and X-Sipdiag-Run carry the run id; `sipdiag match` labels "
        "it). Not accepted in a profile.",
        profile=False,
    )
    idle: tuple[str, ...] = setting(
        (),
        "net.idle: stay silent this long, then test that a request from the platform still "
        "arrives; S[,S...] seconds, each at most 900, the sum within --timeout (opt-in).",
        metavar="S[,S...]",
        not_empty=True,
        check=v.idle_periods,
        int_items=True,  # a profile may write idle = [30, 90]
    )
    probe_all_transports: bool = setting(
        False,
        "net.sip-options also probes UDP/TCP/TLS when neither configured nor in DNS "
        "(informational).",
    )
    turn: tuple[str, ...] = setting(
        (),
        "TURN server HOST[:PORT] for the media path; repeatable.",
        metavar="HOST[:PORT]",
        not_empty=True,
        check=v.servers,
    )
    turn_user: str | None = setting(None, "TURN long-term credential user.", placeholder="U")
    turn_password_env: str = setting(
        DEFAULT_TURN_PASSWORD_ENV,
        "Environment variable holding the TURN password [default: SIPDIAG_TURN_PASSWORD].",
        placeholder="VAR",
        check=v.env_var_name(DEFAULT_TURN_PASSWORD_ENV),
    )
    media: tuple[str, ...] = setting(
        (),
        "Platform media (RTP) endpoint HOST:PORT[-PORT]; repeatable.",
        metavar="HOST:PORT[-PORT]",
        not_empty=True,
        check=v.media_endpoints,
    )
    region: str | None = setting(
        None,
        "Default region for national numbers, e.g. GB.",
        metavar="CC",
        not_empty=True,
        check=v.region,
    )  # ISO 3166, for numbers written without + and country code
    # A test call is never a profile default: --dial-test must be asked for on each run.
    dial_test: str | None = setting(
        None,
        "Place ONE test call to NUMBER through the registered account (opt-in).",
        metavar="NUMBER",
        profile=False,
        label="test-call number",
        not_empty=True,
        check=v.dial_target,
        once=True,
    )
    dial_max_duration: float = setting(
        DEFAULT_DIAL_MAX_DURATION,
        "Longest the test call may last [default: 5].",
        metavar="SECONDS",
        placeholder="S",
        check=v.seconds(
            MAX_DIAL_DURATION,
            "--dial-max-duration",
            f"--dial-max-duration {DEFAULT_DIAL_MAX_DURATION:g}",
        ),
    )
    quiet: bool = setting(
        False, "No progress or notes on stderr; errors still.", short="-q"
    )  # no progress and no "report saved" notes on stderr
    ws_url: str | None = setting(
        None,
        "SIP over WebSocket URL of a WebRTC softphone, wss://host[:port]/path.",
        placeholder="ws[s]://HOST[:PORT]/PATH",
        label="WebSocket URL",
        not_empty=True,
    )  # checked with --transport ws|wss: config.validate()
    softphone_url: str | None = setting(
        None,
        "The WebRTC softphone's web address (browser microphone permission).",
        placeholder="https://HOST",
        label="softphone URL",
        not_empty=True,
        check=v.softphone_url,
    )
    input_device: str | None = setting(
        None,
        "Microphone/headset the softphone uses (substring).",
        metavar="NAME",
        check=v.device_name,
    )
    output_device: str | None = setting(
        None,
        "Speaker/headset the softphone uses (substring).",
        metavar="NAME",
        check=v.device_name,
    )
    capture_seconds: float = setting(
        DEFAULT_CAPTURE_SECONDS,
        "Microphone capture window in seconds [default: 1].",
        metavar="S",
        example="1.0",
        check=v.seconds(MAX_CAPTURE_SECONDS, "--capture-seconds", "--capture-seconds 1", ""),
    )
    play_tone: bool = setting(False, "Play a short quiet tone on the output device.")
    softphone_processes: tuple[str, ...] = setting(
        (),
        "Softphone process name (e.g. zoiper); repeatable.",
        option="softphone_process",
        metavar="NAME",
        check=v.process_names,
    )
    softphone_ports: tuple[str, ...] = setting(
        (),
        "Local SIP/RTP port(s) the softphone needs, besides 5060/5061; repeatable.",
        option="softphone_port",
        metavar="PORT[-PORT]",
        check=v.port_ranges,
        int_items=True,
    )  # added to 5060 and 5061; a profile may give them as numbers
    debug: bool = setting(False, "Show tracebacks of broken probes.", profile=False)
    # Not settings: the password (never a flag or profile value) and the parsed registrar.
    password: Secret | None = field(default=None, repr=False)
    target: Registrar | None = field(init=False, repr=False, compare=False, default=None)
    # Why the registrar did not parse; validate() reports it.
    registrar_problem: str | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        """The registrar is parsed here, once."""
        if self.registrar:
            try:
                object.__setattr__(self, "target", parse_registrar(self.registrar))
            except ValueError as exc:
                object.__setattr__(self, "registrar_problem", str(exc))

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
    def idle_periods(self) -> tuple[float, ...]:
        """--idle's periods in seconds, in the order given (validate() checked them)."""
        return tuple(float(p) for item in self.idle for p in item.split(",") if p.strip())

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


def _table() -> tuple[Setting, ...]:
    types = typing.get_type_hints(Settings)
    rows = []
    for f in fields(Settings):
        if "setting" in f.metadata:
            row: Setting = f.metadata["setting"]
            kind = _kind(types[f.name])
            example = row.example or (f"{f.default:g}" if kind == "number" else "")
            rows.append(replace(row, name=f.name, kind=kind, default=f.default, example=example))
    return tuple(rows)


def _kind(annotation: Any) -> Kind:
    """str or str | None: text; float: number; bool: switch; tuple[str, ...]: list."""
    if annotation is bool:
        return "switch"
    if annotation is float:
        return "number"
    return "list" if typing.get_origin(annotation) is tuple else "text"


SETTINGS: tuple[Setting, ...] = _table()
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}
PROFILE_KEYS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.profile)


@dataclass(frozen=True)
class Requirement:
    """A setting a check needs (Check.requires): read typed, named from the table."""

    setting: Setting
    is_set: Callable[[Settings], bool]


def _requirement(name: str, is_set: Callable[[Settings], object]) -> Requirement:
    return Requirement(SETTING[name], lambda s: bool(is_set(s)))


REGISTRAR = _requirement("registrar", lambda s: s.registrar)
USER = _requirement("user", lambda s: s.user)
NUMBERS = _requirement("numbers", lambda s: s.numbers)
POLICY = _requirement("policy", lambda s: s.policy)
STUN = _requirement("stun", lambda s: s.stun)
DIAL_TEST = _requirement("dial_test", lambda s: s.dial_test)
IDLE = _requirement("idle", lambda s: s.idle)
WS_URL = _requirement("ws_url", lambda s: s.ws_url)
SOFTPHONE_URL = _requirement("softphone_url", lambda s: s.softphone_url)
REQUIREMENTS = (REGISTRAR, USER, NUMBERS, POLICY, STUN, DIAL_TEST, IDLE, WS_URL, SOFTPHONE_URL)

PROFILE_OPTION = "--profile FILE.toml"  # not a setting: where settings come from


def synopsis(width: int = 100) -> str:
    """`sipdiag check [--profile FILE.toml] [--registrar URI] ...`, wrapped as in the README."""
    lead = "sipdiag check "
    lines = [lead]
    for item in [
        f"[{PROFILE_OPTION}]",
        *(f"[{usage(s)}]" + "..." * s.repeatable for s in SETTINGS),
    ]:
        if len(lines[-1]) + len(item) > width and lines[-1].strip():
            lines[-1] = lines[-1].rstrip()
            lines.append(" " * len(lead))
        lines[-1] += item + " "
    return "\n".join(line.rstrip() for line in lines)


def usage(s: Setting) -> str:
    """A flag as the README writes it: `--registrar URI`, `--play-tone`."""
    if s.kind == "switch":
        return s.flag
    return f"{s.flag} {s.placeholder or s.metavar}"
