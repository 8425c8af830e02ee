"""audio.browser-mic: does the agent's browser let the WebRTC softphone's site use the mic?

Read from the browsers' own profile files, without launching them: Chrome/Chromium/Edge keep
per-site content settings in each profile's `Preferences` JSON, Firefox in `permissions.sqlite`
(moz_perms) plus `prefs.js` for the default. A blocked site cannot get a microphone however
healthy the audio devices are, and the softphone's console then rejects offered calls.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any
from urllib.parse import urlsplit

from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped

ALLOW, BLOCK, ASK = "allowed", "blocked", "ask"
# Chromium's ContentSetting values (components/content_settings/core/common/content_settings.h)
_CHROMIUM_SETTING = {1: ALLOW, 2: BLOCK, 3: ASK}
# Firefox's nsIPermissionManager: ALLOW_ACTION 1, DENY_ACTION 2, else prompt;
# permissions.default.microphone: 0 ask, 1 allow, 2 block.
_FIREFOX_SETTING = {1: ALLOW, 2: BLOCK}
_FIREFOX_DEFAULT = {0: ASK, 1: ALLOW, 2: BLOCK}
_FIREFOX_EXPIRE_TIME = 2  # expireType: 0 never, 1 session, 2 at expireTime (ms since epoch)
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_PROFILES = 50  # a machine with more is a build farm, not an agent's desk


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        return cls(scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme) == self.port
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")


@dataclass(frozen=True)
class Root:
    browser: str  # "Chrome", "Chromium", "Edge", "Firefox"
    path: Path  # Chromium: the user data dir; Firefox: the Profiles dir


def profile_roots(platform: str, environ: Mapping[str, str]) -> list[Root]:
    """Where each browser keeps its profiles on ``platform`` (sys.platform), from the user's
    HOME / LOCALAPPDATA / APPDATA as ``environ`` names them (a pure function)."""
    home = environ.get("HOME") or environ.get("USERPROFILE") or ""
    if platform.startswith("win"):
        local = environ.get("LOCALAPPDATA") or str(PureWindowsPath(home, "AppData", "Local"))
        roaming = environ.get("APPDATA") or str(PureWindowsPath(home, "AppData", "Roaming"))
        return [
            Root("Chrome", Path(local, "Google", "Chrome", "User Data")),
            Root("Chromium", Path(local, "Chromium", "User Data")),
            Root("Edge", Path(local, "Microsoft", "Edge", "User Data")),
            Root("Firefox", Path(roaming, "Mozilla", "Firefox", "Profiles")),
        ]
    if platform == "darwin":
        support = Path(home, "Library", "Application Support")
        return [
            Root("Chrome", support / "Google" / "Chrome"),
            Root("Chromium", support / "Chromium"),
            Root("Edge", support / "Microsoft Edge"),
            Root("Firefox", support / "Firefox" / "Profiles"),
        ]
    config = Path(environ.get("XDG_CONFIG_HOME") or Path(home, ".config"))
    return [
        Root("Chrome", config / "google-chrome"),
        Root("Chromium", config / "chromium"),
        Root("Chromium", Path(home, "snap", "chromium", "common", "chromium")),
        Root("Edge", config / "microsoft-edge"),
        Root("Firefox", Path(home, ".mozilla", "firefox")),
        Root("Firefox", Path(home, "snap", "firefox", "common", ".mozilla", "firefox")),
    ]


# ---- Chromium: Preferences JSON


_PATTERN = re.compile(
    r"^(?:(?P<scheme>[a-z*][a-z0-9+.*-]*)://)?(?P<wild>\[\*\.\])?(?P<host>[^:/\[\]]+|\[[^\]]+\])"
    r"(?::(?P<port>\d+|\*))?(?:/.*)?$"
)


def chromium_pattern_matches(pattern: str, origin: Origin) -> int | None:
    """How specifically a content-settings primary pattern (``https://host:443``,
    ``[*.]example.com``, ``*``) matches ``origin``: a rank (higher wins) or None."""
    if pattern == "*":
        return 0
    m = _PATTERN.match(pattern.strip().lower())
    if m is None:
        return None
    host, scheme, port = m.group("host"), m.group("scheme"), m.group("port")
    if host == "*":
        host_rank = 0
    elif m.group("wild"):
        if origin.host != host and not origin.host.endswith("." + host):
            return None
        host_rank = 1
    elif host.strip("[]") == origin.host.strip("[]"):
        host_rank = 2
    else:
        return None
    if scheme not in (None, "*") and scheme != origin.scheme:
        return None
    if port not in (None, "*") and int(port) != origin.port:
        return None
    return host_rank * 4 + (scheme not in (None, "*")) * 2 + (port not in (None, "*"))


def _chromium_profiles(root: Path) -> Iterator[tuple[str, Path]]:
    """(profile name, Preferences path): Default, Profile 1, ... (names from Local State)."""
    names: dict[str, str] = {}
    try:
        state = json.loads((root / "Local State").read_text(encoding="utf-8"))
        cache = state.get("profile", {}).get("info_cache", {})
        names = {d: str(v.get("name") or d) for d, v in cache.items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        pass
    for directory in sorted(root.iterdir()):
        prefs = directory / "Preferences"
        if directory.is_dir() and prefs.is_file():
            label = names.get(directory.name)
            yield (
                (
                    f"{directory.name} ({label})"
                    if label and label != directory.name
                    else directory.name
                ),
                prefs,
            )


def chromium_verdict(prefs: Mapping[str, Any], origin: Origin) -> dict[str, Any]:
    """The microphone setting for ``origin`` from one profile's Preferences, and where it is."""
    raw = prefs.get("profile")
    profile: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    exceptions = (profile.get("content_settings") or {}).get("exceptions") or {}
    mic = exceptions.get("media_stream_mic") or {}
    best: tuple[int, str, int] | None = None
    for key, entry in mic.items() if isinstance(mic, dict) else ():
        primary, _, secondary = str(key).partition(",")
        rank = chromium_pattern_matches(primary, origin)
        setting = entry.get("setting") if isinstance(entry, dict) else None
        if rank is None or secondary not in ("", "*") or setting not in _CHROMIUM_SETTING:
            continue
        if best is None or rank > best[0]:
            best = (rank, str(key), int(setting))
    if best is not None:
        _, key, setting = best
        return {
            "setting": _CHROMIUM_SETTING[setting],
            "source": "site",
            "pattern": key,
            "where": f'profile.content_settings.exceptions.media_stream_mic["{key}"].setting '
            f"= {setting}",
        }
    default = (profile.get("default_content_setting_values") or {}).get("media_stream_mic")
    if default in _CHROMIUM_SETTING:
        return {
            "setting": _CHROMIUM_SETTING[int(default)],
            "source": "default",
            "pattern": None,
            "where": f"profile.default_content_setting_values.media_stream_mic = {default}",
        }
    return {"setting": ASK, "source": "built-in default", "pattern": None, "where": None}


