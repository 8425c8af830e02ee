"""The check registry: every probe sipdiag runs, listed explicitly (no import side effects).

A new probe costs one module, one line here and one test file.
"""

from __future__ import annotations

from checks import dns, fragment, host, media, nat, quality, reach, route, sip, sipalg, stun
from checks.browser import check_browser_mic
from checks.dial import check_dial
from checks.number import check_format, check_identity, check_policy
from checks.sipws import check_register_ws
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
        "number.format",
        "Agent numbers are valid E.164 numbers",
        check_format,
        needs="--number (and --region for national numbers)",
        requires=("numbers",),
        timeout=3.0,
    ),
    Check(
        "number.policy",
        "Agent numbers are permitted by the policy",
        check_policy,
        needs="--number and --policy",
        requires=("numbers", "policy"),
        timeout=3.0,
    ),
    Check(
        "number.identity",
        "The registered SIP identity covers the agent numbers",
        check_identity,
        needs="--number and --user",
        requires=("numbers", "user"),
        timeout=3.0,
    ),
    Check(
        "number.dial-test",
        "The platform lets a test call reach the number",
        check_dial,
        needs="--dial-test NUMBER with --registrar, --user and a password (opt-in)",
        requires=("dial_test", "registrar", "user"),
        after=("net.dns", "sip.register"),
        timeout=None,
        uses_sip=True,
    ),
    Check(
        "host.clock",
        "Clock agrees with the registrar",
        host.check_clock,
        needs="a registrar that sends a Date header (via sip.register)",
        after=("sip.register",),
        timeout=2.0,
    ),
    Check(
        "sip.register-ws",
        "Registrar accepts our REGISTER over WebSocket",
        check_register_ws,
        needs="--ws-url (ws:// or wss://), --user and a password, or --no-register",
        requires=("ws_url", "user"),
        timeout=None,
        uses_sip=True,
    ),
    Check(
        "audio.browser-mic",
        "The browser lets the softphone use the microphone",
        check_browser_mic,
        needs="--softphone-url (the WebRTC softphone's web address)",
        requires=("softphone_url",),
        timeout=3.0,
    ),
)
