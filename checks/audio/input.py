"""audio.input: open the chosen microphone and capture a window; levels, clipping, silence.

Callback streams, so every wait has a timeout inside the check's deadline (a blocking read in
native code could not be interrupted). The device comes from checks.audio.devices.device_or_skip.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from checks.audio.devices import INPUT_DTYPE, STREAM_SLACK_S, describe, device_or_skip, open_params
from diag.context import Context
from diag.model import CheckResult, failed, passed, warned

SILENT_RMS_DBFS = -70.0  # below a headset's noise floor in a quiet room: muted or dead
DBFS_FLOOR = -120.0  # reported instead of -inf for digital silence (JSON has no -inf)
CLIP_LEVEL = 0.999  # |sample| at or above this (of full scale) counts as clipped
CLIP_WARN_RATIO = 0.01


INT16_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class Levels:
    rms_dbfs: float
    peak_dbfs: float
    clipping_ratio: float
    digital_silence: bool


def dbfs(amplitude: float) -> float:
    """Relative to full scale (1.0); a full-scale sine has RMS -3.0 dBFS on this scale."""
    return round(max(DBFS_FLOOR, 20 * math.log10(amplitude)) if amplitude > 0 else DBFS_FLOOR, 1)


def levels(samples: Any) -> Levels:
    """RMS and peak in dBFS and the clipped fraction of samples scaled to [-1, 1]."""
    import numpy as np

    x = np.abs(np.asarray(samples, dtype=np.float64))
    if x.size == 0:
        return Levels(DBFS_FLOOR, DBFS_FLOOR, 0.0, True)
    peak = float(x.max())
    return Levels(
        rms_dbfs=dbfs(float(np.sqrt(np.mean(x * x)))),
        peak_dbfs=dbfs(peak),
        clipping_ratio=round(float(np.mean(x >= CLIP_LEVEL)), 4),
        digital_silence=peak == 0.0,
    )


def check_input(ctx: Context) -> CheckResult:
    got = device_or_skip(ctx, "input")
    if isinstance(got, CheckResult):
        return got
    sd, device = got
    rate, channels = open_params(sd, "input", device)
    base: dict[str, Any] = {"device": describe(device)}
    # The window shrinks to fit the run's budget rather than overrunning it.
    window = min(ctx.settings.capture_seconds, max(0.1, ctx.remaining() - STREAM_SLACK_S))
    wanted_frames = max(1, int(window * rate))
    chunks: list[bytes] = []
    frames = [0]
    overflows = [0]
    full = threading.Event()

    def on_audio(indata: Any, count: int, _time: Any, status: Any) -> None:
        if status.input_overflow:
            overflows[0] += 1
        if frames[0] < wanted_frames:
            chunks.append(bytes(indata))
            frames[0] += count
            if frames[0] >= wanted_frames:
                full.set()

    base.update(samplerate=rate, channels=channels, window_s=round(window, 3))
    t0 = time.monotonic()
    try:
        stream = sd.RawInputStream(
            device=device["index"],
            samplerate=rate,
            channels=channels,
            dtype=INPUT_DTYPE,
            callback=on_audio,
        )
    except Exception as exc:  # noqa: BLE001 - busy, exclusive, invalid: PortAudio says which
        return _unavailable(device, str(exc), base)
    try:
        stream.start()
        import numpy as np  # imported while the window runs, not before it

        full.wait(max(0.0, min(window + STREAM_SLACK_S, ctx.remaining() - 0.1)))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(device, str(exc), base)
    finally:
        stream.abort(ignore_errors=True)
        stream.close(ignore_errors=True)
    base.update(
        captured_s=round(frames[0] / rate, 3),
        elapsed_s=round(time.monotonic() - t0, 3),
        overflows=overflows[0],
    )
    if frames[0] < wanted_frames:
        return _unavailable(
            device,
            f"the stream opened but delivered {frames[0]} of {wanted_frames} frames in time",
            base,
        )
    raw = np.frombuffer(b"".join(chunks), dtype=np.int16)[: wanted_frames * channels]
    samples = raw / INT16_FULL_SCALE
    lv = levels(samples)
    base.update(
        rms_dbfs=lv.rms_dbfs,
        peak_dbfs=lv.peak_dbfs,
        clipping_ratio=lv.clipping_ratio,
        digital_silence=lv.digital_silence,
        # What the levels are judged against, for the report's level meter.
        thresholds={
            "silent_rms_dbfs": SILENT_RMS_DBFS,
            "clip_dbfs": round(20 * math.log10(CLIP_LEVEL), 2),
            "clip_warn_ratio": CLIP_WARN_RATIO,
        },
    )
    measured = f"RMS {lv.rms_dbfs:.1f} dBFS, peak {lv.peak_dbfs:.1f} dBFS over {window:g} s"
    name = device["name"]
    if lv.digital_silence or lv.rms_dbfs < SILENT_RMS_DBFS:
        kind = "digital silence (all zeros)" if lv.digital_silence else "near silence"
        return warned(
            f"'{name}' records {kind}: {measured}",
            f"unmute the headset and raise the input level of '{name}' in the OS sound "
            "settings, or select the right microphone (--input-device)",
            problem="silent",
            **base,
        )
    if lv.clipping_ratio > CLIP_WARN_RATIO:
        return warned(
            f"'{name}' clips: {lv.clipping_ratio:.1%} of samples at full scale; {measured}",
            f"lower the input level of '{name}' in the OS sound settings",
            problem="clipping",
            **base,
        )
    return passed(f"'{name}' records sound: {measured}", problem=None, **base)


def _unavailable(device: dict[str, Any], error: str, details: dict[str, Any]) -> CheckResult:
    return failed(
        f"'{device['name']}' cannot be opened for recording: {error}",
        "close other applications that use the microphone (exclusive mode), re-plug the "
        "headset, then re-run",
        problem="unavailable",
        error=error,
        **details,
    )
