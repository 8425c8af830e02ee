"""The sound server's own view of the devices (PulseAudio, or PipeWire's pulse server), Linux.

Through PulseAudio, PortAudio sees one ALSA device ("pulse"/"default") whether or not a
microphone exists behind it, and it reads its device list once per initialisation: a headset
unplugged under a sound server is invisible to it. The server lists its real sources and sinks
(pulsectl, libpulse's client library), so audio.devices and `sipdiag watch` ask it as well.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sound_server(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """{server, sources, sinks, default_source, default_sink} (monitors of sinks are not
    microphones and are left out of ``sources``); None when there is no server to ask (not
    Linux, pulsectl missing, no server running)."""
    if platform.system() != "Linux":
        return None
    try:
        import pulsectl
    except ImportError:
        return None
    server = environ.get("PULSE_SERVER") or None
    try:
        pulse = pulsectl.Pulse("sipdiag", server=server, connect=False)
    except Exception:  # noqa: BLE001 - libpulse missing or broken: nothing to ask
        return None
    try:
        # No `timeout=`: pulsectl then always waits the whole of it (1 s per sample). A hung
        # server is bounded by the check's deadline, as any probe is (diag/runner.py).
        with contextlib.suppress(Exception):
            pulse.connect(autospawn=False)
        if not pulse.connected:
            return None
        info = pulse.server_info()
        sources = [
            s.name for s in pulse.source_list() if getattr(s, "monitor_of_sink_name", None) is None
        ]
        return {
            "server": f"{info.server_name} {info.server_version}",
            "sources": sources,
            "sinks": [s.name for s in pulse.sink_list()],
            "default_source": info.default_source_name or None,
            "default_sink": info.default_sink_name or None,
        }
    except Exception:  # noqa: BLE001 - the server went away mid-question: as if absent
        return None
    finally:
        with contextlib.suppress(Exception):
            pulse.close()


def audio_fingerprint(environ: Mapping[str, str]) -> object | None:
    """What changes when a device comes or goes, read cheaply on Linux: the sound server's
    sources and sinks, /dev/snd, /proc/asound/cards. None elsewhere (then PortAudio is
    restarted every sample)."""
    if platform.system() != "Linux":
        return None
    server = sound_server(environ)
    parts: list[object] = [
        None
        if server is None
        else (tuple(server["sources"]), tuple(server["sinks"]), server["default_source"])
    ]
    for path in ("/dev/snd", "/proc/asound/cards"):
        try:
            parts.append(
                tuple(sorted(os.listdir(path))) if os.path.isdir(path) else Path(path).read_text()
            )
        except OSError:
            parts.append(None)
    return tuple(parts)
