"""The stable cause-ID vocabulary. Tooling keys on these IDs: never rename one, only add.

Each cause: family (the first three families are the three causes of a 403 in the platform's
own explanation), a one-line title, what it means, and the typical next action.
"""

from __future__ import annotations

from dataclasses import dataclass

from diag.model import Family


@dataclass(frozen=True)
class Cause:
    id: str
    family: Family
    title: str
    meaning: str
    action: str


_A, _N, _F, _R, _H = (
    Family.AUDIO_DEVICE,
    Family.NUMBER_PERMISSION,
    Family.NETWORK_FIREWALL,
    Family.REGISTRATION,
    Family.HOST,
)

CAUSES: dict[str, Cause] = {
    c.id: c
    for c in (
        Cause(
            "audio.backend_unavailable",
            _A,
            "Audio system unavailable",
            "The audio subsystem (PortAudio and the OS sound service) cannot be used, so the "
            "softphone has no device to offer calls on.",
            "Install or restart the OS audio service (PulseAudio/PipeWire, Windows Audio, "
            "CoreAudio) and re-run sipdiag.",
        ),
        Cause(
            "audio.no_input_device",
            _A,
            "No microphone",
            "No audio input device is present, so the softphone cannot accept calls with audio.",
            "Connect or enable a headset/microphone and select it in the softphone.",
        ),
        Cause(
            "audio.no_output_device",
            _A,
            "No speaker or headset",
            "No audio output device is present.",
            "Connect or enable a headset/speaker and select it in the softphone.",
        ),
        Cause(
            "audio.input_unavailable",
            _A,
            "Microphone cannot be opened",
            "A microphone exists but cannot be opened (in use exclusively, unplugged, or failing).",
            "Close other applications using the microphone, re-plug the headset, then re-run.",
        ),
        Cause(
            "audio.output_unavailable",
            _A,
            "Speaker or headset cannot be opened",
            "A speaker or headset exists but cannot be opened for playback (in use exclusively, "
            "unplugged, or failing), so the agent cannot hear calls ring or the caller.",
            "Close other applications using the speaker or headset, re-plug it, then re-run.",
        ),
        Cause(
            "audio.input_silent",
            _A,
            "Microphone delivers silence",
            "The microphone opens but records only silence (muted, wrong device, or hardware "
            "fault).",
            "Unmute the headset and check the OS input level; select the right input device.",
        ),
        Cause(
            "audio.permission_denied",
            _A,
            "Microphone access denied",
            "The OS privacy settings, or the browser hosting a WebRTC softphone, deny microphone "
            "access to the softphone.",
            "Allow microphone access for the softphone in the OS privacy settings, or for the "
            "softphone's site in the browser's site settings.",
        ),
        Cause(
            "host.softphone_not_running",
            _H,
            "Softphone not running",
            "The softphone application is not running, so nothing can answer offered calls.",
            "Start the softphone and log in to the agent console.",
        ),
        Cause(
            "host.vpn_active",
            _H,
            "VPN active",
            "A VPN interface is up; SIP and media may be routed through it, from a source address "
            "the platform does not allow, or with a smaller MTU.",
            "Check whether the platform must be reached outside the VPN (split tunnel) and re-run "
            "with the VPN disconnected to compare.",
        ),
        Cause(
            "host.clock_skew",
            _H,
            "Clock skew",
            "This machine's clock differs from the registrar's, which breaks TLS validity checks "
            "and makes log correlation misleading.",
            "Enable time synchronisation (NTP) on this machine.",
        ),
        Cause(
            "network.dns_failure",
            _F,
            "SIP server name does not resolve",
            "The registrar's domain has no usable NAPTR/SRV/A records from this machine.",
            "Check the DNS servers this machine uses and the registrar name in the profile.",
        ),
        Cause(
            "network.registrar_unreachable",
            _F,
            "Registrar unreachable",
            "No transport reaches the registrar: every request timed out or found no route (a "
            "firewall, VPN or network problem), or was refused because nothing listens at the "
            "registrar's address and port.",
            "Allow outbound SIP (UDP/TCP 5060, TLS 5061) to the registrar in the firewall/VPN; "
            "where the connection is refused, check the registrar's address and port.",
        ),
        Cause(
            "network.udp_blocked",
            _F,
            "SIP over UDP blocked",
            "SIP over UDP gets no answer (dropped, or no route) while another transport reaches "
            "the registrar.",
            "Allow outbound UDP 5060 to the registrar, or switch the softphone to a transport "
            "that reaches it.",
        ),
        Cause(
            "network.tcp_blocked",
            _F,
            "SIP over TCP blocked",
            "SIP over TCP gets no answer (dropped, or no route) while another transport reaches "
            "the registrar.",
            "Allow outbound TCP 5060 to the registrar, or switch the softphone to a transport "
            "that reaches it.",
        ),
        Cause(
            "network.tls_blocked",
            _F,
            "SIP over TLS blocked",
            "SIP over TLS gets no answer (dropped, or no route) while another transport reaches "
            "the registrar.",
            "Allow outbound TCP 5061 (SIP-TLS) to the registrar, or switch the softphone to a "
            "transport that reaches it.",
        ),
        Cause(
            "network.tls_untrusted",
            _F,
            "Registrar certificate not trusted",
            "The registrar's TLS certificate fails verification (expired, wrong name, unknown CA, "
            "or a TLS-inspecting proxy).",
            "Install the platform's CA certificate or exempt the registrar from TLS inspection.",
        ),
        Cause(
            "network.wss_blocked",
            _F,
            "SIP over WebSocket blocked",
            "The WebRTC softphone's WebSocket to its SIP server does not open: the connection "
            "is refused or silent, a proxy refuses the tunnel, the server refuses the upgrade, or "
            "the TLS handshake fails.",
            "Allow outbound HTTPS/WSS to the softphone's SIP server (and CONNECT to it on the "
            "web proxy), or exempt it from the proxy.",
        ),
        Cause(
            "network.sip_alg",
            _F,
            "SIP ALG rewrites signalling",
            "A router or firewall SIP ALG rewrites SIP headers or SDP in transit, which breaks "
            "authentication and media.",
            "Disable SIP ALG ('SIP helper', 'SIP transformations') on the router/firewall.",
        ),
        Cause(
            "network.udp_fragmentation",
            _F,
            "Fragmented UDP dropped",
            "Large SIP messages over UDP are fragmented and the fragments are dropped on the path.",
            "Switch the softphone to TCP/TLS, or fix the path MTU / firewall fragment handling.",
        ),
        Cause(
            "network.stun_unreachable",
            _F,
            "STUN server unreachable",
            "The STUN server does not answer, so the softphone cannot learn its public address.",
            "Allow outbound UDP 3478 to the STUN server.",
        ),
        Cause(
            "network.nat_restrictive",
            _F,
            "Restrictive (symmetric) NAT",
            "The NAT maps each destination to a new port, so media from the platform may not "
            "reach this machine without a TURN relay.",
            "Use a TURN relay or ask IT for a less restrictive NAT policy for the softphone.",
        ),
        Cause(
            "network.media_blocked",
            _F,
            "Media (RTP) blocked",
            "The media path (RTP/UDP ports) is blocked: calls connect with no audio or fail.",
            "Allow the platform's RTP UDP port range in the firewall.",
        ),
        Cause(
            "network.poor_quality",
            _F,
            "Poor network quality",
            "Loss, latency or jitter on the path is high enough to degrade or drop calls.",
            "Move to a wired network, or ask IT to check the path to the platform.",
        ),
        Cause(
            "network.inbound_blocked",
            _F,
            "Requests from the platform do not reach this machine",
            "The platform took a request for this agent but no registered softphone answered it: "
            "requests from the platform to this machine are dropped (a firewall, NAT filtering, a "
            "contact the platform cannot route to), or the softphone is hung.",
            "Allow SIP from the platform's addresses in to the softphone (or keep the softphone's "
            "own connection open: TCP/TLS with keepalives); if the softphone is hung, restart it.",
        ),
        Cause(
            "network.nat_binding_short",
            _F,
            "The network forgets the path between re-registrations",
            "Requests from the platform fail after an idle period shorter than the registration "
            "interval the platform granted: the NAT or firewall forgets the path between "
            "re-REGISTERs, and offers sent meanwhile are lost.",
            "Make the softphone send keepalives every 15 s or less, or use TCP/TLS, or raise the "
            "firewall's UDP timeout to at least 300 s (RFC 4787).",
        ),
        Cause(
            "sip.credentials_rejected",
            _R,
            "SIP credentials rejected",
            "The registrar challenged us and rejected the answer: wrong user, auth user or "
            "password.",
            "Check the SIP user, auth user and password with the platform administrator.",
        ),
        Cause(
            "sip.forbidden",
            _R,
            "Registrar refuses registration",
            "The registrar answers 403 Forbidden: it refuses this account, domain or source "
            "address.",
            "Ask the platform administrator whether the account is enabled and this network "
            "allowed.",
        ),
        Cause(
            "sip.transport_not_offered",
            _R,
            "The registrar does not offer the softphone's transport",
            "Nothing listens on HOST:PORT for TRANSPORT (connection refused): the registrar does "
            "not offer the transport the softphone is configured to use.",
            "Switch the softphone to a transport the registrar answers on, or ask the platform "
            "which transport and port to use.",
        ),
        Cause(
            "sip.not_found",
            _R,
            "SIP account not found",
            "The registrar answers 404: it does not know this user, or does not serve this domain.",
            "Check the SIP user and domain in the softphone against the platform's account.",
        ),
        Cause(
            "sip.binding_replaced",
            _R,
            "sipdiag's test registration replaced the softphone's",
            "This registrar keeps one registration per account; sipdiag's test registration "
            "(--register-binding) replaced the softphone's, so the platform cannot offer calls "
            "to the softphone until it re-registers. It will be back at the softphone's next "
            "refresh.",
            "Re-register the softphone now (log out and in, or restart it); do not use "
            "--register-binding on this registrar.",
        ),
        Cause(
            "sip.server_error",
            _R,
            "Registrar server error",
            "The registrar answered with a 5xx server error.",
            "Retry later; if it persists, report it to the platform with the run id.",
        ),
        Cause(
            "sip.not_registered",
            _R,
            "No softphone registered for this agent",
            "The registrar holds no registration for this account other than sipdiag's own: the "
            "platform has no softphone to offer calls to. Critical when the softphone is running "
            "(running but not registered), a warning otherwise (is the softphone open and logged "
            "in?).",
            "Open the softphone and log in; if it is running, check its account (user, domain, "
            "registrar) and restart it until it shows as registered.",
        ),
        Cause(
            "sip.extra_bindings",
            _R,
            "More than one device registered for this agent",
            "Several devices are registered with this account: the platform forks each offer to "
            "every one of them, and any one that rejects it (403, 603, 486) or lacks audio can "
            "decide the status the platform logs.",
            "Log the account out of every device but the agent's softphone (desk phone, mobile "
            "app, another PC), or give each device its own account.",
        ),
        Cause(
            "sip.binding_unroutable",
            _R,
            "A registration the platform cannot route back to",
            "A registration's contact is a private address while the registrar sees this machine "
            "from another address, with nothing that lets the platform route back to it (no "
            "received, alias or path parameter, no outbound reg-id): the platform can only reach "
            "it if it fixes NAT itself.",
            "Turn on the softphone's NAT traversal (rport, STUN or SIP outbound), or use TCP/TLS "
            "with keepalives, or ask the platform administrator to apply NAT handling to this "
            "account.",
        ),
        Cause(
            "number.invalid",
            _N,
            "Agent number invalid",
            "The number the platform would call is not a valid E.164 number.",
            "Correct the agent's number in the platform's agent settings (E.164, e.g. +4420...).",
        ),
        Cause(
            "number.not_permitted",
            _N,
            "Agent number not permitted",
            "The platform is not permitted to call this number (policy or trunk restriction).",
            "Ask the platform administrator to allow the number, or use a permitted number.",
        ),
        Cause(
            "number.identity_mismatch",
            _N,
            "Number does not match the SIP identity",
            "The number configured for the agent does not belong to the registered SIP identity.",
            "Align the agent's number with the SIP account it registers with.",
        ),
    )
}
