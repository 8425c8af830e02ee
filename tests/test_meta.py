"""Keeps the registry, the cause vocabulary, the schema, the tests and the README in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clihelp import cli_process, registered
from contexts import make_context

from checks import REGISTRY
from checks.host.proxy import check_proxy
from diag.causes import CAUSES
from diag.report import schema
from diag.runner import RECORD_ENV, run_checks

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# Fixed by the foundation issue: tooling relies on exactly these IDs existing.
VOCABULARY = """
audio.backend_unavailable audio.no_input_device audio.no_output_device audio.input_unavailable
audio.input_silent audio.permission_denied host.softphone_not_running host.vpn_active
host.clock_skew network.dns_failure network.registrar_unreachable network.udp_blocked
network.tcp_blocked network.tls_blocked network.tls_untrusted network.sip_alg
network.udp_fragmentation network.stun_unreachable network.nat_restrictive network.media_blocked
network.poor_quality sip.binding_replaced sip.credentials_rejected sip.forbidden sip.not_found
sip.server_error sip.transport_not_offered
number.invalid number.not_permitted number.identity_mismatch
network.wss_blocked
audio.output_unavailable
sip.not_registered sip.extra_bindings sip.binding_unroutable
network.inbound_blocked network.nat_binding_short
""".split()


def test_check_ids_are_unique_stable_and_titled() -> None:
    ids = [c.id for c in REGISTRY]
    assert len(ids) == len(set(ids))
    for c in REGISTRY:
        assert re.fullmatch(r"(audio|host|net|sip|number)\.[a-z0-9][a-z0-9_.-]*", c.id), c.id
        assert c.title and c.title[0].isupper(), c.id


def test_the_checks_a_test_runs_are_recorded_however_it_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check has a test: conftest fails a full run in which some registered check never ran
    to a pass, warn or fail. This pins the record it counts: one line per check run, through the
    runner in-process, in a `python -m diag` child, or by calling the check's function."""
    record = tmp_path / "ran.txt"
    monkeypatch.setenv(RECORD_ENV, str(record))
    in_process = run_checks(registered("host.os"), make_context(), 5).runs[0].result
    called = check_proxy(make_context())
    child = cli_process(
        "check", "--only", "host.os", "--format", "json", env={"XDG_DATA_HOME": str(tmp_path)}
    )
    assert record.read_text().splitlines() == [
        f"host.os {in_process.status.value}",
        f"host.proxy {called.status.value}",
        f"host.os {child.check('host.os')['status']}",
    ]


def test_every_check_has_a_row_in_the_readme_table() -> None:
    for c in REGISTRY:
        assert re.search(rf"^\| `{re.escape(c.id)}` \| {re.escape(c.title)} \|", README, re.M), c.id


def test_the_cause_vocabulary_is_exactly_the_fixed_set() -> None:
    assert sorted(CAUSES) == sorted(VOCABULARY)


def test_every_cause_is_documented_in_the_readme_with_its_family() -> None:
    for cause in CAUSES.values():
        row = rf"^\| `{re.escape(cause.id)}` \| `{cause.family.value}` \| .+ \| .+ \|$"
        assert re.search(row, README, re.M), cause.id


def test_the_schema_enumerates_the_cause_vocabulary() -> None:
    enum = schema()["properties"]["findings"]["items"]["properties"]["cause"]["enum"]
    assert sorted(enum) == sorted(CAUSES)


def test_every_exit_code_is_in_the_readme() -> None:
    from diag.errors import ExitCode

    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \| `{code.name}` \|", README, re.M), code
