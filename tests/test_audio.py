"""Audio checks against real PortAudio: PulseAudio null sink/source, ALSA-only configs, no library.

PortAudio enumerates devices once per process, so every audio environment runs sipdiag in its own
process (cli_process) with HOME (which `.asoundrc` ALSA reads) and PULSE_* pointing at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import CliResult, cli_process
from peers.pulse import SINK, Pulse

from checks.audio.backend import Inventory
from checks.audio.devices import choose_device
from checks.audio.input import DBFS_FLOOR, dbfs, levels

TONE_RATE = 48000
TONE_AMPLITUDE = 0.3  # RMS 0.3/sqrt(2) -> -13.5 dBFS, peak -10.5 dBFS
AUDIO_IDS = ("audio.backend", "audio.devices", "audio.input", "audio.output")

# One output, zero inputs (tests/README.md §Audio): PortAudio never lists the stock `null` pcm.
ASOUNDRC_PLAYBACK_ONLY = """\
pcm.!default {
    type asym
    playback.pcm "null"
}
"""
# A capture pcm that PortAudio lists but cannot open: the pulse plugin connects the stream
# only when the device is prepared, and this source does not exist.
ASOUNDRC_BROKEN_MIC = """\
pcm.brokenmic {
    type pulse
    device "sipdiag_no_such_source"
}
"""

# The same for playback: PortAudio lists the speaker, opening it fails (no such sink).
ASOUNDRC_BROKEN_SPEAKER = """\
pcm.brokenspeaker {
    type pulse
    device "sipdiag_no_such_sink"
}
"""

# An ALSA-only virtual microphone that plays back a file (tests/README.md §Audio): no kernel
# module, no server. The file plugin hands the raw bytes over in the format and rate the app
# opened, so the file is written as audio.input opens a microphone: 16-bit mono at 16 kHz.
ASOUNDRC_FILE_MIC = """\
pcm.nulldev {{
    type null
}}
pcm.filemic {{
    type file
    slave.pcm "nulldev"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.!default {{
    type asym
    playback.pcm "nulldev"
    capture.pcm "filemic"
}}
"""


def no_server_env(home: Path) -> dict[str, str]:
    """A headless machine: no audio server reachable, ALSA reads only HOME's config."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "client.conf").write_text("autospawn = no\n")
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_RUNTIME_DIR": str(home),
        "PULSE_SERVER": f"unix:{home}/no-such-pulse-socket",
        "PULSE_CLIENTCONFIG": str(home / "client.conf"),
    }


def run_audio(env: dict[str, str], *args: str, only: tuple[str, ...] = ("audio",)) -> CliResult:
    selection = [a for o in only for a in ("--only", o)]
    return cli_process("check", *selection, "--format", "json", *args, env=env)


def by_id(result: CliResult) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in result.json["checks"]}


def findings(result: CliResult) -> dict[str, dict[str, Any]]:
    return {f["cause"]: f for f in result.json["findings"]}


def test_a_headless_machine_without_audio_server_reports_missing_devices_and_exits_1(
    tmp_path: Path,
) -> None:
    r = run_audio(no_server_env(tmp_path / "home"))
    assert r.code == 1, r.err
    checks = by_id(r)
    assert checks["audio.backend"]["status"] == "pass"
    assert "ALSA" in checks["audio.backend"]["details"]["hostapis"]
    assert checks["audio.backend"]["details"]["sound_servers"] == []
    assert checks["audio.devices"]["status"] == "fail"
    assert checks["audio.devices"]["details"]["devices"] == []
    assert checks["audio.input"]["status"] == "skip"
    assert checks["audio.output"]["status"] == "skip"
    found = findings(r)
    assert set(found) == {"audio.no_input_device", "audio.no_output_device"}
    assert "connect a headset or microphone" in found["audio.no_input_device"]["action"]
    assert "connect a headset or speaker" in found["audio.no_output_device"]["action"]
    assert all(f["severity"] == "critical" for f in found.values())
    assert r.json == r.saved_report()


@pytest.fixture
def pulse_env(pulse: Pulse, tmp_path: Path) -> dict[str, str]:
    return {**pulse.env, "XDG_DATA_HOME": str(tmp_path / "data")}


