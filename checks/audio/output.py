"""audio.output: the speaker opens and plays (silence, or a quiet tone with --play-tone)."""

from __future__ import annotations

import threading
from typing import Any

from checks.audio.devices import OUTPUT_DTYPE, STREAM_SLACK_S, describe, device_or_skip, open_params
from diag.context import Context
from diag.model import CheckResult, failed, passed

SILENCE_SECONDS = 0.05  # the buffer written to the output: long enough for a callback or two
DRAIN_SLACK_S = 3.0  # PulseAudio takes ~2.5 s to drain a played buffer
TONE_SECONDS, TONE_HZ, TONE_AMPLITUDE = 0.5, 440.0, 0.1  # a quiet (-20 dBFS) half-second beep


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
    rate, channels = open_params(sd, "output", device)
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
    return passed(f"{what} '{device['name']}' ({device['hostapi']})", problem=None, **details)


def _output_failed(device: dict[str, Any], error: str, details: dict[str, Any]) -> CheckResult:
    return failed(
        f"'{device['name']}' cannot be opened for playback: {error}",
        "close other applications that use the speaker or headset exclusively, re-plug it, "
        "then re-run",
        problem="unavailable",
        error=error,
        **details,
    )
