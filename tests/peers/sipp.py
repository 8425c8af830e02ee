"""One sipp UAS scenario (tests/data/sipp/*.xml) on a free port, for a single call (-m 1)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .process import Daemon, free_port, netns_prefix

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "data" / "sipp"
TRANSPORT_MODES = {"udp": "u1", "tcp": "t1"}


def _listening(pid: int, port: int, transport: str, netns: str | None) -> bool:
    """Whether ``pid`` has bound ``port`` (UDP) or listens on it (TCP), as ``ss`` sees it."""
    argv = [
        *netns_prefix(netns),
        "ss",
        "-H",
        "-l",
        "-n",
        "-p",
        "-u" if transport == "udp" else "-t",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    return any(f":{port} " in line and f"pid={pid}," in line for line in done.stdout.splitlines())


@dataclass
class Sipp:
    """A running sipp UAS; ``uri`` is what the agent under test should use as its registrar."""

    scenario: Path
    transport: str
    host: str
    port: int
    work_dir: Path
    daemon: Daemon

    @classmethod
    def start(
        cls,
        scenario: str | Path,
        work_dir: Path,
        *,
        transport: str = "udp",
        host: str = "127.0.0.1",
        netns: str | None = None,
        substitutions: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 5.0,
    ) -> Sipp:
        """Start ``scenario`` (a file name in tests/data/sipp or a path).

        ``substitutions`` replaces literal text in a copy of the scenario (sipp's verifyauth
        takes no variables, so e.g. ``{'alice-secret': 'other'}`` templates the password).
        """
        transport = transport.lower()
        if transport not in TRANSPORT_MODES:
            raise ValueError(f"sipp transport must be one of {sorted(TRANSPORT_MODES)}")
        source = Path(scenario) if Path(scenario).is_absolute() else SCENARIO_DIR / scenario
        port = free_port([host], (transport,), netns=netns)
        run_dir = work_dir / f"{source.stem}-{port}"
        run_dir.mkdir(parents=True)
        text = source.read_text(encoding="iso-8859-1")
        for old, new in (substitutions or {}).items():
            text = text.replace(old, new)
        copy = run_dir / source.name
        copy.write_text(text, encoding="iso-8859-1")
        argv = [
            "sipp", "-sf", str(copy), "-i", host, "-p", str(port),
            "-t", TRANSPORT_MODES[transport], "-m", "1", "-nostdin",
            "-trace_msg", "-message_file", str(run_dir / "messages.log"),
            "-trace_err", "-error_file", str(run_dir / "errors.log"),
            *extra_args,
        ]  # fmt: skip
        daemon = Daemon("sipp", argv, run_dir, netns=netns, cwd=run_dir)
        daemon.start(lambda: _listening(daemon.pid, port, transport, netns), timeout)
        return cls(copy, transport, host, port, run_dir, daemon)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};transport={self.transport}"

    @property
    def messages_path(self) -> Path:
        return self.work_dir / "messages.log"

    @property
    def errors_path(self) -> Path:
        return self.work_dir / "errors.log"

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def messages(self) -> str:
        """Every SIP message sipp received and sent so far (``-trace_msg``)."""
        return self.messages_path.read_text(errors="replace") if self.messages_path.exists() else ""

    def errors(self) -> str:
        return self.errors_path.read_text(errors="replace") if self.errors_path.exists() else ""

    def wait(self, timeout: float = 10.0) -> int:
        """sipp's exit code: 0 when the one call followed the scenario, 1 when it did not."""
        return self.daemon.wait(timeout)

    def stop(self) -> int | None:
        return self.daemon.stop()


class SippFactory:
    """``factory("reg_403_warning.xml", transport="udp")`` -> a running Sipp; then stop_all()."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[Sipp] = []

    def __call__(self, scenario: str | Path, transport: str = "udp", **options: Any) -> Sipp:
        """Options are those of Sipp.start (host, netns, substitutions, extra_args, timeout)."""
        sipp = Sipp.start(scenario, self.work_dir, transport=transport, **options)
        self.started.append(sipp)
        return sipp

    def stop_all(self) -> None:
        for sipp in self.started:
            sipp.stop()
