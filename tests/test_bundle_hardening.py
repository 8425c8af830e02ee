"""Issue 16 hardening of `sipdiag bundle`: where --out writes, scrubbing by structure, redacting
whole values and tokens."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import cli_process
from peers.kamailio import Kamailio

from diag.scrub import Redactor, scrub_sip, scrub_tree


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(XDG_DATA_HOME, saved report) of a quick real run."""
    data = tmp_path_factory.mktemp("data")
    r = cli_process("check", "--only", "host.os", env={"XDG_DATA_HOME": str(data)})
    assert r.code == 0, r.err
    return data, next(data.glob("sipdiag/reports/sipdiag-*.json"))


def _bundle(saved: tuple[Path, Path], *args: str) -> Any:
    data, report = saved
    return cli_process("bundle", str(report), *args, env={"XDG_DATA_HOME": str(data)})


def _unzip(data: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name).decode("utf-8") for name in zf.namelist()}


@contextlib.contextmanager
def _device_kept(path: str) -> Iterator[int]:
    """Yields the device number; puts the node back if a regression replaced it (we are root:
    a broken /dev/null would break every other process on the machine)."""
    before = os.stat(path)
    assert stat.S_ISCHR(before.st_mode)
    try:
        yield before.st_rdev
    finally:
        if not stat.S_ISCHR(os.lstat(path).st_mode):
            os.unlink(path)
            os.mknod(path, stat.S_IFCHR | stat.S_IMODE(before.st_mode), before.st_rdev)


def test_bundle_out_dev_null_writes_through_and_leaves_the_character_device(
    saved: tuple[Path, Path],
) -> None:
    with _device_kept("/dev/null") as rdev:
        r = _bundle(saved, "--out", "/dev/null")
        after = os.stat("/dev/null")
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == rdev
    assert r.code == 0, r.err
    assert "sipdiag: bundle written to /dev/null" in r.err


def test_bundle_out_dev_full_exits_70_with_a_one_line_error(saved: tuple[Path, Path]) -> None:
    with _device_kept("/dev/full") as rdev:
        r = _bundle(saved, "--out", "/dev/full")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
        assert os.stat("/dev/full").st_rdev == rdev
    assert r.code == 70, r.err
    assert r.err.splitlines() == [
        "sipdiag: error: cannot write the bundle /dev/full: No space left on device "
        "(hint: choose another --out path)"
    ]


