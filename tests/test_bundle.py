"""`sipdiag bundle` and the run's SIP trace, after a real REGISTER to Kamailio with a password."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli_process
from peers.kamailio import Kamailio

from diag.scrub import Redactor, scrub_sip

PASSWORD = "alice-secret"


def _registered_run(kamailio: Kamailio, data: Path) -> tuple[CliResult, Path]:
    r = cli_process(
        "check",
        "--registrar",
        kamailio.registrar_uri("udp"),
        "--user",
        "alice",
        "--only",
        "sip.register",
        "--only",
        "host",
        "--format",
        "json",
        env={"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(data)},
    )
    register = next(c for c in r.json["checks"] if c["id"] == "sip.register")
    assert register["status"] == "pass", register
    saved = next(data.glob("sipdiag/reports/sipdiag-*.json"))
    return r, saved


def _unzip(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name).decode("utf-8") for name in zf.namelist()}


def _digest_responses(text: str) -> list[str]:
    return re.findall(r'response="?([0-9a-f]{32,64})', text)


@pytest.fixture(scope="module")
def run(kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = tmp_path_factory.mktemp("data")
    _, saved = _registered_run(kamailio, data)
    return data, saved


def test_the_sip_trace_is_saved_next_to_the_report_with_credentials_scrubbed(
    run: tuple[Path, Path],
) -> None:
    _, saved = run
    trace = saved.with_suffix(".sip.log")
    text = trace.read_text()
    assert "REGISTER sip:" in text and "SIP/2.0 401" in text and "SIP/2.0 200" in text
    assert "Authorization: [scrubbed]" in text  # the answered challenge was sent, then scrubbed
    assert PASSWORD not in text and not _digest_responses(text)
    assert trace.stat().st_mode & 0o077 == 0  # owner-only: it names the account
    assert not list(saved.parent.glob(".*.part"))


def test_bundle_holds_report_html_trace_and_manifest_and_no_secret(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, saved = run
    out = tmp_path / "ticket.zip"
    # No password in this shell: the trace must already have been scrubbed when written.
    r = cli_process("bundle", "--out", str(out), env={"XDG_DATA_HOME": str(data)})
    assert r.code == 0, r.err
    assert f"sipdiag: bundle written to {out}" in r.err
    files = _unzip(out)
    assert sorted(files) == ["manifest.json", "report.html", "report.json", "sip.log"]
    report = json.loads(files["report.json"])
    assert report["run_id"] == json.loads(saved.read_text())["run_id"]
    # sip.register and the host checks passed against the loopback testbed: nothing to find.
    assert report["findings"] == [], report["findings"]
    assert "<p class='no-findings'>No problems found.</p>" in files["report.html"]
    assert "<section class='finding" not in files["report.html"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["redacted"] is False and manifest["run_id"] == report["run_id"]
    for entry in manifest["files"]:
        body = files[entry["name"]].encode()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["name"]
    for name, text in files.items():
        assert PASSWORD not in text, name
        assert not _digest_responses(text), name
        assert not re.search(r"^(proxy-)?authorization:(?! \[scrubbed\])", text, re.I | re.M)


def _identifying_values(report: dict[str, Any], trace: str) -> set[str]:
    values = {report["host"]["hostname"], report["host"]["user"]}
    corr = report["correlation"]
    for iface in report["host"]["interfaces"]:
        values.update(iface["addresses"])
    values.update(corr["local_addresses"] + corr["public_addresses"])
    # Every address the trace mentions (Via, Contact, received=, the registrar's).
    for candidate in re.findall(r"\d{1,3}(?:\.\d{1,3}){3}", trace):
        ipaddress.ip_address(candidate)
        values.add(candidate)
    return {v.split("%")[0] for v in values if v}


def test_redacted_bundle_keeps_no_hostname_user_or_address_and_tokens_agree(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, saved = run
    report = json.loads(saved.read_text())
    trace = saved.with_suffix(".sip.log").read_text()
    values = _identifying_values(report, trace)
    assert "127.0.0.1" in values  # Kamailio's address is in the trace
    out = tmp_path / "redacted.zip"
    r = cli_process("bundle", str(saved), "--out", str(out), "--redact")
    assert r.code == 0, r.err
    files = _unzip(out)
    for name, text in files.items():
        for value in values:
            # Whole tokens: a random branch or tag may hold the letters of a short host name.
            token = rf"(?<![\w-]){re.escape(value)}(?![\w-])"
            assert not re.search(token, text, re.IGNORECASE), f"{value!r} survived in {name}"
    redacted = json.loads(files["report.json"])
    registrar_token = redacted["target"]["registrar"].split(":")[1]
    assert registrar_token.startswith("ip-loopback-")
    assert f"{registrar_token}:" in files["sip.log"]  # the same token in the trace
    assert redacted["host"]["hostname"] == "host-1" and redacted["host"]["user"] == "user-1"
    assert json.loads(files["manifest.json"])["redacted"] is True


def test_scrub_removes_folded_credentials_by_structure_and_leaves_other_text() -> None:
    raw = (
        "REGISTER sip:pbx SIP/2.0\r\n"
        'Authorization: Digest username="alice",\r\n'
        ' response="0123456789abcdef0123456789abcdef"\r\n'
        "proxy-authorization:Digest x\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1\r\n"
        "X-Note: hunter2\r\n"
    )
    out = scrub_sip(raw)
    # By structure only: a text search for the password would also hit ports and extensions
    # that happen to equal it, and so reveal it (tests/test_bundle_hardening.py).
    assert out.splitlines() == [
        "REGISTER sip:pbx SIP/2.0",
        "Authorization: [scrubbed]",
        "proxy-authorization: [scrubbed]",
        "Via: SIP/2.0/UDP 10.0.0.1",
        "X-Note: hunter2",
    ]


def test_redactor_gives_the_same_token_to_the_same_value_and_leaves_times_alone() -> None:
    r = Redactor(["pc7.corp.example", "pc7"], ["alice"])
    one = r.redact("from 10.1.2.3 and 8.8.4.4 at 2026-11-27T04:08:02.123Z on PC7 (/home/alice)")
    two = r.redact("Via: SIP/2.0/UDP 10.1.2.3:5060;received=8.8.4.4 [fe80::1%eth0]:5 ::1")
    assert (
        one
        == "from ip-private-1 and ip-public-1 at 2026-11-27T04:08:02.123Z on host-2 (/home/user-1)"
    )
    assert (
        two
        == "Via: SIP/2.0/UDP ip-private-1:5060;received=ip-public-1 [ip-private-2]:5 ip-loopback-1"
    )
    assert (
        r.redact("pc7.corp.example aa:bb:cc:dd:ee:ff 2.15.1") == "host-1 aa:bb:cc:dd:ee:ff 2.15.1"
    )
