"""PulseAudio (as root, no D-Bus) with null sink ``vspeaker`` and null source ``vmic``."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .process import Daemon, check_unix_path

SINK = "vspeaker"
SOURCE = "vmic"

SCRIPT = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name={sink} sink_properties=device.description=Virtual_Speaker
load-module module-null-source source_name={source} description=Virtual_Mic
set-default-sink {sink}
set-default-source {source}
"""
# A client that cannot reach our server must fail, not spawn a pulseaudio of its own.
CLIENT_CONF = "autospawn = no\n"


def client_env(home: Path, sock: Path) -> dict[str, str]:
    return {
        "PULSE_SERVER": f"unix:{sock}",
        "PULSE_CLIENTCONFIG": str(home / "client.conf"),
        "XDG_RUNTIME_DIR": str(sock.parent),
        "HOME": str(home),
    }


@dataclass
class Pulse:
    """A running server; clients (pactl, PortAudio via ALSA's pulse plugin) need ``env``."""

    home: Path
    socket: Path
    daemon: Daemon

    @classmethod
    def start(cls, work_dir: Path, timeout: float = 10.0) -> Pulse:
        runtime = work_dir / "rt"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        sock = check_unix_path(runtime / "native")
        script = work_dir / "testbed.pa"
        script.write_text(SCRIPT.format(socket=sock, sink=SINK, source=SOURCE))
        (work_dir / "client.conf").write_text(CLIENT_CONF)
        argv = [
            "pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
            "--disallow-exit", "--use-pid-file=no", "--log-target=stderr",
        ]  # fmt: skip
        daemon = Daemon("pulseaudio", argv, work_dir, env=client_env(work_dir, sock), cwd=work_dir)
        pulse = cls(work_dir, sock, daemon)
        daemon.start(lambda: pulse.pactl("info").returncode == 0, timeout)
        return pulse

    @property
    def env(self) -> dict[str, str]:
        """Environment for client processes (HOME also decides which ``.asoundrc`` ALSA reads)."""
        return client_env(self.home, self.socket)

    @property
    def server(self) -> str:
        return self.env["PULSE_SERVER"]

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def pactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pactl", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, **self.env},
            check=False,
        )

    def stop(self) -> int | None:
        return self.daemon.stop()
