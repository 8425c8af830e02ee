"""audio.input and audio.output: open the chosen device, capture a window / write a buffer.

Callback streams, so every wait has a timeout inside the check's deadline (a blocking read in
native code could not be interrupted). The device comes from checks.audio.device_or_skip.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from checks.audio import describe, device_or_skip
from diag.context import Context
from diag.model import CheckResult, failed, passed, warned

SILENT_RMS_DBFS = -70.0  # below a headset's noise floor in a quiet room: muted or dead
DBFS_FLOOR = -120.0  # reported instead of -inf for digital silence (JSON has no -inf)
CLIP_LEVEL = 0.999  # |sample| at or above this (of full scale) counts as clipped
CLIP_WARN_RATIO = 0.01
FALLBACK_RATES = (48000.0, 44100.0, 16000.0, 8000.0)
VOICE_RATE = 16000.0  # wideband voice: what softphones capture (G.722, Opus WB)
# The microphone is read as 16-bit integers, the native format of USB headsets and most codecs
# (float32 from a misbehaving driver can carry values far outside full scale).
INPUT_DTYPE = "int16"
INT16_FULL_SCALE = 32768.0
OUTPUT_DTYPE = "float32"
SILENCE_SECONDS = 0.05  # the buffer written to the output: long enough for a callback or two
TONE_SECONDS, TONE_HZ, TONE_AMPLITUDE = 0.5, 440.0, 0.1  # a quiet (-20 dBFS) half-second beep
STREAM_SLACK_S = 1.0  # beyond the window: stream start-up, the last buffer, closing
DRAIN_SLACK_S = 3.0  # PulseAudio takes ~2.5 s to drain a played buffer


def _open_params(sd: ModuleType, kind: str, device: dict[str, Any]) -> tuple[float, int]:
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
    rate, channels = _open_params(sd, "input", device)
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


def tone(rate: float, channels: int) -> Any:
    """TONE_SECONDS of a quiet sine with 10 ms fades (no clicks), interleaved float32."""
    import numpy as np

    t = np.arange(int(TONE_SECONDS * rate)) / rate
    wave = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)
    fade = min(len(t) // 2, int(0.01 * rate))
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[len(wave) - fade :] *= ramp[::-1]
    return np.repeat(wave.astype(np.float32)[:, None], channels, axis=1).reshape(-1)


def check_output(ctx: Context) -> CheckResult:
    got = device_or_skip(ctx, "output")
    if isinstance(got, CheckResult):
        return got
    sd, device = got
    rate, channels = _open_params(sd, "output", device)
    details: dict[str, Any] = {"device": describe(device), "played_tone": ctx.settings.play_tone}
    if ctx.settings.play_tone:
        payload = tone(rate, channels).tobytes()
    else:
        payload = bytes(4 * channels * int(SILENCE_SECONDS * rate))  # float32 zeros
    position = [0]
    taken = threading.Event()  # the device asked for audio: the stream works
    done = threading.Event()  # the whole payload was handed over

    def on_request(outdata: Any, count: int, _time: Any, _status: Any) -> None:
        chunk = payload[position[0] : position[0] + len(outdata)]
        outdata[: len(chunk)] = chunk
        outdata[len(chunk) :] = bytes(len(outdata) - len(chunk))
        position[0] += len(chunk)
        taken.set()
        if position[0] >= len(payload):
            done.set()

    details.update(samplerate=rate, channels=channels)
    try:
        stream = sd.RawOutputStream(
            device=device["index"],
            samplerate=rate,
            channels=channels,
            dtype=OUTPUT_DTYPE,
            callback=on_request,
        )
    except Exception as exc:  # noqa: BLE001
        return _output_failed(device, str(exc), details)
    try:
        stream.start()
        # Silence only needs the device to take a buffer; a tone must be handed over whole,
        # which on PulseAudio waits for its ~2 s start-up latency.
        budget = (TONE_SECONDS + DRAIN_SLACK_S) if ctx.settings.play_tone else STREAM_SLACK_S
        finished = done if ctx.settings.play_tone else taken
        finished.wait(max(0.0, min(budget, ctx.remaining() - 0.1)))
        if done.is_set() and ctx.settings.play_tone:
            # The tone has been handed over, not yet played: stop() waits until it has been
            # (seconds on PulseAudio; the runner's deadline still bounds this check).
            stream.stop()
    except Exception as exc:  # noqa: BLE001
        return _output_failed(device, str(exc), details)
    finally:
        # abort, not stop, for silence: nothing to hear, so no waiting for the drain.
        stream.abort(ignore_errors=True)
        stream.close(ignore_errors=True)
    if not finished.is_set():
        return _output_failed(
            device, "the stream opened but the device did not take the audio in time", details
        )
    what = (
        "played a quiet 440 Hz tone on" if ctx.settings.play_tone else "opened and wrote silence to"
    )
    return passed(f"{what} '{device['name']}' ({device['hostapi']})", **details)


def _output_failed(device: dict[str, Any], error: str, details: dict[str, Any]) -> CheckResult:
    return failed(
        f"'{device['name']}' cannot be opened for playback: {error}",
        "close other applications that use the speaker or headset exclusively, re-plug it, "
        "then re-run",
        error=error,
        **details,
    )
