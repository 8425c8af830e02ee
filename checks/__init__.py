"""The check registry: every probe sipdiag runs, listed explicitly (no import side effects).

A check's code is found from its ID: `net.sip-options` lives in checks/net/sip_options.py (family
package, module named after the check). A new probe costs one module, one line here and one test
file. checks/wire/ is the protocol layer the probes share.

The package itself imports nothing: the registry is built on first use (module `__getattr__`), so
a process that needs one module (the SIP worker runs `python -m checks.sip.worker`) does not import
every probe and the libraries they load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checks.audio.server import audio_fingerprint
    from checks.host.os import describe_host, describe_host_minimal
    from checks.number.format import e164
    from checks.sip.held import binding_replaced, binding_wanted, held_binding_for
    from diag.context import Check

    REGISTRY: tuple[Check, ...]

# What diag/ may use of checks/: the registry, the report's description of this machine, the
# agent numbers' E.164 form, and what `sipdiag watch` keeps between samples (its own binding,
# the audio devices' fingerprint).
__all__ = ["REGISTRY", "describe_host", "describe_host_minimal", "e164"]
__all__ += ["audio_fingerprint", "binding_replaced", "binding_wanted", "held_binding_for"]
_FROM_MODULE = {
    "audio_fingerprint": "checks.audio.server",
    "binding_replaced": "checks.sip.held",
    "binding_wanted": "checks.sip.held",
    "held_binding_for": "checks.sip.held",
    "describe_host": "checks.host.os",
    "describe_host_minimal": "checks.host.os",
    "e164": "checks.number.format",
}


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":
        value: Any = _registry()
    elif name in _FROM_MODULE:
        value = getattr(importlib.import_module(_FROM_MODULE[name]), name)
    else:
        raise AttributeError(f"module 'checks' has no attribute {name!r}")
    globals()[name] = value  # built once, then an ordinary attribute
    return value


def _registry() -> tuple[Check, ...]:
    from checks.audio.backend import check_backend
    from checks.audio.browser_mic import check_browser_mic
    from checks.audio.devices import check_devices
    from checks.audio.input import check_input
    from checks.audio.output import check_output
    from checks.audio.permission import check_permission
    from checks.host.clock import check_clock
    from checks.host.interfaces import check_interfaces
    from checks.host.os import check_os
    from checks.host.proxy import check_proxy
    from checks.host.softphone import check_softphone
    from checks.host.vpn import check_vpn
    from checks.net.dns import check_dns
    from checks.net.idle import check_idle
    from checks.net.media import check_media
    from checks.net.nat import check_nat
    from checks.net.quality import check_quality
    from checks.net.route import check_route
    from checks.net.sip_alg import check_sip_alg
    from checks.net.sip_options import check_options
    from checks.net.stun import check_stun
    from checks.net.udp_fragmentation import check_udp_fragmentation
    from checks.number.dial_test import check_dial
    from checks.number.format import check_format
    from checks.number.identity import check_identity
    from checks.number.policy import check_policy
    from checks.sip.bindings import check_bindings
    from checks.sip.inbound import check_inbound
    from checks.sip.register import check_register
    from checks.sip.register_ws import check_register_ws
    from diag.context import Check
    from diag.settings import (
        DIAL_TEST,
        IDLE,
        NUMBERS,
        POLICY,
        REGISTRAR,
        SOFTPHONE_URL,
        STUN,
        USER,
        WS_URL,
    )

    return (
        Check("host.os", "Operating system is identified", check_os, timeout=2.0),
        Check("host.interfaces", "A network interface is up", check_interfaces, timeout=3.0),
        Check("host.vpn", "No VPN interface is active", check_vpn, timeout=3.0),
        Check("host.proxy", "Proxy settings are known", check_proxy, timeout=2.0),
        Check(
            "net.dns",
            "Registrar name resolves",
            check_dns,
            needs="--registrar (and --dns-server to use a specific DNS server)",
            requires=(REGISTRAR,),
            timeout=None,
        ),
        Check(
            "net.route",
            "The route to the registrar is known",
            check_route,
            needs="--registrar",
            requires=(REGISTRAR,),
            after=("net.dns",),
            timeout=3.0,
        ),
        Check(
            "net.sip-options",
            "Registrar answers OPTIONS on every configured transport",
            check_options,
            needs="--registrar (and --ca for a private CA)",
            requires=(REGISTRAR,),
            after=("net.dns",),
            timeout=None,
        ),
        Check(
            "net.udp-fragmentation",
            "Large SIP messages over UDP get through",
            check_udp_fragmentation,
            needs="--registrar (UDP)",
            requires=(REGISTRAR,),
            after=("net.dns",),
        ),
        Check(
            "net.stun",
            "STUN servers answer",
            check_stun,
            needs="--stun",
            requires=(STUN,),
        ),
        Check(
            "net.nat",
            "NAT lets calls in",
            check_nat,
            needs="--stun (a server with two addresses, RFC 5780)",
            requires=(STUN,),
            after=("net.stun",),
        ),
        Check(
            "net.media",
            "The media path is open",
            check_media,
            needs="--turn with --turn-user and a password env var, and/or --media",
            timeout=5.0,
        ),
        Check(
            "net.quality",
            "Network quality is good enough for calls",
            check_quality,
            needs="--stun",
            requires=(STUN,),
            timeout=5.0,
        ),
        Check(
            "sip.register",
            "Registrar accepts our REGISTER",
            check_register,
            needs=(
                "--registrar, --user and a password (env var, keyring or prompt), or --no-register"
            ),
            requires=(REGISTRAR, USER),
            after=("net.dns",),
            timeout=None,
            uses_sip=True,
        ),
        Check(
            "sip.bindings",
            "The platform holds a reachable registration for this agent",
            check_bindings,
            needs="--registrar, --user and a password (reads sip.register's REGISTER query)",
            requires=(REGISTRAR, USER),
            after=("sip.register", "host.softphone"),
            timeout=2.0,
        ),
        Check(
            "sip.inbound",
            "A request from the platform reaches the softphone",
            check_inbound,
            needs="--registrar, --user and a password (--inbound-call: an INVITE, opt-in)",
            requires=(REGISTRAR, USER),
            # Alone on the account: a binding of another check's would also get the request.
            after=("sip.register", "sip.bindings", "number.dial-test", "sip.register-ws"),
            timeout=9.0,
            uses_sip=True,
        ),
        Check(
            "net.idle",
            "Calls still reach us after the softphone has been quiet",
            check_idle,
            needs="--idle S[,S...] with --registrar, --user and a password (opt-in; --stun "
            "also measures the UDP mapping's lifetime)",
            requires=(IDLE, REGISTRAR, USER),
            after=("sip.register", "sip.inbound", "number.dial-test", "sip.register-ws"),
            timeout=None,
            uses_sip=True,
        ),
        Check(
            "net.sip-alg",
            "No SIP ALG rewrites our signalling",
            check_sip_alg,
            needs="--registrar (reads sip.register and net.stun when they ran)",
            requires=(REGISTRAR,),
            after=("net.dns", "sip.register", "net.stun"),
        ),
        Check(
            "number.format",
            "Agent numbers are valid E.164 numbers",
            check_format,
            needs="--number (and --region for national numbers)",
            requires=(NUMBERS,),
            timeout=3.0,
        ),
        Check(
            "number.policy",
            "Agent numbers are permitted by the policy",
            check_policy,
            needs="--number and --policy",
            requires=(NUMBERS, POLICY),
            timeout=3.0,
        ),
        Check(
            "number.identity",
            "The registered SIP identity covers the agent numbers",
            check_identity,
            needs="--number and --user",
            requires=(NUMBERS, USER),
            timeout=3.0,
        ),
        Check(
            "number.dial-test",
            "The platform lets a test call reach the number",
            check_dial,
            needs="--dial-test NUMBER with --registrar, --user and a password (opt-in)",
            requires=(DIAL_TEST, REGISTRAR, USER),
            after=("net.dns", "sip.register"),
            timeout=None,
            uses_sip=True,
        ),
        Check(
            "host.clock",
            "Clock agrees with the registrar",
            check_clock,
            needs="a registrar that sends a Date header (via sip.register)",
            after=("sip.register",),
            timeout=2.0,
        ),
        Check(
            "sip.register-ws",
            "Registrar accepts our REGISTER over WebSocket",
            check_register_ws,
            needs="--ws-url (ws:// or wss://), --user and a password, or --no-register",
            requires=(WS_URL, USER),
            timeout=None,
            uses_sip=True,
        ),
        Check(
            "audio.browser-mic",
            "The browser lets the softphone use the microphone",
            check_browser_mic,
            needs="--softphone-url (the WebRTC softphone's web address)",
            requires=(SOFTPHONE_URL,),
            timeout=3.0,
        ),
        # PortAudio is not thread-safe: the audio checks run one after another (after=...).
        Check("audio.backend", "PortAudio and an audio host API are available", check_backend),
        Check(
            "audio.devices",
            "A microphone and a speaker are present",
            check_devices,
            needs="nothing (--input-device/--output-device name the headset)",
            after=("audio.backend",),
            timeout=3.0,
        ),
        Check(
            "audio.input",
            "The microphone records sound",
            check_input,
            needs="an input device (--capture-seconds sets the window)",
            after=("audio.backend", "audio.devices"),
            timeout=None,  # the capture window, bounded by the run's budget inside the check
        ),
        Check(
            "audio.output",
            "The speaker or headset plays",
            check_output,
            needs="an output device (--play-tone to hear it)",
            after=("audio.backend", "audio.input"),
            timeout=None,  # bounded inside the check: silence ~0.1 s; --play-tone up to ~4 s
        ),
        Check(
            "audio.permission",
            "The OS lets the softphone use the microphone",
            check_permission,
            needs="macOS or Windows (--softphone-process names the app)",
            timeout=3.0,
        ),
        Check(
            "host.softphone",
            "The softphone is running",
            check_softphone,
            needs="--softphone-process (and --softphone-port for ports beyond 5060/5061)",
            timeout=5.0,
        ),
    )