def _chromium_fix(browser: str, origin: Origin, verdict: Mapping[str, Any]) -> str:
    scheme = {"Edge": "edge"}.get(browser, "chrome")
    if verdict["source"] == "site":
        return (
            f"open {scheme}://settings/content/microphone, remove {origin} (pattern "
            f"'{verdict['pattern'].partition(',')[0]}') from 'Not allowed to use your "
            "microphone', or allow it there"
        )
    return (
        f"open {scheme}://settings/content/microphone and choose 'Sites can ask to use your "
        f"microphone', or add {origin} under 'Allowed to use your microphone'"
    )


# ---- Firefox: permissions.sqlite + prefs.js


def _firefox_profiles(root: Path) -> Iterator[tuple[str, Path]]:
    for directory in sorted(root.iterdir()):
        if directory.is_dir() and (
            (directory / "permissions.sqlite").is_file() or (directory / "prefs.js").is_file()
        ):
            yield directory.name, directory


def _read_copy(db: Path) -> list[tuple[str, int, int, int]]:
    """moz_perms microphone rows from a copy of the database (with its WAL): a running Firefox
    holds it open, and reading the copy never locks or changes the agent's profile."""
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="sipdiag-ff-") as tmp:
        for suffix in ("", "-wal"):
            src = Path(f"{db}{suffix}")
            if src.is_file():
                shutil.copyfile(src, Path(tmp, "permissions.sqlite" + suffix))
        con = sqlite3.connect(f"file:{Path(tmp, 'permissions.sqlite')}?mode=ro", uri=True)
        try:
            return [
                (str(o), int(p), int(e or 0), int(t or 0))
                for o, p, e, t in con.execute(
                    "SELECT origin, permission, expireType, expireTime FROM moz_perms "
                    "WHERE type = 'microphone'"
                )
            ]
        finally:
            con.close()


def _firefox_origin_key(origin: str) -> tuple[str, str, int] | None:
    """moz_perms origins are ``scheme://host[:port]`` with optional ^attributes (containers)."""
    try:
        parsed = Origin.parse(origin.partition("^")[0])
    except (KeyError, ValueError):
        return None
    return parsed.scheme, parsed.host, parsed.port


def firefox_default(prefs_js: str) -> int | None:
    m = re.search(r'user_pref\("permissions\.default\.microphone",\s*(\d+)\);', prefs_js)
    return int(m.group(1)) if m else None


