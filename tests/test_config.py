"""Profiles, flag precedence and where the password may come from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli

from diag.config import Secret, Settings, build_settings, load_profile, resolve_password
from diag.errors import UsageError
from diag.target import parse_registrar


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "not found"),
        ("registrar = \n", "is not valid TOML"),
        ('registrar = "sip:pbx"\ncolour = "blue"\n', "unknown key(s): colour"),
        ('user = "alice"\npassword = "alice-secret"\n', "contains a password (key 'password')"),
        ('user = "alice"\nsip_password = "alice-secret"\n', "contains a password"),
        ('timeout = "soon"\n', "'timeout' must be a number"),
        ('transports = ["udp", 5]\n', "'transports' must be a list of strings"),
    ],
)
def test_bad_profile_exits_64_with_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "missing.toml" if text is None else _profile(tmp_path, text)
    r = cli("check", "--profile", str(path))
    assert r.code == 64
    assert message in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert "alice-secret" not in r.err + r.out


def test_flags_override_the_profile(tmp_path: Path) -> None:
    path = _profile(
        tmp_path,
        'registrar = "sip:a.example"\nuser = "alice"\n'
        'transports = ["tcp"]\ntimeout = 4\nnumbers = ["+441234567890"]\n',
    )
    s = build_settings(path, {"registrar": "sip:b.example", "transports": None, "timeout": None})
    assert (s.registrar, s.user, s.transports, s.timeout) == ("sip:b.example", "alice", ("tcp",), 4)
    assert s.numbers == ("+441234567890",)
    assert s.sip_uri == "sip:alice@b.example"


def test_profile_policy_path_is_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("")
    s = build_settings(_profile(tmp_path, 'policy = "policy.toml"\n'), {})
    assert s.policy == str(tmp_path / "policy.toml")


def test_profile_values_reach_the_report(tmp_path: Path) -> None:
    path = _profile(
        tmp_path,
        'agent_id = "A-17"\nnumbers = ["+441234567890"]\nonly = ["host.os"]\nformat = "json"\n',
    )
    report = cli("check", "--profile", str(path)).json
    assert report["agent"] == {
        "id": "A-17",
        "sip_uri": None,
        "numbers": ["+441234567890"],
        "numbers_e164": ["+441234567890"],
    }
    assert [c["id"] for c in report["checks"]] == ["host.os"]


def test_password_comes_from_the_named_environment_variable() -> None:
    s = resolve_password(Settings(user="alice", password_env="MY_PW"), {"MY_PW": "pw1"}, False)
    assert s.password is not None and s.password.reveal() == "pw1"


def test_password_prompt_only_on_a_terminal() -> None:
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    s = Settings(user="alice")
    assert resolve_password(s, {}, interactive=False, prompt=prompt).password is None
    assert asked == []
    got = resolve_password(s, {}, interactive=True, prompt=prompt).password
    assert got is not None and got.reveal() == "typed" and asked


def test_there_is_no_password_flag() -> None:
    r = cli("check", "--password", "alice-secret")
    assert r.code == 64 and "alice-secret" not in r.out


def test_secret_never_shows_itself() -> None:
    secret = Secret("alice-secret")
    s = Settings(user="alice", password=secret)
    for text in (repr(secret), str(secret), repr(s), f"{secret}"):
        assert "alice-secret" not in text


def test_build_settings_rejects_unknown_transport() -> None:
    with pytest.raises(UsageError, match="unknown transport"):
        build_settings(None, {"transports": ["sctp"]})


def test_a_profile_sets_every_profile_key_of_the_table_by_its_type(tmp_path: Path) -> None:
    from diag.settings import PROFILE_KEYS, SETTINGS

    toml = {"text": '"x"', "number": "2", "switch": "true", "list": '["x"]'}
    body = "".join(f"{s.name} = {toml[s.kind]}\n" for s in SETTINGS if s.profile)
    loaded = load_profile(_profile(tmp_path, body))
    assert tuple(loaded) == PROFILE_KEYS
    assert loaded["quiet"] is True and loaded["timeout"] == 2.0 and loaded["stun"] == ("x",)
    assert {"debug", "dial_test", "register_binding"}.isdisjoint(PROFILE_KEYS)


def test_a_profile_may_give_softphone_ports_as_numbers_but_transports_only_as_strings(
    tmp_path: Path,
) -> None:
    path = _profile(tmp_path, 'softphone_ports = [5080, "10000-10100"]\n')
    assert load_profile(path)["softphone_ports"] == ("5080", "10000-10100")
    with pytest.raises(UsageError, match="'transports' must be a list of strings"):
        load_profile(_profile(tmp_path, "transports = [5060]\n"))


def test_each_requirement_reads_the_setting_it_names() -> None:
    from diag.settings import REQUIREMENTS

    given: dict[str, Any] = {"text": "x", "list": ("x",)}
    for needed in REQUIREMENTS:
        setting = needed.setting
        assert not needed.is_set(Settings()), setting.name
        assert needed.is_set(Settings(**{setting.name: given[setting.kind]})), setting.name


def test_the_registrar_is_parsed_once_when_the_settings_are_built() -> None:
    s = Settings(registrar="sips:pbx.example:5071")
    assert s.target is s.target and s.target == parse_registrar("sips:pbx.example:5071")
    assert replace(s, registrar="pbx").target == parse_registrar("pbx")
    assert Settings(registrar="sip:").target is None
    with pytest.raises(UsageError, match="invalid registrar 'sip:': no host"):
        build_settings(None, {"registrar": "sip:"})
