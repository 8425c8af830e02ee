"""audio.devices: an input and an output device exist (and match --input-device/--output-device)."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from checks.audio.backend import Inventory, backend_or_skip
from checks.audio.server import sound_server
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped

FALLBACK_RATES = (48000.0, 44100.0, 16000.0, 8000.0)
VOICE_RATE = 16000.0  # wideband voice: what softphones capture (G.722, Opus WB)
# The microphone is read as 16-bit integers, the native format of USB headsets and most codecs
# (float32 from a misbehaving driver can carry values far outside full scale).
INPUT_DTYPE = "int16"
OUTPUT_DTYPE = "float32"
STREAM_SLACK_S = 1.0  # beyond the window: stream start-up, the last buffer, closing


def choose_device(inv: Inventory, kind: str, wanted: str | None) -> dict[str, Any] | None:
    """The device the softphone would use: the first whose name contains `wanted`
    (case-insensitive), else PortAudio's default, else the first device of that kind."""
    candidates = inv.of_kind(kind)
    if wanted:
        return next((d for d in candidates if wanted.lower() in d["name"].lower()), None)
    default = inv.default_input if kind == "input" else inv.default_output
    chosen = next((d for d in candidates if d["index"] == default), None)
    return chosen or (candidates[0] if candidates else None)


def describe(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if d is None else {"index": d["index"], "name": d["name"], "hostapi": d["hostapi"]}


def _names(devices: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"'{d['name']}'" for d in devices) or "none"


def check_devices(ctx: Context) -> CheckResult:
    loaded = backend_or_skip(ctx)
    if isinstance(loaded, CheckResult):
        return loaded
    _, inv = loaded
    s = ctx.settings
    problems: list[str] = []
    lines: list[str] = []
    hints: list[str] = []
    actions: dict[str, str] = {}  # per cause: each finding names only its own next step
    chosen: dict[str, dict[str, Any] | None] = {}
    for kind, wanted, thing in (
        ("input", s.input_device, "microphone"),
        ("output", s.output_device, "speaker"),
    ):
        present = inv.of_kind(kind)
        chosen[kind] = choose_device(inv, kind, wanted)
        if not present:
            problems.append(f"no_{kind}")
            lines.append(f"no {kind} device")
            hints.append(f"connect a headset or {thing} (no {kind} device is present)")
            actions[f"audio.no_{kind}_device"] = hints[-1]
        elif chosen[kind] is None:
            problems.append(f"{kind}_not_found")
            lines.append(
                f"{kind} device '{wanted}' not found (headset unplugged?); "
                f"{kind}s present: {_names(present)}"
            )
            hints.append(
                f"plug in the headset that contains '{wanted}' in its name, or set "
                f"--{kind}-device to one of {_names(present)}"
            )
            actions[f"audio.no_{kind}_device"] = hints[-1]
        else:
            lines.append(f"{kind}: '{chosen[kind]['name']}' ({chosen[kind]['hostapi']})")  # type: ignore[index]
    server = sound_server(ctx.environ)
    for kind, key, thing in (("input", "sources", "microphone"), ("output", "sinks", "speaker")):
        # PortAudio's "pulse" device exists with nothing behind it: the server's list decides.
        if server is not None and not server[key] and f"no_{kind}" not in problems:
            problems.append(f"no_{kind}")
            lines.append(f"the sound server ({server['server']}) has no {thing} ({key}: none)")
            hints.append(f"connect a headset or {thing} (the sound server lists no {kind})")
            actions[f"audio.no_{kind}_device"] = hints[-1]
    details = {
        "hostapis": inv.hostapis,
        "devices": inv.devices,
        "default_input": describe(
            next((d for d in inv.devices if d["index"] == inv.default_input), None)
        ),
        "default_output": describe(
            next((d for d in inv.devices if d["index"] == inv.default_output), None)
        ),
        "input_device": describe(chosen["input"]),
        "output_device": describe(chosen["output"]),
        "sound_server": server,
        "problems": problems,
        "actions": actions,
    }
    if problems:
        return failed("; ".join(lines), "; ".join(hints), **details)
    return passed("; ".join(lines), **details)


def device_or_skip(ctx: Context, kind: str) -> tuple[ModuleType, dict[str, Any]] | CheckResult:
    loaded = backend_or_skip(ctx)
    if isinstance(loaded, CheckResult):
        return loaded
    sd, inv = loaded
    wanted = ctx.settings.input_device if kind == "input" else ctx.settings.output_device
    device = choose_device(inv, kind, wanted)
    if device is None:
        what = (
            f"the configured {kind} device '{wanted}' is not present"
            if wanted
            else f"no {kind} device"
        )
        return skipped(f"{what}; see audio.devices")
    return sd, device


def open_params(sd: ModuleType, kind: str, device: dict[str, Any]) -> tuple[float, int]:
    """A (samplerate, channels) the device accepts, preferring mono and, for the microphone,
    16 kHz, else the device's default rate. When nothing passes PortAudio's format probe, its
    default rate in mono: opening the stream then fails with the error that matters."""
    rates: tuple[float, ...]
    if kind == "input":
        check, dtype = sd.check_input_settings, INPUT_DTYPE
        rates = (VOICE_RATE, device["default_samplerate"], *FALLBACK_RATES)
    else:
        check, dtype = sd.check_output_settings, OUTPUT_DTYPE
        rates = (device["default_samplerate"], *FALLBACK_RATES)
    most = device[f"max_{kind}_channels"]
    for rate in dict.fromkeys(rates):
        for channels in dict.fromkeys((1, min(2, most))):
            try:
                check(device=device["index"], channels=channels, samplerate=rate, dtype=dtype)
                return rate, channels
            except Exception:  # noqa: BLE001 - PortAudioError/ValueError: try the next
                continue
    return device["default_samplerate"], 1
