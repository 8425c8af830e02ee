"""audio.permission: the macOS TCC and Windows ConsentStore code paths, with fakes of the OS
boundary (they cannot run on Linux). What is real here: the SQL against a TCC.db built with
macOS's own `access` schema (current and pre-Big Sur), and the registry key/value names;
what is faked: platform.system() and the winreg reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from clihelp import cli, registered
from contexts import make_context

from checks.audio.permission import (
    CONSENT_KEY,
    HKCU,
    HKLM,
    check_permission,
    read_tcc,
    windows_verdict,
)
from diag.context import CheckRun
from diag.diagnosis import diagnose
from diag.model import CheckResult, Status

# macOS 11+ (abridged to the columns that matter plus the key; same names and types).
TCC_SCHEMA = """CREATE TABLE access (service TEXT NOT NULL, client TEXT NOT NULL,
client_type INTEGER NOT NULL, auth_value INTEGER NOT NULL, auth_reason INTEGER NOT NULL,
auth_version INTEGER NOT NULL, PRIMARY KEY (service, client, client_type))"""
TCC_SCHEMA_OLD = """CREATE TABLE access (service TEXT NOT NULL, client TEXT NOT NULL,
client_type INTEGER NOT NULL, allowed INTEGER NOT NULL, prompt_count INTEGER NOT NULL,
PRIMARY KEY (service, client, client_type))"""


def tcc_db(path: Path, rows: list[tuple[str, str, int]], old: bool = False) -> Path:
    with sqlite3.connect(path) as db:
        db.execute(TCC_SCHEMA_OLD if old else TCC_SCHEMA)
        for service, client, value in rows:
            if old:
                db.execute("INSERT INTO access VALUES (?, ?, 0, ?, 1)", (service, client, value))
            else:
                db.execute("INSERT INTO access VALUES (?, ?, 0, ?, 2, 1)", (service, client, value))
    return path


def mac(path: Path, *softphones: str) -> CheckResult:
    return check_permission(
        make_context(softphone_processes=softphones), system=lambda: "Darwin", tcc_path=path
    )


def finding_causes(result: CheckResult) -> list[tuple[str, str]]:
    check = registered("audio.permission")[0]
    return [(f.cause, f.severity.value) for f in diagnose([CheckRun(check, result)])]


def test_macos_denied_microphone_for_the_softphone_is_permission_denied(tmp_path: Path) -> None:
    db = tcc_db(
        tmp_path / "TCC.db",
        [
            ("kTCCServiceMicrophone", "com.zoiper.Zoiper5", 0),
            ("kTCCServiceMicrophone", "com.google.Chrome", 2),
            ("kTCCServiceCamera", "com.zoiper.Zoiper5", 2),
        ],
    )
    result = mac(db, "Zoiper")
    assert result.status is Status.FAIL
    assert result.details["denied"] == ["com.zoiper.Zoiper5"]
    assert result.details["allowed"] == ["com.google.Chrome"]
    assert result.hint == (
        "open System Settings > Privacy & Security > Microphone and turn on "
        "com.zoiper.Zoiper5, then restart the softphone"
    )
    assert finding_causes(result) == [("audio.permission_denied", "critical")]


def test_macos_before_big_sur_uses_the_allowed_column(tmp_path: Path) -> None:
    db = tcc_db(tmp_path / "TCC.db", [("kTCCServiceMicrophone", "com.google.Chrome", 0)], old=True)
    assert read_tcc(db) == [("com.google.Chrome", False)]
    assert mac(db, "chrome").status is Status.FAIL


def test_macos_allowed_softphone_passes(tmp_path: Path) -> None:
    db = tcc_db(tmp_path / "TCC.db", [("kTCCServiceMicrophone", "com.zoiper.Zoiper5", 2)])
    result = mac(db, "zoiper")
    assert result.status is Status.PASS
    assert finding_causes(result) == []


def test_macos_denials_with_no_softphone_named_warn(tmp_path: Path) -> None:
    db = tcc_db(tmp_path / "TCC.db", [("kTCCServiceMicrophone", "us.zoom.xos", 0)])
    result = mac(db)
    assert result.status is Status.WARN
    assert "us.zoom.xos" in result.summary
    assert finding_causes(result) == [("audio.permission_denied", "warning")]


def test_macos_unreadable_tcc_database_skips_with_the_full_disk_access_hint(
    tmp_path: Path,
) -> None:
    db = tmp_path / "TCC.db"
    db.write_bytes(b"not a database" * 100)  # what the OS hands back is no SQLite file either
    result = mac(db, "zoiper")
    assert result.status is Status.SKIP
    assert "Full Disk Access" in (result.hint or "")


def test_macos_without_a_tcc_database_passes(tmp_path: Path) -> None:
    assert mac(tmp_path / "missing.db", "zoiper").status is Status.PASS


class FakeRegistry:
    """The winreg boundary: {(hive, key): {"Value": ..., "subkeys": [...]}}."""

    def __init__(self, keys: dict[tuple[str, str], dict[str, object]]) -> None:
        self.keys = keys

    def value(self, hive: str, key: str, name: str) -> str | None:
        v = self.keys.get((hive, key), {}).get(name)
        return v if isinstance(v, str) else None

    def subkeys(self, hive: str, key: str) -> list[str]:
        sub = self.keys.get((hive, key), {}).get("subkeys", [])
        return list(sub) if isinstance(sub, list) else []


NONPACKAGED = CONSENT_KEY + r"\NonPackaged"


@pytest.mark.parametrize(
    ("hive", "key", "switch"),
    [
        (HKLM, CONSENT_KEY, "Microphone access (for this device)"),
        (HKCU, CONSENT_KEY, "Let apps access your microphone"),
        (HKCU, NONPACKAGED, "Let desktop apps access your microphone"),
    ],
)
def test_windows_switches_off_are_permission_denied_naming_the_setting(
    hive: str, key: str, switch: str
) -> None:
    reg = FakeRegistry({(hive, key): {"Value": "Deny"}})
    result = windows_verdict(reg, ["zoiper"])
    assert result.status is Status.FAIL
    assert switch in (result.hint or "")
    assert (result.hint or "").startswith("open Settings > Privacy & security > Microphone")
    assert finding_causes(result) == [("audio.permission_denied", "critical")]


def test_windows_per_app_denial_of_the_softphone_fails() -> None:
    reg = FakeRegistry(
        {
            (HKCU, CONSENT_KEY): {"Value": "Allow", "subkeys": ["NonPackaged", "Teams_8wekyb"]},
            (HKCU, CONSENT_KEY + r"\Teams_8wekyb"): {"Value": "Deny"},
            (HKCU, NONPACKAGED): {"Value": "Allow", "subkeys": ["C:#Apps#Zoiper#Zoiper.exe"]},
            (HKCU, NONPACKAGED + r"\C:#Apps#Zoiper#Zoiper.exe"): {"Value": "Allow"},
        }
    )
    assert windows_verdict(reg, ["zoiper"]).status is Status.PASS
    denied = windows_verdict(reg, ["teams"])
    assert denied.status is Status.FAIL
    assert denied.details["denied"] == ["Teams_8wekyb"]


def test_windows_everything_allowed_passes() -> None:
    reg = FakeRegistry({(HKLM, CONSENT_KEY): {"Value": "Allow"}})
    result = windows_verdict(reg, ["zoiper"])
    assert result.status is Status.PASS
    assert result.details["switches_off"] == [] and result.details["denied"] == []


def test_on_linux_the_permission_check_skips() -> None:
    r = cli("check", "--only", "audio.permission", "--format", "json",
            registry=registered("audio.permission"))  # fmt: skip
    (check,) = r.json["checks"]
    assert check["id"] == "audio.permission"
    assert check["status"] == "skip"
    assert check["summary"] == "Linux has no OS microphone privacy setting"
    assert r.code == 0
