"""audio.permission: does the OS privacy setting let the softphone use the microphone?

macOS keeps the answer in the user's TCC database (service kTCCServiceMicrophone); Windows in the
registry's CapabilityAccessManager ConsentStore. Neither exists on Linux, so the OS boundary is
a small reader each (`read_tcc`, `WindowsRegistry`) that tests replace with fakes.
"""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped, warned

TCC_DB = "~/Library/Application Support/com.apple.TCC/TCC.db"
TCC_SERVICE = "kTCCServiceMicrophone"
MACOS_SETTING = "System Settings > Privacy & Security > Microphone"
CONSENT_KEY = (
    r"Software\Microsoft\Windows\CurrentVersion\CapabilityAccessManager\ConsentStore\microphone"
)
WINDOWS_SETTING = "Settings > Privacy & security > Microphone"
HKLM, HKCU = "HKLM", "HKCU"


class TccUnreadable(Exception):
    """The TCC database could not be read (macOS needs Full Disk Access for that)."""


def read_tcc(path: Path) -> list[tuple[str, bool]]:
    """(client, allowed) for every microphone entry. macOS 11+ has `auth_value` (0 denied,
    2 allowed, 3 limited); older releases an `allowed` column (0/1)."""
    import sqlite3  # macOS only: not loaded by every run

    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(access)")}
            value = "auth_value" if "auth_value" in columns else "allowed"
            rows = db.execute(
                f"SELECT client, {value} FROM access WHERE service = ?", (TCC_SERVICE,)
            ).fetchall()
    except sqlite3.Error as exc:
        raise TccUnreadable(str(exc)) from exc
    return [(str(client), int(v) != 0) for client, v in rows]


def _related(wanted: Sequence[str], client: str) -> bool:
    """TCC names apps by bundle id (com.zoiper.Zoiper5) or path; match a softphone name in it."""
    lowered = client.lower()
    return any(w.lower().removesuffix(".exe") in lowered for w in wanted if w.strip())


def macos_verdict(rows: Sequence[tuple[str, bool]], wanted: Sequence[str]) -> CheckResult:
    denied = [c for c, allowed in rows if not allowed]
    details: dict[str, Any] = {
        "os": "Darwin",
        "source": "TCC.db kTCCServiceMicrophone",
        "denied": denied,
        "allowed": [c for c, allowed in rows if allowed],
    }
    return _verdict(denied, wanted, details, MACOS_SETTING, "turn on")


class Registry(Protocol):
    def value(self, hive: str, key: str, name: str) -> str | None: ...

    def subkeys(self, hive: str, key: str) -> list[str]: ...


def _winreg() -> Any:  # pragma: no cover - Windows only; typed Any so mypy on Linux accepts it
    return importlib.import_module("winreg")


class WindowsRegistry:  # pragma: no cover - winreg exists on Windows only
    def _open(self, hive: str, key: str) -> Any:
        winreg = _winreg()

        root = winreg.HKEY_LOCAL_MACHINE if hive == HKLM else winreg.HKEY_CURRENT_USER
        return winreg.OpenKey(root, key)

    def value(self, hive: str, key: str, name: str) -> str | None:
        winreg = _winreg()

        try:
            with self._open(hive, key) as k:
                return str(winreg.QueryValueEx(k, name)[0])
        except OSError:
            return None

    def subkeys(self, hive: str, key: str) -> list[str]:
        winreg = _winreg()

        names: list[str] = []
        try:
            with self._open(hive, key) as k:
                while True:
                    names.append(winreg.EnumKey(k, len(names)))
        except OSError:
            return names


def windows_verdict(reg: Registry, wanted: Sequence[str]) -> CheckResult:
    """The three switches in Settings (device-wide, all apps, desktop apps), then per-app
    consent (Store apps by package name; desktop apps by path with '#' for '\\')."""
    switches = (
        (HKLM, CONSENT_KEY, "Microphone access (for this device)"),
        (HKCU, CONSENT_KEY, "Microphone access / Let apps access your microphone"),
        (HKCU, CONSENT_KEY + r"\NonPackaged", "Let desktop apps access your microphone"),
    )
    off = [label for hive, key, label in switches if reg.value(hive, key, "Value") == "Deny"]
    denied = [
        app.replace("#", "\\")
        for base in (CONSENT_KEY, CONSENT_KEY + r"\NonPackaged")
        for app in reg.subkeys(HKCU, base)
        if app != "NonPackaged" and reg.value(HKCU, rf"{base}\{app}", "Value") == "Deny"
    ]
    details: dict[str, Any] = {
        "os": "Windows",
        "source": r"HKLM/HKCU\\" + CONSENT_KEY,
        "switches_off": off,
        "denied": denied,
    }
    if off:
        return failed(
            f"microphone access is switched off in Windows: {'; '.join(off)}",
            f"open {WINDOWS_SETTING} and turn on: {'; '.join(off)}",
            **details,
        )
    return _verdict(denied, wanted, details, WINDOWS_SETTING, "allow")


def _verdict(
    denied: list[str], wanted: Sequence[str], details: dict[str, Any], setting: str, verb: str
) -> CheckResult:
    ours = [c for c in denied if _related(wanted, c)]
    if ours:
        return failed(
            f"microphone access is denied to the softphone: {', '.join(ours)}",
            f"open {setting} and {verb} {', '.join(ours)}, then restart the softphone",
            **details,
        )
    if denied and not wanted:
        return warned(
            f"microphone access is denied to: {', '.join(denied)}",
            f"if the softphone is one of them, open {setting} and {verb} it "
            "(--softphone-process names it, so sipdiag can tell)",
            **details,
        )
    return passed(
        "the OS privacy settings do not deny the microphone"
        + (f" to {', '.join(wanted)}" if wanted else ""),
        **details,
    )


def check_permission(
    ctx: Context,
    system: Callable[[], str] = platform.system,
    tcc_path: Path | None = None,
    registry: Registry | None = None,
) -> CheckResult:
    os_name = system()
    wanted = ctx.settings.softphone_processes
    if os_name == "Darwin":
        path = tcc_path or Path(os.path.expanduser(TCC_DB))
        try:
            return macos_verdict(read_tcc(path), wanted)
        except TccUnreadable as exc:
            return skipped(
                f"cannot read the microphone privacy database ({exc})",
                "give the terminal that runs sipdiag Full Disk Access, or check "
                f"{MACOS_SETTING} by hand",
                os=os_name,
            )
    if os_name == "Windows":
        return windows_verdict(registry or WindowsRegistry(), wanted)
    return skipped(f"{os_name} has no OS microphone privacy setting", os=os_name)