def test_with_pulseaudio_devices_are_listed_and_silence_is_input_silent(
    pulse_env: dict[str, str],
) -> None:
    r = run_audio(pulse_env)
    assert r.code == 0, r.err  # a warning only: the run passes
    checks = by_id(r)
    names = {d["name"] for d in checks["audio.devices"]["details"]["devices"]}
    assert {"pulse", "default"} <= names
    assert checks["audio.backend"]["details"]["sound_servers"] == ["PulseAudio"]
    assert checks["audio.devices"]["details"]["default_input"]["name"] == "default"
    assert checks["audio.output"]["status"] == "pass", checks["audio.output"]
    mic = checks["audio.input"]
    assert mic["status"] == "warn"
    assert mic["details"]["digital_silence"] is True
    assert mic["details"]["rms_dbfs"] == DBFS_FLOOR
    # Real time: PulseAudio paces the capture (ALSA-only file devices would not).
    assert mic["details"]["captured_s"] >= 1.0
    assert mic["details"]["elapsed_s"] >= 0.95
    found = findings(r)
    assert set(found) == {"audio.input_silent"}
    assert found["audio.input_silent"]["severity"] == "warning"
    assert "unmute the headset" in found["audio.input_silent"]["action"]
    assert "digital silence" in found["audio.input_silent"]["explanation"]


