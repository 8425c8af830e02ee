"""audio.backend: PortAudio loads (sounddevice) and offers a host API.

sounddevice loads PortAudio and enumerates the devices once, when it is first imported, and the
enumeration holds for the life of the process; so it is imported here, inside the checks, where a
missing library becomes `audio.backend_unavailable` instead of breaking the run. PortAudio's API
is not thread-safe: the registry runs the audio checks one after another (Check.after).
"""

from __future__ import annotations

import platform
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from diag.context import Context
from diag.model import CheckResult, Status, failed, passed, skipped

BACKEND_MARGIN_S = 0.2  # left of audio.backend's deadline to report a hang ourselves
# PortAudio's Linux build reaches PulseAudio/PipeWire/JACK through ALSA plugins, whose pcm
# names show which server answered when PortAudio enumerated.
ALSA_SERVER_PCMS = {"pulse": "PulseAudio", "pipewire": "PipeWire", "jack": "JACK"}


class BackendUnavailable(Exception):
    """PortAudio (or the sounddevice binding) cannot be loaded in this process."""


def load_sounddevice() -> ModuleType:
    try:
        import sounddevice
    except Exception as exc:  # noqa: BLE001 - OSError (no library), ImportError, PortAudioError
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return sounddevice


def install_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Linux":
        return (
            "install PortAudio: `sudo apt install libportaudio2` (Debian/Ubuntu), "
            "`sudo dnf install portaudio` (Fedora) or `sudo pacman -S portaudio` (Arch), "
            "then re-run"
        )
    # The sounddevice wheels for macOS and Windows bundle PortAudio: a failure means a broken
    # install, or no audio service.
    service = "Windows Audio service" if system == "Windows" else "CoreAudio (coreaudiod)"
    return (
        f"reinstall sipdiag (`pip install --force-reinstall sounddevice`) and check the {service}"
    )


@dataclass(frozen=True)
class Inventory:
    """What PortAudio enumerated: host APIs, devices and its default input/output."""

    portaudio: str
    hostapis: list[str]
    devices: list[dict[str, Any]]
    default_input: int | None
    default_output: int | None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.devices if d[f"max_{kind}_channels"] > 0]


def inventory(sd: ModuleType) -> Inventory:
    hostapis = [h["name"] for h in sd.query_hostapis()]
    devices = [
        {
            "index": int(d["index"]),
            "name": str(d["name"]),
            "hostapi": hostapis[d["hostapi"]],
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
        }
        for d in sd.query_devices()
    ]
    default_in, default_out = (int(i) for i in sd.default.device)
    return Inventory(
        portaudio=str(sd.get_portaudio_version()[1]),
        hostapis=hostapis,
        devices=devices,
        default_input=default_in if default_in >= 0 else None,
        default_output=default_out if default_out >= 0 else None,
    )


def backend_or_skip(ctx: Context) -> tuple[ModuleType, Inventory] | CheckResult:
    backend = ctx.results.get("audio.backend")
    if backend is not None and backend.status is not Status.PASS:
        # Failed, or hung inside PortAudio's initialisation (which holds the import lock):
        # importing again would only wait for the same hang.
        return skipped(f"PortAudio is not available ({backend.summary}); see audio.backend")
    try:
        sd = load_sounddevice()
        return sd, inventory(sd)
    except BackendUnavailable as exc:
        return skipped(f"PortAudio is not available ({exc}); see audio.backend", install_hint())


def restart_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Windows":
        return (
            "restart the Windows Audio service (services.msc > Windows Audio > Restart), "
            "then re-run"
        )
    if system == "Darwin":
        return "restart CoreAudio (`sudo killall coreaudiod`), then re-run"
    return (
        "restart the sound server (`systemctl --user restart pipewire pipewire-pulse`, or "
        "`pulseaudio -k`), then re-run"
    )


def check_backend(ctx: Context) -> CheckResult:
    # PortAudio enumerates devices while it loads; a sound server that accepts the connection
    # but never answers makes that hang in native code, so it runs on its own thread.
    box: list[ModuleType | BackendUnavailable] = []

    def load() -> None:
        try:
            box.append(load_sounddevice())
        except BackendUnavailable as exc:
            box.append(exc)

    loader = threading.Thread(target=load, name="portaudio-init", daemon=True)
    loader.start()
    waited = max(0.0, ctx.remaining() - BACKEND_MARGIN_S)
    loader.join(waited)
    if not box:
        return failed(
            f"PortAudio did not finish loading within {waited:.1f} s: the sound server does "
            "not answer",
            restart_hint(),
            problem="hung",
            hostapis=[],
        )
    if isinstance(box[0], BackendUnavailable):
        exc = box[0]
        return failed(
            f"PortAudio cannot be loaded: {exc}",
            install_hint(),
            problem="not_loaded",
            error=str(exc),
            hostapis=[],
        )
    inv = inventory(box[0])
    if not inv.hostapis:
        return failed(
            f"{inv.portaudio} loaded but offers no audio host API",
            "install or start the OS audio service (PulseAudio/PipeWire, CoreAudio, Windows "
            "Audio) and re-run",
            problem="no_hostapi",
            portaudio=inv.portaudio,
            hostapis=[],
        )
    servers = sound_servers(inv)
    via = f"; sound server via ALSA: {', '.join(servers)}" if servers else ""
    return passed(
        f"{inv.portaudio}; host APIs: {', '.join(inv.hostapis)}{via}",
        portaudio=inv.portaudio,
        hostapis=inv.hostapis,
        sound_servers=servers,
    )


def sound_servers(inv: Inventory) -> list[str]:
    names = {d["name"].lower() for d in inv.devices if d["hostapi"] == "ALSA"}
    return [label for pcm, label in ALSA_SERVER_PCMS.items() if pcm in names]
