"""A real third-party softphone: Debian's baresip, headless, registered with one account.

tests/README.md §baresip: a config dir with `config`, `accounts` and an empty `contacts` runs
baresip with a sine-wave source and file sinks, no sound card. It prints "{0/UDP/v4} 200 OK" (or
TCP) once the registrar accepted it. Tests use it to prove sipdiag never touches the agent's
binding.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

from .process import Daemon, free_port

CONFIG = """\
poll_method             epoll
sip_listen              {host}:{port}
net_interface           {host}
module_path             /usr/lib/baresip/modules
module                  g711.so
module                  ausine.so
module                  aufile.so
audio_source            ausine,440
audio_player            aufile,{dir}/play.wav
audio_alert             aufile,{dir}/alert.wav
module_tmp              uuid.so
module_tmp              account.so
module_app              menu.so
"""


@dataclass
class Baresip:
    """baresip registered as ``user`` at ``registrar`` (host:port) over ``transport``."""

    host: str
    port: int
    daemon: Daemon

    @classmethod
    def start(
        cls,
        work_dir: Path,
        registrar: str,
        user: str,
        password: str,
        *,
        transport: str = "udp",
        host: str = "127.0.0.1",
        netns: str | None = None,
        regint: int = 600,
        timeout: float = 10.0,
    ) -> Baresip:
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port([host], ("udp", "tcp"), netns=netns)
        for name in ("play.wav", "alert.wav"):
            with wave.open(str(work_dir / name), "wb") as w:  # aufile wants existing WAVs
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(b"\0\0" * 800)
        (work_dir / "config").write_text(CONFIG.format(host=host, port=port, dir=work_dir))
        (work_dir / "accounts").write_text(
            f"<sip:{user}@{registrar};transport={transport}>;auth_pass={password};"
            f"regint={regint};answermode=manual\n"
        )
        (work_dir / "contacts").write_text("")
        daemon = Daemon(
            f"baresip-{transport}", ["baresip", "-f", str(work_dir), "-t", "600"], work_dir,
            netns=netns,
        )  # fmt: skip
        proto = transport.upper()
        daemon.start(
            lambda: re.search(rf"\{{0/{proto}/v4\}} 200 OK", daemon.log_text()) is not None,
            timeout,
        )
        return cls(host, port, daemon)

    def registrations(self) -> int:
        """How many times the registrar has answered 200 OK to this softphone so far."""
        return len(re.findall(r"\{0/\w+/v4\} 200 OK", self.daemon.log_text()))

    def stop(self) -> int | None:
        return self.daemon.stop()
