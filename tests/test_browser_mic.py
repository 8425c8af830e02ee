"""audio.browser-mic: profiles written by a real headless Chromium (its own settings page, driven
through the DevTools protocol) and a Firefox permissions.sqlite made with Firefox's schema."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli, registered
from peers.chromium import Chromium
from peers.process import PeerStartError

from checks.audio.browser_mic import (
    Origin,
    chromium_pattern_matches,
    firefox_verdict,
    profile_roots,
)

PLATFORM = "https://platform.example"

# Firefox's own schema (PermissionManager::CreateTable; user_version = HOSTS_SCHEMA_VERSION 12).
FIREFOX_SCHEMA = """
PRAGMA user_version = 12;
CREATE TABLE moz_perms ( id INTEGER PRIMARY KEY,origin TEXT,type TEXT,permission INTEGER,expireType INTEGER,expireTime INTEGER,modificationTime INTEGER);
CREATE TABLE moz_hosts ( id INTEGER PRIMARY KEY,host TEXT,type TEXT,permission INTEGER,expireType INTEGER,expireTime INTEGER,modificationTime INTEGER,isInBrowserElement INTEGER);
"""  # noqa: E501 - Firefox's statements, verbatim


def mic_check(home: Path, url: str = PLATFORM) -> CliResult:
    return cli(
        "check",
        "--softphone-url",
        url,
        "--format",
        "json",
        environ={"HOME": str(home), "XDG_DATA_HOME": str(home / "data")},
        registry=registered("audio.browser-mic"),
    )


def check_of(r: CliResult) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in r.json["checks"] if c["id"] == "audio.browser-mic")
    return found


@pytest.fixture
def chromium_home(tmp_path: Path) -> Iterator[tuple[Path, Chromium]]:
    """A HOME whose ~/.config/chromium is a fresh profile of a running headless Chromium."""
    home = tmp_path / "home"
    try:
        browser = Chromium.start(home / ".config" / "chromium", tmp_path)
    except (PeerStartError, OSError) as exc:
        pytest.fail(f"chromium could not start: {exc}", pytrace=False)
    try:
        yield home, browser
    finally:
        browser.close()


def test_a_site_blocked_in_chromium_is_permission_denied_naming_the_setting(
    chromium_home: tuple[Path, Chromium],
) -> None:
    home, browser = chromium_home
    browser.set_microphone(PLATFORM, "block")
    browser.set_microphone("https://other.example:8443", "allow")
    browser.close()  # Chromium writes its Preferences on the way out
    saved = browser.preferences()["profile"]["content_settings"]["exceptions"]
    assert saved["media_stream_mic"]["https://platform.example:443,*"]["setting"] == 2

    r = mic_check(home)
    check = check_of(r)
    assert check["status"] == "fail", check
    profile = check["details"]["profiles"][0]
    # The profile directory, with the name Chromium shows for it (from its Local State).
    assert (profile["browser"], profile["profile"], profile["setting"]) == (
        "Chromium",
        "Default (Your Chromium)",
        "blocked",
    )
    assert [f["cause"] for f in r.json["findings"]] == ["audio.permission_denied"]
    action = r.json["findings"][0]["action"]
    assert "Chromium profile 'Default (Your Chromium)'" in action
    assert "chrome://settings/content/microphone" in action
    assert 'media_stream_mic["https://platform.example:443,*"].setting = 2' in action
    assert r.code == 1

    allowed = check_of(mic_check(home, "https://other.example:8443"))
    assert allowed["status"] == "pass"
    assert allowed["details"]["profiles"][0]["setting"] == "allowed"
    unknown = check_of(mic_check(home, "https://elsewhere.example"))
    assert unknown["details"]["profiles"][0]["setting"] == "ask"
    assert unknown["details"]["profiles"][0]["source"] == "built-in default"


def test_a_chromium_default_of_block_blocks_sites_without_an_exception(
    chromium_home: tuple[Path, Chromium],
) -> None:
    home, browser = chromium_home
    browser.set_default_microphone("block")
    browser.set_microphone("https://allowed.example", "allow")
    browser.close()
    check = check_of(mic_check(home))
    assert check["status"] == "fail"
    profile = check["details"]["profiles"][0]
    assert (profile["setting"], profile["source"]) == ("blocked", "default")
    assert profile["where"] == "profile.default_content_setting_values.media_stream_mic = 2"
    assert "Sites can ask to use your microphone" in check["hint"]
    assert check_of(mic_check(home, "https://allowed.example"))["status"] == "pass"


def firefox_profile(home: Path, rows: list[tuple[str, int, int, int]], prefs: str = "") -> Path:
    profile = home / ".mozilla" / "firefox" / "abcd1234.default-release"
    profile.mkdir(parents=True)
    con = sqlite3.connect(profile / "permissions.sqlite")
    con.executescript(FIREFOX_SCHEMA)
    now = int(time.time() * 1000)
    con.executemany(
        "INSERT INTO moz_perms (origin, type, permission, expireType, expireTime, "
        "modificationTime) VALUES (?, ?, ?, ?, ?, ?)",
        [(o, "microphone", p, e, t, now) for o, p, e, t in rows]
        + [("https://platform.example", "camera", 1, 0, 0, now)],
    )
    con.commit()
    con.close()
    (profile / "prefs.js").write_text(prefs)
    return profile


def test_a_site_denied_in_firefox_is_permission_denied(tmp_path: Path) -> None:
    profile = firefox_profile(tmp_path, [("https://platform.example", 2, 0, 0)])
    r = mic_check(tmp_path)
    check = check_of(r)
    assert check["status"] == "fail"
    entry = check["details"]["profiles"][0]
    assert (entry["browser"], entry["profile"], entry["path"]) == (
        "Firefox",
        "abcd1234.default-release",
        str(profile),
    )
    assert [f["cause"] for f in r.json["findings"]] == ["audio.permission_denied"]
    action = r.json["findings"][0]["action"]
    assert "about:preferences#privacy" in action
    assert "moz_perms origin 'https://platform.example' type 'microphone' permission = 2" in action


def test_firefox_allow_expired_entries_and_the_default_pref(tmp_path: Path) -> None:
    past = int(time.time() * 1000) - 60_000
    firefox_profile(
        tmp_path,
        [("https://platform.example", 1, 0, 0), ("https://expired.example", 2, 2, past)],
        'user_pref("permissions.default.microphone", 2);\n',
    )
    assert check_of(mic_check(tmp_path))["status"] == "pass"
    expired = check_of(mic_check(tmp_path, "https://expired.example"))
    assert expired["details"]["profiles"][0]["source"] == "default"  # the expired deny is ignored
    assert expired["status"] == "fail"  # ... and the default blocks
    assert "Block new requests" in expired["hint"]


def test_no_browser_profile_skips_and_no_url_skips(tmp_path: Path) -> None:
    check = check_of(mic_check(tmp_path))
    assert check["status"] == "skip"
    assert check["summary"] == "no Chrome, Chromium, Edge or Firefox profile found"
    r = cli("check", "--format", "json", environ={}, registry=registered("audio.browser-mic"))
    assert check_of(r)["summary"] == "no softphone URL configured"


# ---- pure logic: paths on other systems and Chromium's site patterns


def test_profile_paths_on_windows_and_macos() -> None:
    win = profile_roots(
        "win32",
        {"LOCALAPPDATA": r"C:\Users\a\AppData\Local", "APPDATA": r"C:\Users\a\AppData\Roaming"},
    )
    assert [(r.browser, str(r.path)) for r in win] == [
        ("Chrome", str(Path(r"C:\Users\a\AppData\Local", "Google", "Chrome", "User Data"))),
        ("Chromium", str(Path(r"C:\Users\a\AppData\Local", "Chromium", "User Data"))),
        ("Edge", str(Path(r"C:\Users\a\AppData\Local", "Microsoft", "Edge", "User Data"))),
        ("Firefox", str(Path(r"C:\Users\a\AppData\Roaming", "Mozilla", "Firefox", "Profiles"))),
    ]
    mac = profile_roots("darwin", {"HOME": "/Users/a"})
    support = "/Users/a/Library/Application Support"
    assert [str(r.path) for r in mac] == [
        f"{support}/Google/Chrome",
        f"{support}/Chromium",
        f"{support}/Microsoft Edge",
        f"{support}/Firefox/Profiles",
    ]


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("https://platform.example:443", True),
        ("https://platform.example:8443", False),
        ("http://platform.example:443", False),
        ("[*.]example", True),
        ("[*.]platform.example", True),
        ("[*.]other.example", False),
        ("*", True),
    ],
)
def test_chromium_site_patterns(pattern: str, matches: bool) -> None:
    origin = Origin.parse("https://platform.example")
    assert (chromium_pattern_matches(pattern, origin) is not None) is matches


def test_firefox_container_entries_are_not_the_default_tab() -> None:
    rows = [("https://platform.example^userContextId=2", 2, 0, 0)]
    verdict = firefox_verdict(rows, None, Origin.parse(PLATFORM), 0)
    assert verdict["setting"] == "ask"
