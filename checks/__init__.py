"""The check registry: every probe sipdiag runs, listed explicitly (no import side effects).

A new probe costs one module, one line here and one test file.
"""

from __future__ import annotations

from checks import (
    audio,
    audiostream,
    dns,
    fragment,
    host,
    media,
    micpermission,
    nat,
    quality,
    reach,
    route,
    sip,
    sipalg,
    softphone,
    stun,
)
from diag.model import Check

REGISTRY: tuple[Check, ...] = (
    Check("host.os", "Operating system is identified", host.check_os, timeout=2.0),
    Check("host.interfaces", "A network interface is up", host.check_interfaces, timeout=3.0),
    Check("host.vpn", "No VPN interface is active", host.check_vpn, timeout=3.0),
    Check("host.proxy", "Proxy settings are known", host.check_proxy, timeout=2.0),
    Check(
        "net.dns",
        "Registrar name resolves",
        dns.check_dns,
        needs="--registrar (and --dns-server to use a specific DNS server)",
        requires=("registrar",),
        timeout=None,
    ),
    Check(
        "net.route",
        "The route to the registrar is known",
        route.check_route,
        needs="--registrar",
        requires=("registrar",),
        after=("net.dns",),
        timeout=3.0,
    ),
    Check(
        "net.sip-options",
        "Registrar answers OPTIONS on every transport",
        reach.check_options,
        needs="--registrar (and --ca for a private CA)",
        requires=("registrar",),
        after=("net.dns",),
        timeout=None,
    ),
    Check(
        "net.udp-fragmentation",
        "Large SIP messages over UDP get through",
        fragment.check_udp_fragmentation,
        needs="--registrar (UDP)",
        requires=("registrar",),
        after=("net.dns",),
    ),
    Check(
        "net.stun",
        "STUN servers answer",
        stun.check_stun,
        needs="--stun",
        requires=("stun",),
    ),
    Check(
        "net.nat",
        "NAT lets calls in",
        nat.check_nat,
        needs="--stun (a server with two addresses, RFC 5780)",
        requires=("stun",),
        after=("net.stun",),
    ),
    Check(
        "net.media",
        "The media path is open",
        media.check_media,
        needs="--turn with --turn-user and a password env var, and/or --media",
        timeout=5.0,
    ),
    Check(
        "net.quality",
        "Network quality is good enough for calls",
        quality.check_quality,
        needs="--stun",
        requires=("stun",),
        timeout=5.0,
    ),
    Check(
        "sip.register",
        "Registrar accepts our REGISTER",
        sip.check_register,
        needs="--registrar, --user and a password (env var, keyring or prompt), or --no-register",
        requires=("registrar", "user"),
        after=("net.dns",),
        timeout=None,
        uses_sip=True,
    ),
    Check(
        "net.sip-alg",
        "No SIP ALG rewrites our signalling",
        sipalg.check_sip_alg,
        needs="--registrar (reads sip.register and net.stun when they ran)",
        requires=("registrar",),
        after=("net.dns", "sip.register", "net.stun"),
    ),
    Check(
        "host.clock",
        "Clock agrees with the registrar",
        host.check_clock,
        needs="a registrar that sends a Date header (via sip.register)",
        after=("sip.register",),
        timeout=2.0,
    ),
    # PortAudio is not thread-safe: the audio checks run one after another (after=...).
    Check("audio.backend", "PortAudio and an audio host API are available", audio.check_backend),
    Check(
        "audio.devices",
        "A microphone and a speaker are present",
        audio.check_devices,
        needs="nothing (--input-device/--output-device name the headset)",
        after=("audio.backend",),
        timeout=3.0,
    ),
    Check(
        "audio.input",
        "The microphone records sound",
        audiostream.check_input,
        needs="an input device (--capture-seconds sets the window)",
        after=("audio.backend", "audio.devices"),
        timeout=None,  # the capture window, bounded by the run's budget inside the check
    ),
    Check(
        "audio.output",
        "The speaker or headset plays",
        audiostream.check_output,
        needs="an output device (--play-tone to hear it)",
        after=("audio.backend", "audio.input"),
        timeout=None,  # bounded inside the check: silence ~0.1 s; --play-tone up to ~4 s
    ),
    Check(
        "audio.permission",
        "The OS lets the softphone use the microphone",
        micpermission.check_permission,
        needs="macOS or Windows (--softphone-process names the app)",
        timeout=3.0,
    ),
    Check(
        "host.softphone",
        "The softphone is running",
        softphone.check_softphone,
        needs="--softphone-process (and --softphone-port for ports beyond 5060/5061)",
        timeout=5.0,
    ),
)
