"""register_probe: one REGISTER without Contact or credentials, against real peers.

Kamailio (challenge, bindings untouched, TLS with and without the CA), sipp scenarios (403, 404),
a fake registrar socket (the bytes on the wire, a 2xx), a silent UDP port and a closed TCP port.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from typing import Any

import pytest
from peers import sip
from peers.kamailio import Kamailio
from peers.process import free_port
from peers.sipp import SippFactory

from checks.wire.sipclient import register_probe

KEYS = {
    "transport",
    "target",
    "user",
    "outcome",
    "code",
    "reason",
    "challenged",
    "challenge",
    "warning",
    "server",
    "call_id",
    "received",
    "rport",
    "rtt_ms",
    "error",
    "tls_verified",
    "challenges",
    "credentials",
    "registrar_answered",
    "local",  # our side (host:port), once a socket was made; None before
}
# Present when there is an answer (server_date, reason_header), a 200 (bindings), or a failure
# worth naming (tls_error, auth_error).
OPTIONAL = {
    "server_date", "reason_header", "bindings", "tls_error", "auth_error", "unusable",
    "undecodable_characters",
}  # fmt: skip
UA = "sipdiag/test run=register-probe"


def probe(
    transport: str,
    host: str,
    port: int,
    *,
    user: str = "alice",
    domain: str = "pbx.test",
    ca: str | None = None,
    seconds: float = 3.0,
) -> tuple[dict[str, Any], str, float]:
    """register_probe to ``host:port`` at 127.0.0.1: (its answer, the probe id, seconds taken)."""
    probe_id = f"{uuid.uuid4()}-{transport}-q"
    started = time.monotonic()
    answer = register_probe(
        transport=transport,
        host=host,
        port=port,
        address="127.0.0.1",
        user=user,
        domain=domain,
        probe_id=probe_id,
        user_agent=UA,
        ca=ca,
        deadline=started + seconds,
    )
    assert KEYS <= set(answer) <= KEYS | OPTIONAL, set(answer) ^ KEYS
    return answer, probe_id, time.monotonic() - started


def request_heads(messages: str) -> list[list[str]]:
    """The header lines of each REGISTER in a sipp -trace_msg log."""
    heads = []
    for block in messages.split("REGISTER sip:")[1:]:
        head = ("REGISTER sip:" + block).split("\n\n", 1)[0]
        heads.append([line.strip() for line in head.splitlines() if line.strip()])
    return heads


def without_expires(binding: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in binding.items() if k != "Expires"}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_challenges_alice_with_401_and_her_bindings_stay_as_they_were(
    kamailio: Kamailio, transport: str
) -> None:
    with sip.SipClient(kamailio.host, kamailio.port, transport) as client:
        assert sip.status_code(client.register("alice", "alice-secret", expires=60)) == 200
        try:
            before = kamailio.bindings("alice")
            assert len(before) == 1
            answer, probe_id, _ = probe(transport, kamailio.host, kamailio.port)
            after = kamailio.bindings("alice")
        finally:
            client.register("alice", "alice-secret", expires=0)
    # The same binding, not refreshed: Call-ID, CSeq and Last-Modified as they were.
    assert [without_expires(b) for b in after] == [without_expires(b) for b in before]
    assert int(after[0]["Expires"]) <= int(before[0]["Expires"])
    assert kamailio.bindings("alice") == []
    assert answer["outcome"] == "challenged" and answer["challenged"] is True
    assert (answer["code"], answer["reason"]) == (401, "Unauthorized")
    assert answer["challenge"] == {
        "scheme": "Digest",
        "realm": "pbx.test",
        "algorithm": "MD5",
        "qop": "auth",
    }
    assert answer["transport"] == transport
    assert answer["target"] == f"{kamailio.host}:{kamailio.port}"
    assert answer["user"] == "alice" and answer["warning"] == [] and answer["error"] is None
    assert answer["call_id"] == f"{probe_id}@127.0.0.1"
    assert answer["server"] == "testbed-pbx" and answer["received"] == "127.0.0.1"
    assert isinstance(answer["rport"], int) and isinstance(answer["rtt_ms"], int)
    assert answer["tls_verified"] is None


def test_a_probe_of_a_user_without_bindings_creates_none(kamailio: Kamailio) -> None:
    assert kamailio.bindings("alice") == []
    answer, _, _ = probe("udp", kamailio.host, kamailio.port)
    assert answer["outcome"] == "challenged"
    assert kamailio.bindings("alice") == []


@pytest.mark.parametrize(
    ("ca", "verified"), [(False, False), (True, True)], ids=["without-ca", "with-ca"]
)
def test_tls_to_kamailio_is_challenged_whether_or_not_its_certificate_verifies(
    kamailio: Kamailio, ca: bool, verified: bool
) -> None:
    answer, _, _ = probe(
        "tls", kamailio.host, kamailio.tls_port, ca=str(kamailio.ca_cert) if ca else None
    )
    assert answer["tls_verified"] is verified
    assert (answer["outcome"], answer["code"]) == ("challenged", 401), answer
    assert answer["challenge"] is not None and answer["challenge"]["realm"] == "pbx.test"
    assert answer["target"] == f"{kamailio.host}:{kamailio.tls_port}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_403_with_a_warning_is_rejected_and_the_wire_has_no_contact(
    sipp_uas: SippFactory, transport: str
) -> None:
    uas = sipp_uas("reg_403_warning.xml", transport=transport)
    answer, probe_id, _ = probe(transport, uas.host, uas.port, user="bob", domain="cc.test")
    # sipp exits 0 when the call followed the scenario. Over TCP the probe closes its connection
    # on the 403, inside the scenario's closing pause, so sipp counts that call failed: exit 1
    # (had the probe held it open, sipp would exit 0; with no call at all, 99).
    assert uas.wait(5) == {"udp": 0, "tcp": 1}[transport], uas.errors()
    assert answer["outcome"] == "rejected" and answer["challenged"] is False
    assert (answer["code"], answer["reason"]) == (403, "Forbidden")
    assert answer["warning"] == ['399 sipp-pbx "Account suspended: outstanding balance"']
    assert answer["server"] == "sipp-pbx" and answer["challenge"] is None
    (head,) = request_heads(uas.messages())
    assert head[0] == f"REGISTER sip:{uas.host}:{uas.port}" + (
        " SIP/2.0" if transport == "udp" else ";transport=tcp SIP/2.0"
    )
    names = [line.split(":", 1)[0].strip().lower() for line in head[1:]]
    assert "contact" not in names and "m" not in names and "expires" not in names
    assert f"From: <sip:bob@cc.test>;tag={probe_id}" in head
    assert "To: <sip:bob@cc.test>" in head and "CSeq: 1 REGISTER" in head


def test_a_404_is_rejected_with_its_warning(sipp_uas: SippFactory) -> None:
    uas = sipp_uas("reg_404.xml")
    answer, _, _ = probe("udp", uas.host, uas.port, user="nobody")
    assert uas.wait(5) == 0, uas.errors()
    assert (answer["outcome"], answer["code"], answer["reason"]) == ("rejected", 404, "Not Found")
    assert answer["warning"] == ['399 sipp-pbx "Unknown user or domain"']
    assert answer["user"] == "nobody"


class FakeRegistrar:
    """A UDP socket that records every datagram and answers the first with ``status`` (or,
    with ``status`` None, never answers)."""

    def __init__(self, status: str | None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.status = status
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append(data)
            if self.status is None or len(self.received) > 1:
                continue
            head = data.decode().split("\r\n")
            echoed = [h for h in head if h.split(":", 1)[0] in ("Via", "From", "To", "Call-ID")]
            answer = [
                f"SIP/2.0 {self.status}",
                *echoed,
                "CSeq: 1 REGISTER",
                "Server: fake-registrar",
                "Content-Length: 0",
            ]
            self.sock.sendto(("\r\n".join(answer) + "\r\n\r\n").encode(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


def test_a_2xx_to_the_binding_query_is_ok_and_the_request_holds_no_contact() -> None:
    registrar = FakeRegistrar("200 OK")
    try:
        answer, probe_id, _ = probe("udp", "127.0.0.1", registrar.port, user="1001")
    finally:
        registrar.close()
    assert (answer["outcome"], answer["code"], answer["challenged"]) == ("ok", 200, False)
    assert answer["server"] == "fake-registrar"
    (request,) = registrar.received
    lines = request.decode().split("\r\n")
    assert re.fullmatch(
        rf"Via: SIP/2\.0/UDP 127\.0\.0\.1:\d+;branch=z9hG4bK{probe_id};rport", lines[1]
    )
    assert [lines[0], *lines[2:]] == [
        f"REGISTER sip:127.0.0.1:{registrar.port} SIP/2.0",
        "Max-Forwards: 70",
        f"From: <sip:1001@pbx.test>;tag={probe_id}",
        "To: <sip:1001@pbx.test>",
        f"Call-ID: {probe_id}@127.0.0.1",
        "CSeq: 1 REGISTER",
        f"User-Agent: {UA}",
        "Content-Length: 0",
        "",
        "",
    ]


def test_a_silent_udp_registrar_times_out_within_the_deadline_after_one_retransmission() -> None:
    registrar = FakeRegistrar(None)
    try:
        answer, _, took = probe("udp", "127.0.0.1", registrar.port, seconds=1.5)
    finally:
        registrar.close()
    assert 1.4 < took < 1.6, took
    assert answer["outcome"] == "timeout" and answer["code"] is None
    assert answer["error"] == "no answer within 1.5 s"
    assert len(registrar.received) == 2 and registrar.received[0] == registrar.received[1]


def test_a_closed_tcp_port_is_refused_at_once() -> None:
    port = free_port(kinds=("tcp",))
    answer, _, took = probe("tcp", "127.0.0.1", port)
    assert took < 0.5
    assert (answer["outcome"], answer["code"], answer["error"]) == (
        "refused",
        None,
        "Connection refused",
    )
    assert answer["call_id"] is None and answer["rtt_ms"] is None


def test_too_short_a_budget_is_not_finished_rather_than_a_timeout() -> None:
    registrar = FakeRegistrar(None)
    try:
        answer, _, took = probe("udp", "127.0.0.1", registrar.port, seconds=0.3)
    finally:
        registrar.close()
    assert took < 0.4
    assert answer["outcome"] == "not_finished"


def test_the_authenticated_query_checks_the_password_and_lists_bindings_without_a_contact(
    kamailio: Kamailio,
) -> None:
    from diag.config import Secret

    def query(password: str) -> dict[str, Any]:
        return register_probe(
            transport="udp", host="127.0.0.1", port=kamailio.port, address="127.0.0.1",
            user="alice", domain="127.0.0.1", probe_id=f"{uuid.uuid4()}-udp-q", user_agent=UA,
            ca=None, deadline=time.monotonic() + 3, password=Secret(password),
        )  # fmt: skip

    ok = query("alice-secret")
    assert (ok["outcome"], ok["code"], ok["challenged"], ok["challenges"]) == ("ok", 200, True, 1)
    assert ok["bindings"] == [] and ok["credentials"] is True
    wrong = query("not-alices")
    assert (wrong["outcome"], wrong["code"], wrong["challenged"]) == ("rejected", 403, True)
    assert wrong["warning"] == ['399 pbx.test "Wrong password for alice"']
    assert "bindings" not in wrong
    assert kamailio.bindings("alice") == []
