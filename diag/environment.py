"""The process boundaries a command touches (httpie's Environment), and writing to them safely."""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass
class Environment:
    """Streams, environment variables, the check registry: swappable in tests."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdin_isatty: bool = field(default_factory=lambda: sys.stdin is not None and sys.stdin.isatty())
    registry: Sequence[Any] | None = None  # None: checks.REGISTRY, imported lazily
    # Threads of checks that overran: the process exits without waiting for them.
    abandoned: list[threading.Thread] = field(default_factory=list)
    # `match` hands over its in-memory DuckDB here, so the process exits without spending
    # ~0.1 s tearing down its tables.
    kept: Any = None
    said_interrupted: bool = False  # the one "interrupted" line is out

    def checks(self) -> Sequence[Any]:
        if self.registry is None:
            from checks import REGISTRY

            self.registry = REGISTRY
        return self.registry


def write_text(stream: TextIO | None, text: str) -> bool:
    """Write without ever raising: unencodable characters are replaced, a closed stream is
    reported as False."""
    if stream is None:
        return False
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(encoding, "replace").decode(encoding))
        stream.flush()
        return True
    except (OSError, ValueError):
        return False


def write_report_file(path: Path, text: str) -> None:
    """Regular files are replaced atomically; a symlink's target is written, not the link;
    devices and pipes (/dev/stdout, a FIFO) are written in place, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    from diag.report import write_atomic

    write_atomic(path.resolve(), text)


def use_color(stream: Any, environ: Mapping[str, str]) -> bool:
    """Colours only on a terminal, and never with NO_COLOR set (no-color.org) or TERM=dumb."""
    return isatty(stream) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
