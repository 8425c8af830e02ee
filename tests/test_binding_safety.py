"""Do no harm: a real softphone's binding survives every sipdiag run, on a registrar that keeps
one binding per account (Kamailio save("location", "0x04"), as Asterisk's max_contacts=1 +
remove_existing); with --register-binding the replacement is detected and reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import CliResult, cli_process
from peers.baresip import Baresip
from peers.kamailio import Kamailio

PASSWORD = "alice-secret"
# What a registrar changes when anything re-registers, replaces or removes a binding.
SAME = ("Address", "Call-ID", "CSeq", "User-Agent")  # ul.lookup field names


@pytest.fixture(scope="module")
def one_binding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    server = Kamailio.start(tmp_path_factory.mktemp("kam-one"), one_binding=True)
    yield server
    server.stop()


@pytest.fixture(params=["udp", "tcp"])
def softphone(
    request: pytest.FixtureRequest, one_binding: Kamailio, tmp_path: Path
) -> Iterator[Baresip]:
    phone = Baresip.start(
        tmp_path / "baresip",
        f"{one_binding.host}:{one_binding.port}",
        "alice",
        PASSWORD,
        transport=request.param,
    )
    yield phone
    phone.stop()
    one_binding.kamcmd("ul.rm", "location", "alice")


def run(kam: Kamailio, transport: str, *extra: str) -> CliResult:
    return cli_process(
        "check",
        "--registrar",
        kam.registrar_uri(transport),
        "--user",
        "alice",
        "--format",
        "json",
        "--timeout",
        "8",
        *extra,
        env={"SIPDIAG_PASSWORD": PASSWORD},
    )


def binding_of(kam: Kamailio) -> list[tuple[str, ...]]:
    found = kam.bindings("alice")
    for b in found:
        assert all(k in b for k in SAME), f"ul.lookup fields changed: {sorted(b)}"
    return [tuple(b[k] for k in SAME) for b in found]


def transport_of(phone: Baresip) -> str:
    return phone.daemon.name.rsplit("-", 1)[1]


def test_the_softphones_binding_survives_every_sipdiag_command_unchanged(
    one_binding: Kamailio, softphone: Baresip
) -> None:
    transport = transport_of(softphone)
    before = binding_of(one_binding)
    assert len(before) == 1 and "baresip" in before[0][3], before
    for extra in (("--only", "sip"), ("--only", "sip", "--no-register"), ("--skip", "audio")):
        r = run(one_binding, transport, *extra)
        assert binding_of(one_binding) == before, extra
        check = r.check("sip.register")
        assert check["status"] == "pass", (extra, check)
        if "--skip" in extra:  # the full check: the ALG check reads the query's bindings too
            assert r.check("net.sip-alg")["status"] != "error", r.check("net.sip-alg")
        if "--no-register" in extra:
            continue
        details = check["details"]
        assert details["mode"] == "query"
        assert "other binding" in details["binding"]["reason"]
        [binding] = details["bindings"]
        assert f"@127.0.0.1:{softphone.port}" in binding["contact"], binding
        assert binding["transport"] == transport and binding["ours"] is False
        assert binding["expires"] is not None and 0 < binding["expires"] <= 600
        assert "nothing was registered" in check["summary"]
        assert "sip.binding_replaced" not in r.causes()
    assert softphone.registrations() == 1  # nothing made it register again


def test_register_binding_replaces_the_softphones_binding_and_says_so(
    one_binding: Kamailio, softphone: Baresip
) -> None:
    transport = transport_of(softphone)
    [before] = binding_of(one_binding)
    r = run(one_binding, transport, "--only", "sip", "--register-binding")
    check = r.check("sip.register")
    assert check["status"] == "fail", check
    assert check["details"]["mode"] == "register"
    [gone] = check["details"]["replaced_bindings"]
    assert f"@127.0.0.1:{softphone.port}" in gone["contact"], gone
    finding = r.finding("sip.binding_replaced")
    assert finding["severity"] == "critical"
    assert "re-register the softphone now" in finding["action"]
    assert r.code == 1
    # The harm is real, and it is what the report says: the softphone's binding is gone.
    assert before not in binding_of(one_binding)


def test_without_another_binding_our_own_registration_is_made_and_removed(
    one_binding: Kamailio,
) -> None:
    assert binding_of(one_binding) == []
    r = run(one_binding, "udp", "--only", "sip.register")
    check = r.check("sip.register")
    assert check["status"] == "pass", check
    assert check["details"]["mode"] == "register"
    assert check["details"]["binding"]["reason"] == "the account has no other binding"
    assert check["details"]["replaced_bindings"] == []
    assert binding_of(one_binding) == []


def test_register_binding_is_refused_in_a_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('registrar = "sip:127.0.0.1"\nregister_binding = true\n')
    r = cli_process("check", "--profile", str(profile), "--only", "host.os")
    assert r.code == 64
    assert "unknown key(s): register_binding" in r.err


def test_the_dial_test_calls_without_a_binding_of_its_own_when_the_softphone_has_one(
    one_binding: Kamailio, softphone: Baresip
) -> None:
    transport = transport_of(softphone)
    before = binding_of(one_binding)
    r = run(one_binding, transport, "--only", "sip.register", "--only", "number.dial-test",
            "--dial-test", "9999")  # fmt: skip
    dial = r.check("number.dial-test")
    assert dial["details"]["register"]["outcome"] == "not_registered", dial
    # The platform still answered the call itself: 9999 is not in Kamailio's permitted list.
    assert (dial["details"]["code"], dial["details"]["reason"]) == (403, "Number Not Permitted")
    assert "number.not_permitted" in r.causes()
    assert binding_of(one_binding) == before
    assert softphone.registrations() == 1


def test_sip_register_ws_queries_and_leaves_the_softphones_binding(tmp_path: Path) -> None:
    kam = Kamailio.start(tmp_path / "kam-ws", websocket=True, one_binding=True)
    phone = Baresip.start(tmp_path / "phone", f"{kam.host}:{kam.port}", "alice", PASSWORD)
    try:
        before = binding_of(kam)
        r = cli_process(
            "check", "--ws-url", kam.ws_url("ws"), "--user", "alice", "--only", "sip.register-ws",
            "--format", "json", env={"SIPDIAG_PASSWORD": PASSWORD},
        )  # fmt: skip
        check = r.check("sip.register-ws")
        assert check["status"] == "pass", check
        assert check["details"]["mode"] == "query"
        [binding] = check["details"]["bindings"]
        assert f"@127.0.0.1:{phone.port}" in binding["contact"]
        assert binding_of(kam) == before
        r = cli_process(
            "check", "--ws-url", kam.ws_url("ws"), "--user", "alice", "--only", "sip.register-ws",
            "--format", "json", "--register-binding", env={"SIPDIAG_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert r.check("sip.register-ws")["status"] == "fail"
        assert r.check("sip.register-ws")["details"]["replaced_bindings"]
        assert "sip.binding_replaced" in r.causes()
    finally:
        phone.stop()
        kam.stop()