class MonitorRecorder:
    """parec on the null sink's monitor, read by a thread, so a test can wait until PulseAudio
    really delivers (its monitor streams start with a latency of up to ~2 s)."""

    def __init__(self, pulse: Pulse) -> None:
        self.data = bytearray()
        self.proc = subprocess.Popen(
            ["parec", f"--device={SINK}.monitor", "--format=s16le", f"--rate={TONE_RATE}"]
            + ["--channels=1", "--latency-msec=20"],
            env=pulse.env,
            stdout=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 4096):
            self.data += chunk

    def peak(self, start: int = 0) -> float:
        import numpy as np

        end = len(self.data) // 2 * 2
        samples = np.frombuffer(bytes(self.data[start:end]), dtype="<i2")
        return float(np.abs(samples.astype(np.float64)).max(initial=0.0)) / 32768

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(f"parec: {what} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        self.reader.join(5)


@pytest.fixture
def monitor(pulse: Pulse) -> Iterator[MonitorRecorder]:
    recorder = MonitorRecorder(pulse)
    try:
        recorder.wait_for(lambda: len(recorder.data) > 0, "the monitor delivers audio")
        yield recorder
    finally:
        recorder.stop()


@pytest.fixture
def tone_into_sink(pulse: Pulse, tmp_path: Path, monitor: MonitorRecorder) -> Iterator[None]:
    """A 440 Hz tone playing into the null sink, and already arriving at its monitor."""
    import numpy as np

    raw = tmp_path / "tone.raw"
    t = np.arange(TONE_RATE * 30) / TONE_RATE
    (TONE_AMPLITUDE * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tofile(raw)
    player = subprocess.Popen(
        ["pacat", "-p", f"--device={SINK}", "--format=s16le", f"--rate={TONE_RATE}"]
        + ["--channels=1", str(raw)],
        env=pulse.env,
        stderr=subprocess.PIPE,
    )
    try:
        monitor.wait_for(lambda: monitor.peak() > 0.25, "the tone reaches the monitor")
        yield
    finally:
        player.terminate()
        player.wait(5)


@pytest.mark.usefixtures("tone_into_sink")
def test_a_tone_played_into_the_sink_is_captured_from_its_monitor_at_its_level(
    pulse_env: dict[str, str],
) -> None:
    r = run_audio({**pulse_env, "PULSE_SOURCE": f"{SINK}.monitor"}, only=("audio.input",))
    assert r.code == 0, r.err
    mic = by_id(r)["audio.input"]
    assert mic["status"] == "pass", mic
    assert mic["details"]["rms_dbfs"] == pytest.approx(-13.5, abs=1.0)
    assert mic["details"]["peak_dbfs"] == pytest.approx(-10.5, abs=1.0)
    assert mic["details"]["clipping_ratio"] == 0
    assert r.json["findings"] == []


def test_play_tone_is_heard_on_the_sink_monitor(
    monitor: MonitorRecorder, pulse_env: dict[str, str]
) -> None:
    before = len(monitor.data)
    r = run_audio(pulse_env, "--play-tone", only=("audio.output",))
    assert r.code == 0, r.err
    out = by_id(r)["audio.output"]
    assert out["status"] == "pass" and out["details"]["played_tone"] is True
    assert "quiet 440 Hz tone" in out["summary"]
    # The -20 dBFS tone (peak 0.1 of full scale) arrives at the sink.
    monitor.wait_for(lambda: monitor.peak(before) > 0.05, "the played tone is heard")
    assert monitor.peak(before) < 0.2  # and it is quiet


def test_silence_is_written_without_a_sound_by_default(
    monitor: MonitorRecorder, pulse_env: dict[str, str]
) -> None:
    before = len(monitor.data)
    r = run_audio(pulse_env, only=("audio.output",))
    assert by_id(r)["audio.output"]["status"] == "pass"
    assert "wrote silence" in by_id(r)["audio.output"]["summary"]
    time.sleep(2.5)  # what PulseAudio would still have buffered
    assert len(monitor.data) - before > TONE_RATE * 2  # the monitor kept recording
    assert monitor.peak(before) == 0.0


def test_a_named_headset_that_is_absent_is_no_input_device_naming_the_present_ones(
    pulse_env: dict[str, str],
) -> None:
    r = run_audio(pulse_env, "--input-device", "Jabra Evolve")
    assert r.code == 1
    checks = by_id(r)
    devices = checks["audio.devices"]
    assert devices["status"] == "fail"
    assert devices["details"]["problems"] == ["input_not_found"]
    assert "'Jabra Evolve' not found (headset unplugged?)" in devices["summary"]
    assert "'pulse'" in devices["summary"] and "'default'" in devices["summary"]
    assert checks["audio.input"]["status"] == "skip"
    assert checks["audio.output"]["status"] == "pass"
    assert set(findings(r)) == {"audio.no_input_device"}


def test_input_and_output_device_substrings_choose_the_device(
    pulse_env: dict[str, str],
) -> None:
    r = run_audio(pulse_env, "--input-device", "PULSE", "--output-device", "puls")
    checks = by_id(r)
    assert checks["audio.devices"]["details"]["input_device"]["name"] == "pulse"
    assert checks["audio.input"]["details"]["device"]["name"] == "pulse"
    assert checks["audio.output"]["details"]["device"]["name"] == "pulse"


def test_alsa_with_playback_only_is_no_input_device_and_no_crash(tmp_path: Path) -> None:
    env = no_server_env(tmp_path / "home")
    (tmp_path / "home" / ".asoundrc").write_text(ASOUNDRC_PLAYBACK_ONLY)
    r = run_audio(env)
    assert r.code == 1, r.err
    checks = by_id(r)
    assert [d["name"] for d in checks["audio.devices"]["details"]["devices"]] == ["default"]
    assert checks["audio.devices"]["details"]["problems"] == ["no_input"]
    assert checks["audio.input"]["status"] == "skip"
    assert checks["audio.output"]["status"] == "pass"
    assert set(findings(r)) == {"audio.no_input_device"}
    assert "Traceback" not in r.err


def test_an_alsa_file_microphone_with_a_tone_passes_at_the_tone_level(tmp_path: Path) -> None:
    import numpy as np

    env = no_server_env(tmp_path / "home")
    infile = tmp_path / "home" / "tone440_16k_s16le.raw"
    t = np.arange(32000) / 16000
    (TONE_AMPLITUDE * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tofile(infile)
    (tmp_path / "home" / ".asoundrc").write_text(ASOUNDRC_FILE_MIC.format(infile=infile))
    r = run_audio(env)
    assert r.code == 0, r.err
    checks = by_id(r)
    assert {"filemic", "default"} <= {
        d["name"] for d in checks["audio.devices"]["details"]["devices"]
    }
    mic = checks["audio.input"]
    assert mic["status"] == "pass", mic
    assert (mic["details"]["samplerate"], mic["details"]["channels"]) == (16000, 1)
    assert mic["details"]["rms_dbfs"] == pytest.approx(-13.5, abs=0.5)
    assert mic["details"]["peak_dbfs"] == pytest.approx(-10.5, abs=0.5)
    assert r.json["findings"] == []


def test_a_device_that_fails_to_open_is_input_unavailable_with_the_error_text(
    pulse: Pulse, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC_BROKEN_MIC)
    env = {**pulse.env, "HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "data")}
    r = run_audio(env, "--input-device", "brokenmic")
    assert r.code == 1
    mic = by_id(r)["audio.input"]
    assert mic["status"] == "fail"
    assert mic["details"]["problem"] == "unavailable"
    # PortAudio's own text. Its host-error detail ('Input/output error' [ALSA error -5]) is
    # process-global in PortAudio and not always filled in, so only the stable part is pinned.
    error = mic["details"]["error"]
    assert error.startswith("Error opening RawInputStream: Unanticipated host error"), error
    found = findings(r)
    assert set(found) == {"audio.input_unavailable"}
    assert "Error opening RawInputStream" in found["audio.input_unavailable"]["explanation"]
    assert "close other applications" in found["audio.input_unavailable"]["action"]


def test_a_speaker_that_fails_to_open_is_output_unavailable_with_the_error_text(
    pulse: Pulse, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC_BROKEN_SPEAKER)
    env = {**pulse.env, "HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "data")}
    r = run_audio(env, "--output-device", "brokenspeaker")
    assert r.code == 1
    checks = by_id(r)
    assert checks["audio.devices"]["details"]["output_device"]["name"] == "brokenspeaker"
    speaker = checks["audio.output"]
    assert speaker["status"] == "fail"
    assert speaker["details"]["problem"] == "unavailable"
    error = speaker["details"]["error"]
    assert error.startswith("Error opening RawOutputStream: Unanticipated host error"), error
    found = findings(r)
    assert "audio.output_unavailable" in found, found
    assert found["audio.output_unavailable"]["severity"] == "critical"
    assert "Error opening RawOutputStream" in found["audio.output_unavailable"]["explanation"]
    assert "close other applications" in found["audio.output_unavailable"]["action"]


def hide_portaudio(tmp_path: Path) -> list[str]:
    """A prefix that runs the process in a private mount namespace where ldconfig's cache is
    empty and no compiler or linker is on PATH, so ctypes.util.find_library('portaudio')
    returns None: sounddevice then raises OSError('PortAudio library not found')."""
    empty = tmp_path / "empty-ld.so.cache"
    empty.write_bytes(b"")
    script = 'mount --bind "$0" /etc/ld.so.cache && PATH=/nonexistent exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(empty)]


def test_without_portaudio_the_backend_is_unavailable_and_the_run_completes(
    tmp_path: Path,
) -> None:
    env = no_server_env(tmp_path / "home")
    r = cli_process(
        "check", "--only", "audio", "--only", "host", "--format", "json",
        env=env, prefix=hide_portaudio(tmp_path),
    )  # fmt: skip
    assert r.code == 1, r.err
    checks = by_id(r)
    backend = checks["audio.backend"]
    assert backend["status"] == "fail"
    assert backend["details"]["error"] == "OSError: PortAudio library not found"
    assert backend["details"]["problem"] == "not_loaded"
    assert "sudo apt install libportaudio2" in backend["hint"]
    for cid in ("audio.devices", "audio.input", "audio.output"):
        assert checks[cid]["status"] == "skip", checks[cid]
        assert "PortAudio is not available" in checks[cid]["summary"]
    assert checks["host.os"]["status"] == "pass"  # the rest of the run went on
    assert checks["host.interfaces"]["status"] == "pass"
    found = findings(r)
    assert "audio.backend_unavailable" in found
    assert found["audio.backend_unavailable"]["severity"] == "critical"
    assert "libportaudio2" in found["audio.backend_unavailable"]["action"]
    assert r.json["complete"] is True and r.json == r.saved_report()


def test_without_portaudio_help_and_explain_still_work(tmp_path: Path) -> None:
    prefix = hide_portaudio(tmp_path)
    assert cli_process("--help", prefix=prefix).code == 0
    assert cli_process("explain", "SIP 403", prefix=prefix).code == 0


def test_a_sound_server_that_hangs_is_backend_unavailable_within_the_deadline(
    pulse: Pulse, pulse_env: dict[str, str]
) -> None:
    # A stopped PulseAudio accepts the connection (the kernel's listen backlog) and never
    # answers: PortAudio's initialisation hangs inside the ALSA pulse plugin.
    os.kill(pulse.daemon.pid, signal.SIGSTOP)
    try:
        r = run_audio(pulse_env, "--timeout", "8", only=("audio", "host.os"))
    finally:
        os.kill(pulse.daemon.pid, signal.SIGCONT)
    assert r.code == 1
    checks = by_id(r)
    backend = checks["audio.backend"]
    assert backend["status"] == "fail", backend
    assert backend["details"]["problem"] == "hung"
    assert "the sound server does not answer" in backend["summary"]
    assert "restart the sound server" in backend["hint"]
    for cid in ("audio.devices", "audio.input", "audio.output"):
        assert checks[cid]["status"] == "skip", checks[cid]
    assert checks["host.os"]["status"] == "pass"
    assert set(findings(r)) == {"audio.backend_unavailable"}
    assert r.json["duration_ms"] < 6000  # audio.backend's own 5 s deadline, not the budget


def test_a_capture_window_longer_than_the_budget_shrinks_to_fit(
    pulse_env: dict[str, str],
) -> None:
    r = run_audio(pulse_env, "--capture-seconds", "20", "--timeout", "3", only=("audio.input",))
    mic = by_id(r)["audio.input"]
    assert mic["status"] == "warn", mic  # silence, measured: not a timeout
    assert mic["details"]["window_s"] < 3
    assert r.json["duration_ms"] < 3500


# ---- pure logic


def test_levels_of_a_sine_square_silence_and_clipping() -> None:
    import numpy as np

    t = np.arange(48000) / 48000
    sine = levels(0.5 * np.sin(2 * np.pi * 1000 * t))
    assert sine.rms_dbfs == pytest.approx(-9.0, abs=0.1)  # 20*log10(0.5/sqrt(2))
    assert sine.peak_dbfs == pytest.approx(-6.0, abs=0.1)
    assert sine.clipping_ratio == 0 and not sine.digital_silence
    silent = levels(np.zeros(100))
    assert silent.digital_silence and silent.rms_dbfs == DBFS_FLOOR
    clipped = levels(np.concatenate([np.ones(10), np.zeros(90)]))
    assert clipped.clipping_ratio == pytest.approx(0.1)
    assert dbfs(1.0) == 0.0 and dbfs(0.0) == DBFS_FLOOR and dbfs(1e-9) == DBFS_FLOOR


def _inv(devices: list[tuple[str, int, int]], default_in: int | None) -> Inventory:
    return Inventory(
        portaudio="PortAudio test",
        hostapis=["ALSA"],
        devices=[
            {
                "index": i,
                "name": name,
                "hostapi": "ALSA",
                "max_input_channels": ins,
                "max_output_channels": outs,
                "default_samplerate": 48000.0,
            }
            for i, (name, ins, outs) in enumerate(devices)
        ],
        default_input=default_in,
        default_output=None,
    )


def test_device_choice_prefers_the_named_then_the_default_then_the_first() -> None:
    inv = _inv([("HDMI out", 0, 2), ("Jabra EVOLVE 40", 1, 2), ("Built-in Mic", 2, 0)], 2)
    assert choose_device(inv, "input", "jabra")["name"] == "Jabra EVOLVE 40"  # type: ignore[index]
    assert choose_device(inv, "input", "plantronics") is None
    assert choose_device(inv, "input", None)["name"] == "Built-in Mic"  # type: ignore[index]
    assert choose_device(inv, "output", "HDMI")["name"] == "HDMI out"  # type: ignore[index]
    # No default output: the first output device is what a softphone would fall back to.
    assert choose_device(inv, "output", None)["name"] == "HDMI out"  # type: ignore[index]
    assert choose_device(_inv([("HDMI out", 0, 2)], None), "input", None) is None


def test_the_audio_checks_are_registered_in_run_order() -> None:
    from checks import REGISTRY

    ids = [c.id for c in REGISTRY]
    assert all(i in ids for i in AUDIO_IDS)
    after = {c.id: c.after for c in REGISTRY}
    # PortAudio is not thread-safe: each audio check waits for the previous one.
    assert after["audio.devices"] == ("audio.backend",)
    # ...and reads audio.backend's result, so a backend that failed or hung is not retried.
    assert after["audio.input"] == ("audio.backend", "audio.devices")
    assert after["audio.output"] == ("audio.backend", "audio.input")


def test_sounddevice_is_not_imported_by_the_cli_or_the_registry() -> None:
    code = "import checks, diag.cli, sys; print('sounddevice' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
