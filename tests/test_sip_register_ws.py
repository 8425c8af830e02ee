"""sip.register-ws against a real Kamailio with its websocket + xhttp modules (WS and WSS), a real
tinyproxy, and a WSS port dropped by nftables in a network namespace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli_process
from peers.kamailio import Kamailio
from peers.netns import NetnsPair, exec_argv, run_checked
from peers.process import PeerStartError
from peers.tinyproxy import Tinyproxy

PASSWORD = "alice-secret"
WRONG = "not-alices-password-42"


def _start(what: str, start: Any) -> Any:
    try:
        return start()
    except (PeerStartError, OSError, ValueError) as exc:
        pytest.fail(f"{what} could not start: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def kam_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """Kamailio with SIP over WS and WSS (self-signed certificate), MD5 digest."""
    server = _start(
        "kamailio (websocket)",
        lambda: Kamailio.start(tmp_path_factory.mktemp("kamws"), websocket=True),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kam_sha256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """The same, challenging with algorithm=SHA-256 (RFC 7616)."""
    server = _start(
        "kamailio (websocket, SHA-256)",
        lambda: Kamailio.start(
            tmp_path_factory.mktemp("kamsha"), websocket=True, digest_algorithm="SHA-256"
        ),
    )
    try:
        yield server
    finally:
        server.stop()


def register_ws(
    ws_url: str,
    *extra: str,
    password: str | None = PASSWORD,
    user: str = "alice",
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    data: Path | None = None,
) -> CliResult:
    environ = dict(env or {})
    if password is not None:
        environ["SIPDIAG_PASSWORD"] = password
    if data is not None:
        environ["XDG_DATA_HOME"] = str(data)
    return cli_process(
        "check",
        "--ws-url",
        ws_url,
        "--user",
        user,
        "--only",
        "sip.register-ws",
        "--format",
        "json",
        *extra,
        env=environ,
        prefix=prefix,
    )


def attempt_of(r: CliResult) -> dict[str, Any]:
    attempt: dict[str, Any] = r.check("sip.register-ws")["details"]["attempts"][0]
    return attempt


# ---- the right password


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_register_over_websocket_passes_and_removes_its_binding(
    kam_ws: Kamailio, transport: str
) -> None:
    assert kam_ws.bindings("alice") == []
    r = register_ws(kam_ws.ws_url(transport), "--ca", str(kam_ws.ca_cert))
    check = r.check("sip.register-ws")
    assert r.code == 0, r.err
    assert check["status"] == "pass", check
    attempt = attempt_of(r)
    assert attempt["transport"] == transport
    assert attempt["websocket"]["subprotocol"] == "sip"
    assert attempt["websocket"]["http_status"] == 101
    assert attempt["options"]["code"] == 200
    assert attempt["challenged"] and attempt["challenge"]["algorithm"] == "MD5"
    run8 = r.json["run_id"][:8]
    assert any(f";sipdiag={run8}" in b and "transport=ws" in b for b in attempt["bindings"])
    assert attempt["unregistered"] is True
    assert kam_ws.bindings("alice") == []  # the un-REGISTER removed it
    # Kamailio saw the REGISTER arrive over the WebSocket transport itself.
    assert re.search(rf"REQ REGISTER \S+ from 127\.0\.0\.1:\d+/{transport}\b", kam_ws.log_text())
    if transport == "wss":
        assert attempt["websocket"]["certificate"]["verified"] is True
        assert attempt["websocket"]["tls_version"].startswith("TLS")
    assert r.json["findings"] == []
    assert r.json["target"]["ws_url"] == kam_ws.ws_url(transport)


def test_register_over_wss_answers_a_sha256_digest_challenge(kam_sha256: Kamailio) -> None:
    r = register_ws(kam_sha256.ws_url("wss"), "--ca", str(kam_sha256.ca_cert))
    attempt = attempt_of(r)
    assert r.check("sip.register-ws")["status"] == "pass", r.check("sip.register-ws")
    assert attempt["challenge"]["algorithm"] == "SHA-256"
    assert attempt["code"] == 200 and attempt["unregistered"] is True
    assert kam_sha256.bindings("alice") == []


def test_transport_flag_matching_the_url_is_accepted(kam_ws: Kamailio) -> None:
    r = register_ws(kam_ws.ws_url("ws"), "--transport", "ws")
    assert r.check("sip.register-ws")["status"] == "pass"


# ---- the registrar refuses: the same causes as sip.register


def test_wrong_password_over_wss_is_credentials_rejected_with_the_control_probe(
    kam_ws: Kamailio,
) -> None:
    r = register_ws(kam_ws.ws_url("wss"), "--ca", str(kam_ws.ca_cert), password=WRONG)
    assert "attempts" in r.check("sip.register-ws")["details"], r.check("sip.register-ws")
    attempt = attempt_of(r)
    assert (attempt["code"], attempt["challenged"]) == (403, True)
    assert attempt["warning"] == ['399 pbx.test "Wrong password for alice"']
    assert r.causes() == ["sip.credentials_rejected"]
    baseline = r.check("sip.register-ws")["details"]["baseline"]
    assert baseline["outcome"] == "challenged" and baseline["user"].startswith("sipdiag-nobody-")
    f = r.finding("sip.credentials_rejected")
    assert "Wrong password for alice" in f["explanation"]
    assert "specific to this account" in f["explanation"]
    assert (
        f["action"] == "check the SIP user, auth user and password with the platform administrator"
    )
    assert r.code == 1
    assert kam_ws.bindings("alice") == []


@pytest.fixture
def everyone_forbidden(kam_ws: Kamailio) -> Iterator[None]:
    kam_ws.kamcmd("htable.seti", "blocked_src", "127.0.0.1", "1")
    try:
        yield
    finally:
        kam_ws.kamcmd("htable.delete", "blocked_src", "127.0.0.1")


def test_403_to_everyone_over_ws_is_forbidden_and_the_control_probe_says_so(
    kam_ws: Kamailio, everyone_forbidden: None
) -> None:
    r = register_ws(kam_ws.ws_url("ws"))
    attempt = attempt_of(r)
    assert (attempt["code"], attempt["challenged"]) == (403, False)
    baseline = r.check("sip.register-ws")["details"]["baseline"]
    assert (baseline["code"], baseline["challenged"]) == (403, False)
    assert r.causes() == ["sip.forbidden"]
    explanation = r.finding("sip.forbidden")["explanation"]
    assert "WS REGISTER got 403 Forbidden" in explanation
    assert "the registrar refuses this source" in explanation
    assert '"Source 127.0.0.1 is not allowed"' in explanation


def test_no_register_over_ws_only_queries_the_challenge(kam_ws: Kamailio) -> None:
    r = register_ws(kam_ws.ws_url("ws"), "--no-register", password=None)
    check = r.check("sip.register-ws")
    assert check["status"] == "pass", check
    assert check["details"]["mode"] == "challenge_only"
    assert attempt_of(r)["outcome"] == "challenged"
    assert kam_ws.bindings("alice") == []


# ---- certificates


def test_a_self_signed_wss_certificate_is_tls_untrusted_not_wss_blocked(kam_ws: Kamailio) -> None:
    r = register_ws(kam_ws.ws_url("wss"))
    attempt = attempt_of(r)
    assert attempt["outcome"] == "tls_untrusted"
    cert = attempt["websocket"]["certificate"]
    assert cert["verified"] is False and cert["self_signed"] is True
    assert cert["subject_cn"] == "127.0.0.1"
    assert "self-signed" in cert["verify_error"] or "self signed" in cert["verify_error"]
    assert r.causes() == ["network.tls_untrusted"]
    assert "--ca FILE" in r.finding("network.tls_untrusted")["action"]


# ---- the path: refused, upgrade refused, proxies, firewall


def test_a_refused_ws_port_is_wss_blocked(kam_ws: Kamailio) -> None:
    closed = f"ws://127.0.0.1:{kam_ws.port}/"  # SIP over TCP: no HTTP upgrade there ...
    r = register_ws(closed.replace(str(kam_ws.port), "1"))  # ... port 1: nothing listens
    assert attempt_of(r)["outcome"] == "refused"
    assert r.causes() == ["network.wss_blocked"]
    assert "refused the connection" in r.finding("network.wss_blocked")["action"]


def test_an_http_port_that_refuses_the_upgrade_is_wss_blocked_with_the_http_status(
    kam_ws: Kamailio,
) -> None:
    # Kamailio's xhttp answers a WebSocket GET on its plain SIP TCP port with 403.
    r = register_ws(f"ws://127.0.0.1:{kam_ws.port}/")
    attempt = attempt_of(r)
    assert attempt["websocket"]["stage"] == "upgrade"
    assert attempt["websocket"]["http_status"] == 403
    assert r.causes() == ["network.wss_blocked"]
    assert "HTTP 403" in r.finding("network.wss_blocked")["explanation"]


@pytest.fixture
def proxy_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started: list[Tinyproxy] = []

    def start(*connect_ports: int) -> Tinyproxy:
        proxy: Tinyproxy = _start(
            "tinyproxy",
            lambda: Tinyproxy.start(tmp_path_factory.mktemp("tinyproxy"), connect_ports),
        )
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


def test_a_proxy_that_refuses_connect_is_wss_blocked_and_named(
    kam_ws: Kamailio, proxy_factory: Any
) -> None:
    proxy = proxy_factory()  # CONNECT only to 443
    r = register_ws(
        kam_ws.ws_url("wss"), "--ca", str(kam_ws.ca_cert), env={"HTTPS_PROXY": proxy.url}
    )
    ws = attempt_of(r)["websocket"]
    assert ws["stage"] == "proxy"
    assert ws["proxy"] == {
        "url": proxy.url,
        "source": "HTTPS_PROXY",
        "answer": "403 Access violation",
    }
    assert r.causes() == ["network.wss_blocked"]
    f = r.finding("network.wss_blocked")
    assert proxy.url in f["explanation"] and "403 Access violation" in f["explanation"]
    assert f"the proxy {proxy.url} (HTTPS_PROXY) refused the WebSocket tunnel" in f["action"]
    assert f"CONNECT 127.0.0.1:{kam_ws.wss_port}" in proxy.daemon.log_text()


def test_a_proxy_that_allows_connect_carries_the_registration(
    kam_ws: Kamailio, proxy_factory: Any
) -> None:
    assert kam_ws.wss_port is not None
    proxy = proxy_factory(kam_ws.wss_port)
    r = register_ws(
        kam_ws.ws_url("wss"), "--ca", str(kam_ws.ca_cert), env={"https_proxy": proxy.url}
    )
    assert r.check("sip.register-ws")["status"] == "pass", r.check("sip.register-ws")
    assert attempt_of(r)["websocket"]["proxy"]["answer"] == "CONNECT accepted"
    assert f"CONNECT 127.0.0.1:{kam_ws.wss_port}" in proxy.daemon.log_text()


def test_no_proxy_sends_the_websocket_direct(kam_ws: Kamailio, proxy_factory: Any) -> None:
    proxy = proxy_factory()
    r = register_ws(
        kam_ws.ws_url("wss"),
        "--ca",
        str(kam_ws.ca_cert),
        env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"},
    )
    assert r.check("sip.register-ws")["status"] == "pass"
    assert attempt_of(r)["websocket"]["proxy"] is None
    assert f"CONNECT 127.0.0.1:{kam_ws.wss_port}" not in proxy.daemon.log_text()


def test_the_wss_port_dropped_by_the_firewall_is_wss_blocked_within_the_budget(
    netns_pair: NetnsPair,
) -> None:
    kam = Kamailio.start(
        netns_pair.work_dir / "kamws", host=netns_pair.pbx_ip, netns=netns_pair.pbx, websocket=True
    )
    netns_pair.kamailio = kam  # stopped by the fixture's destroy()
    rule = (
        "table inet tb {\n  chain input {\n    type filter hook input priority 0; policy accept;\n"
        f"    tcp dport {kam.wss_port} drop\n  }}\n}}\n"
    )
    run_checked(exec_argv(netns_pair.pbx, ["nft", "-f", "-"]), stdin=rule)
    agent = tuple(exec_argv(netns_pair.agent, []))
    r = register_ws(kam.ws_url("wss"), "--ca", str(kam.ca_cert), "--timeout", "3", prefix=agent)
    assert r.json["duration_ms"] <= 3000 + 300  # the run's own budget, not Python's start-up
    assert attempt_of(r)["outcome"] == "timeout"
    assert r.causes() == ["network.wss_blocked"]
    assert f"allow outbound TCP {kam.wss_port} (WSS)" in r.finding("network.wss_blocked")["action"]
    # Only the WSS port is dropped: plain WS from the same namespace still registers.
    ok = register_ws(kam.ws_url("ws"), "--timeout", "3", prefix=agent)
    assert ok.check("sip.register-ws")["status"] == "pass", ok.check("sip.register-ws")


# ---- secrets and usage


def test_the_password_never_appears_in_any_output(kam_ws: Kamailio, tmp_path: Path) -> None:
    secret = "Sup3r-Secret-ws-Pa55"
    kam_ws.kamcmd("htable.sets", "users", "dave", secret)
    try:
        for password in (secret, secret + "x"):  # accepted, then rejected
            for fmt in ("json", "text"):
                r = register_ws(
                    kam_ws.ws_url("wss"),
                    "--ca",
                    str(kam_ws.ca_cert),
                    "--debug",
                    "--format",
                    fmt,
                    "--out",
                    str(tmp_path / f"report.{'md' if fmt == 'text' else 'json'}"),
                    user="dave",
                    password=password,
                    data=tmp_path / "data",
                )
                assert r.out.strip() and (fmt == "text" or "dave" in r.out)
                for text in (
                    r.out,
                    r.err,
                    *(p.read_text() for p in tmp_path.rglob("*.*") if p.is_file()),
                ):
                    assert secret not in text
    finally:
        kam_ws.kamcmd("htable.delete", "users", "dave")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--transport", "wss"), "--transport wss needs --ws-url"),
        (("--ws-url", "https://sip.example.com/ws"), "not a ws:// or wss:// URL"),
        (("--ws-url", "wss://sip.example.com/ws", "--transport", "ws"), "does not match"),
        (("--ws-url", "wss://sip.example.com:99999/"), "invalid --ws-url"),
        (("--softphone-url", "ftp://agent.example.com"), "not an http(s):// URL"),
    ],
)
def test_bad_websocket_flags_are_one_line_usage_errors(args: tuple[str, ...], message: str) -> None:
    r = cli_process("check", "--only", "sip.register-ws", *args)
    assert r.code == 64
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipdiag: error: ")
    assert message in lines[0] and "(hint: " in lines[0]


def test_without_ws_url_the_check_skips(tmp_path: Path) -> None:
    r = cli_process("check", "--only", "sip.register-ws", "--format", "json")
    check = r.check("sip.register-ws")
    assert check["status"] == "skip"
    assert check["summary"] == "no WebSocket URL configured"


def test_ws_url_comes_from_the_profile(kam_ws: Kamailio, tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(f'ws_url = "{kam_ws.ws_url("ws")}"\nuser = "alice"\n')
    r = cli_process(
        "check",
        "--profile",
        str(profile),
        "--only",
        "sip.register-ws",
        "--format",
        "json",
        env={"SIPDIAG_PASSWORD": PASSWORD},
    )
    assert r.check("sip.register-ws")["status"] == "pass"


def test_a_socks_proxy_without_python_socks_is_an_error_with_an_install_hint() -> None:
    from clihelp import cli, registered

    r = cli(
        "check",
        "--ws-url",
        "wss://127.0.0.1:9/",
        "--user",
        "alice",
        "--format",
        "json",
        environ={"SIPDIAG_PASSWORD": PASSWORD, "HTTPS_PROXY": "socks5://127.0.0.1:1080"},
        registry=registered("sip.register-ws"),
    )
    check = r.check("sip.register-ws")
    assert check["status"] == "error"
    assert attempt_of(r)["websocket"]["stage"] == "proxy"
    assert "pip install python-socks" in check["hint"]
    assert r.json["findings"] == []