def firefox_verdict(
    rows: list[tuple[str, int, int, int]], default: int | None, origin: Origin, now_ms: int
) -> dict[str, Any]:
    want = (origin.scheme, origin.host, origin.port)
    for stored, permission, expire_type, expire_time in rows:
        if _firefox_origin_key(stored) != want or stored.partition("^")[2]:
            continue  # container/private-browsing entries (^attributes) are not the default tab
        if expire_type == _FIREFOX_EXPIRE_TIME and expire_time and expire_time < now_ms:
            continue
        if permission in _FIREFOX_SETTING:
            return {
                "setting": _FIREFOX_SETTING[permission],
                "source": "site",
                "pattern": stored,
                "where": f"permissions.sqlite moz_perms origin '{stored}' type 'microphone' "
                f"permission = {permission}",
            }
    if default in _FIREFOX_DEFAULT:
        return {
            "setting": _FIREFOX_DEFAULT[default],
            "source": "default",
            "pattern": None,
            "where": f"prefs.js permissions.default.microphone = {default}",
        }
    return {"setting": ASK, "source": "built-in default", "pattern": None, "where": None}


def _firefox_fix(origin: Origin, verdict: Mapping[str, Any]) -> str:
    if verdict["source"] == "site":
        return (
            "open about:preferences#privacy, Permissions > Microphone > Settings..., and remove "
            f"{origin} (or set it to Allow)"
        )
    return (
        "open about:preferences#privacy, Permissions > Microphone > Settings..., and untick "
        f"'Block new requests asking to access your microphone', or allow {origin} there"
    )


# ---- the check


def browser_profiles(origin: Origin, roots: list[Root], now_ms: int) -> list[dict[str, Any]]:
    """Every profile under ``roots`` with its microphone verdict for ``origin``."""
    import sqlite3  # only with --softphone-url: not loaded by every run

    found: list[dict[str, Any]] = []
    for root in roots:
        if not root.path.is_dir():
            continue
        try:
            if root.browser == "Firefox":
                profiles = list(_firefox_profiles(root.path))
            else:
                profiles = list(_chromium_profiles(root.path))
        except OSError:
            continue
        for name, path in profiles[:MAX_PROFILES]:
            entry: dict[str, Any] = {"browser": root.browser, "profile": name, "path": str(path)}
            try:
                if root.browser == "Firefox":
                    db = path / "permissions.sqlite"
                    rows = _read_copy(db) if db.is_file() else []
                    prefs = path / "prefs.js"
                    text = prefs.read_text(errors="replace") if prefs.is_file() else ""
                    verdict = firefox_verdict(rows, firefox_default(text), origin, now_ms)
                    entry["fix"] = _firefox_fix(origin, verdict)
                else:
                    prefs_json = json.loads(path.read_text(encoding="utf-8"))
                    if not isinstance(prefs_json, dict):
                        raise ValueError("Preferences is not a JSON object")
                    verdict = chromium_verdict(prefs_json, origin)
                    entry["fix"] = _chromium_fix(root.browser, origin, verdict)
            except (OSError, ValueError, sqlite3.Error) as exc:
                entry.update(setting=None, error=f"{type(exc).__name__}: {exc}")
                found.append(entry)
                continue
            entry.update(verdict)
            found.append(entry)
    return found


def check_browser_mic(ctx: Context) -> CheckResult:
    url = ctx.settings.softphone_url
    assert url is not None  # `requires=("softphone_url",)`
    origin = Origin.parse(url)
    roots = profile_roots(sys.platform, ctx.environ)
    now_ms = int(time.time() * 1000)
    profiles = browser_profiles(origin, roots, now_ms)
    details: dict[str, Any] = {
        "origin": str(origin),
        "profiles": profiles,
        "searched": [str(r.path) for r in roots],
    }
    readable = [p for p in profiles if p.get("setting")]
    if not readable:
        unreadable = f" ({len(profiles)} unreadable)" if profiles else ""
        return skipped(
            f"no Chrome, Chromium, Edge or Firefox profile found{unreadable}",
            "run sipdiag as the agent's own user, on the machine where they use the softphone",
            **details,
        )
    text = "; ".join(
        f"{p['browser']} '{p['profile']}': {p['setting']}"
        + (f" ({p['source']})" if p["source"] != "site" else "")
        for p in readable
    )
    blocked = [p for p in readable if p["setting"] == BLOCK]
    if blocked:
        b = blocked[0]
        return failed(
            f"the microphone is blocked for {origin}: {text}",
            f"in {b['browser']} profile '{b['profile']}' ({b['path']}): {b['fix']} [{b['where']}]",
            **details,
        )
    return passed(f"microphone for {origin}: {text}", **details)