def test_bundle_out_a_symlink_writes_the_zip_to_its_target(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    target = tmp_path / "ticket.zip"
    target.write_bytes(b"old")
    link = tmp_path / "latest.zip"
    link.symlink_to(target)
    r = _bundle(saved, "--out", str(link))
    assert r.code == 0, r.err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "report.json" in _unzip(target.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.zip", "ticket.zip"]


def test_bundle_out_a_fifo_streams_a_valid_zip_into_it(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = _bundle(saved, "--out", str(fifo))
    reader.join(10)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    files = _unzip(received[0])
    assert sorted(files) == ["manifest.json", "report.html", "report.json"]
    assert json.loads(files["report.json"])["run_id"] == json.loads(saved[1].read_text())["run_id"]


# --- 7: credentials are scrubbed by structure, never by searching text for the password


@pytest.fixture
def numeric_account(kamailio: Kamailio) -> Iterator[str]:
    """An extension whose user name and password are both Kamailio's port number."""
    number = str(kamailio.port)
    # "s:": kamcmd would send a number-looking argument as an integer
    kamailio.kamcmd("htable.sets", "users", f"s:{number}", f"s:{number}")
    try:
        yield number
    finally:
        kamailio.kamcmd("htable.delete", "users", f"s:{number}")


def _same_shape(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_shape, a, b))
    return type(a) is type(b)


def test_a_numeric_password_equal_to_port_and_user_is_not_searched_for_in_trace_or_bundle(
    kamailio: Kamailio, numeric_account: str, tmp_path: Path
) -> None:
    number = numeric_account
    env = {"SIPDIAG_PASSWORD": number, "XDG_DATA_HOME": str(tmp_path / "data")}
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        number,
        "--register-binding",
        "--only",
        "sip.register",
        "--format",
        "json",
        env=env,
    )
    assert r.check("sip.register")["status"] == "pass", r.check("sip.register")
    saved = next((tmp_path / "data").glob("sipdiag/reports/sipdiag-*.json"))
    out = tmp_path / "ticket.zip"
    b = cli_process("bundle", "--out", str(out), env=env)  # the password is in this shell too
    assert b.code == 0, b.err
    files = _unzip(out.read_bytes())

    report = json.loads(files["report.json"])  # valid JSON
    assert report == json.loads(saved.read_text())  # nothing in it is a secret
    assert f'"port": {number}' in files["report.json"]
    for trace in (saved.with_suffix(".sip.log").read_text(), files["sip.log"]):
        assert f"REGISTER sip:127.0.0.1:{number} SIP/2.0" in trace
        assert f"<sip:{number}@127.0.0.1>" in trace
        assert "Authorization: [scrubbed]" in trace  # the answered challenge was traced
        assert not re.search(r"^(proxy-)?authorization:(?! \[scrubbed\]$)", trace, re.I | re.M)
        assert not re.search(r'response="?[0-9a-f]{32}', trace)
    assert "[scrubbed]" not in files["report.json"] + files["report.html"]


def test_scrub_sip_removes_credential_headers_and_keeps_every_other_byte() -> None:
    raw = (
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
        "From: <sip:5060@127.0.0.1>;tag=1\r\n"
        'Authorization: Digest username="5060", realm="pbx.test",\r\n'
        ' response="0123456789abcdef0123456789abcdef"\r\n'
        'Proxy-Authorization:Digest username="5060"\r\n'
        "Content-Length: 0\r\n"
    )
    assert scrub_sip(raw).split("\r\n") == [
        "REGISTER sip:127.0.0.1:5060 SIP/2.0",
        "From: <sip:5060@127.0.0.1>;tag=1",
        "Authorization: [scrubbed]",
        "Proxy-Authorization: [scrubbed]",
        "Content-Length: 0",
        "",
    ]


def test_scrub_tree_replaces_secret_fields_and_credential_headers_and_keeps_types() -> None:
    tree = {
        "port": 5060,
        "user": "5060",
        "password": "5060",
        "turn": {"Password": "x", "credential": None},
        "raw": 'SIP/2.0 200 OK\r\nAuthorization: Digest response="abc"\r\nCSeq: 5060\r\n',
    }
    assert scrub_tree(tree) == {
        "port": 5060,
        "user": "5060",
        "password": "[scrubbed]",
        "turn": {"Password": "[scrubbed]", "credential": None},
        "raw": "SIP/2.0 200 OK\r\nAuthorization: [scrubbed]\r\nCSeq: 5060\r\n",
    }


# --- 8: --redact replaces whole values and whole tokens, never keys or parts of words

TRACE = """\
TX 512 bytes Request msg REGISTER/cseq=2 (tdta0x1) to UDP 192.0.2.9:5060:
REGISTER sip:pbx.example SIP/2.0
Via: SIP/2.0/UDP 192.0.2.2:40000;rport;branch=z9hG4bKPjvmQ
From: <sip:agent@pbx.example>;tag=vm-agent
Contact: <sip:agent@192.0.2.2:40000;ob>
Call-ID: 0b7b1f1e-dvmKdtQ8f
User-Agent: sipdiag/0.1.0 run=0b7b1f1e agent on vm (/home/agent/.config/sipdiag)
Authorization: [scrubbed]
"""


def test_redactor_replaces_whole_tokens_in_a_trace_not_parts_of_words() -> None:
    r = Redactor(["vm"], ["agent"])
    assert r.redact(TRACE).splitlines()[1:] == [
        "REGISTER sip:pbx.example SIP/2.0",
        "Via: SIP/2.0/UDP ip-private-2:40000;rport;branch=z9hG4bKPjvmQ",
        "From: <sip:user-1@pbx.example>;tag=vm-agent",
        "Contact: <sip:user-1@ip-private-2:40000;ob>",
        "Call-ID: 0b7b1f1e-dvmKdtQ8f",
        "User-Agent: sipdiag/0.1.0 run=0b7b1f1e user-1 on host-1 (/home/user-1/.config/sipdiag)",
        "Authorization: [scrubbed]",
    ]


def _keys(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in (key, *_keys(value))]
    if isinstance(tree, list):
        return [k for item in tree for k in _keys(item)]
    return []


@pytest.fixture
def agent_on_vm(saved: tuple[Path, Path], tmp_path: Path) -> Path:
    """The quick run's report as if OS user `agent` ran it on host `vm`, with its SIP trace."""
    report = json.loads(saved[1].read_text())
    report["host"]["hostname"] = "vm"
    report["host"]["user"] = "agent"
    report["correlation"]["call_ids"] = ["0b7b1f1e-dvmKdtQ8f"]
    report["checks"][0]["summary"] += " as agent on vm"
    report["checks"][0]["details"]["config"] = "/home/agent/.config/sipdiag/config.toml"
    path = tmp_path / saved[1].name
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".sip.log").write_text(TRACE)
    return path


def test_redacted_bundle_keeps_keys_and_structure_validates_and_renders(
    agent_on_vm: Path, tmp_path: Path
) -> None:
    original = json.loads(agent_on_vm.read_text())
    out = tmp_path / "redacted.zip"
    r = cli_process("bundle", str(agent_on_vm), "--out", str(out), "--redact")
    assert r.code == 0, r.err
    files = _unzip(out.read_bytes())
    report = json.loads(files["report.json"])

    assert _keys(report) == _keys(original)  # "agent", "user_agent" stay keys
    assert _same_shape(report, original)
    assert report["host"]["hostname"] == "host-1" and report["host"]["user"] == "user-1"
    assert report["checks"][0]["summary"].endswith(" as user-1 on host-1")
    assert report["checks"][0]["details"]["config"] == "/home/user-1/.config/sipdiag/config.toml"
    assert report["correlation"]["call_ids"] == ["0b7b1f1e-dvmKdtQ8f"]
    assert report["correlation"]["user_agent"] == original["correlation"]["user_agent"]
    assert "Call-ID: 0b7b1f1e-dvmKdtQ8f" in files["sip.log"]
    contact = re.search(
        r"^Contact: <sip:user-1@(ip-private-\d+):40000;ob>$", files["sip.log"], re.M
    )
    assert contact, files["sip.log"]
    assert contact.group(1) in report["host"]["interfaces"][0]["addresses"]  # the same token
    assert "host-1" in files["report.html"] and "agent on vm" not in files["report.html"]

    schema = cli_process("schema")
    jsonschema.validate(report, schema.json)
    redacted = tmp_path / "redacted.json"
    redacted.write_text(files["report.json"])
    rendered = cli_process("report", str(redacted))
    assert rendered.code == 0, rendered.err
    assert "user-1" in rendered.out
