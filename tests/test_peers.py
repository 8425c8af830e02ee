"""Smoke tests: each peer fixture starts a real server that behaves as tests/README.md describes."""

from __future__ import annotations

import json
import socket
import ssl
import time
from email.utils import parsedate_to_datetime

import pytest
from peers import sip
from peers.kamailio import Kamailio
from peers.netns import NetnsPair
from peers.pulse import Pulse
from peers.sipp import SippFactory
from peers.stun import Stun

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_answers_keepalive_options(kamailio: Kamailio, transport: str) -> None:
    with sip.SipClient(kamailio.host, kamailio.port, transport) as client:
        assert sip.status_line(client.options()) == "SIP/2.0 200 Keepalive"


def test_kamailio_tls_port_completes_a_handshake_trusting_the_generated_cert(
    kamailio: Kamailio,
) -> None:
    context = ssl.create_default_context(cafile=str(kamailio.ca_cert))
    with (
        socket.create_connection((kamailio.host, kamailio.tls_port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=kamailio.host) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        uri = f"sip:{kamailio.host}:{kamailio.tls_port};transport=tls"
        tls.sendall(sip.request("OPTIONS", uri, tls.getsockname(), "TLS"))
        assert tls.recv(65535).startswith(b"SIP/2.0 200 Keepalive\r\n")


def test_kamailio_users_htable_holds_alice(kamailio: Kamailio) -> None:
    assert "alice" in kamailio.kamcmd("htable.dump", "users")


def test_kamailio_register_reply_carries_a_utc_date_and_creates_a_binding(
    kamailio: Kamailio,
) -> None:
    with sip.SipClient(kamailio.host, kamailio.port, "udp") as client:
        answer = client.register("alice", "alice-secret", expires=60)
        try:
            assert sip.status_line(answer) == "SIP/2.0 200 OK"
            (date,) = sip.header_values(answer, "Date")
            assert date.endswith(" GMT")
            assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5
            contacts = [b["Address"] for b in kamailio.bindings("alice")]
            assert f"sip:alice@{client.local[0]}:{client.local[1]};transport=udp" in contacts
        finally:
            client.register("alice", "alice-secret", expires=0)
    assert kamailio.bindings("alice") == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_reg_403_warning_answers_register_with_403_and_warning(
    sipp_uas: SippFactory, transport: str
) -> None:
    uas = sipp_uas("reg_403_warning.xml", transport=transport)
    with sip.SipClient(uas.host, uas.port, transport) as client:
        answer = client.register("alice")
        # Over TCP, closing the connection before the scenario's closing pause fails the call.
        assert uas.wait(5) == 0
    assert sip.status_line(answer) == "SIP/2.0 403 Forbidden"
    assert sip.header_values(answer, "Warning") == [
        '399 sipp-pbx "Account suspended: outstanding balance"'
    ]
    assert "REGISTER sip:" in uas.messages()


UDP_AND_TCP_PROBE = """
import json
from peers.sip import SipClient, status_line
result = {{}}
try:
    with SipClient({host!r}, {port}, "udp", timeout=1.0) as client:
        result["udp"] = status_line(client.options())
except TimeoutError:
    result["udp"] = "timeout"
with SipClient({host!r}, {port}, "tcp", timeout=2.0) as client:
    result["tcp"] = "connected"
print(json.dumps(result))
"""


def test_netns_udp_drop_profile_blackholes_udp_but_not_tcp(netns_pair: NetnsPair) -> None:
    pbx = netns_pair.start_kamailio()
    assert pbx.host == netns_pair.pbx_ip
    probe = UDP_AND_TCP_PROBE.format(host=pbx.host, port=pbx.port)

    def probe_from_agent() -> dict[str, str]:
        done = netns_pair.run_python(netns_pair.agent, probe)
        assert done.returncode == 0, done.stderr
        result: dict[str, str] = json.loads(done.stdout)
        return result

    netns_pair.firewall(netns_pair.pbx, "udp-drop")
    assert probe_from_agent() == {"udp": "timeout", "tcp": "connected"}
    netns_pair.firewall(netns_pair.pbx, "open")
    assert probe_from_agent() == {"udp": "SIP/2.0 200 Keepalive", "tcp": "connected"}


def test_pulse_offers_vspeaker_sink_and_vmic_source(pulse: Pulse) -> None:
    sinks = pulse.pactl("list", "short", "sinks").stdout.split()
    sources = pulse.pactl("list", "short", "sources").stdout.split()
    assert "vspeaker" in sinks
    assert "vmic" in sources


def test_stun_binding_request_maps_to_loopback(stun: Stun) -> None:
    address, port = stun.binding_request()
    assert address == "127.0.0.1"
    assert 0 < port < 65536
