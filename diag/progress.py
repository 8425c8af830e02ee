"""Progress on stderr while the checks run: a spinner line with the elapsed time and the checks
still running, and one line per family once all its checks have finished."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from diag.context import Check
from diag.model import CheckResult
from diag.render.text import Marks, progress_family_line, progress_running_line

SPINNER = "|/-\\"
TICK = 0.1  # seconds between spinner frames


class TerminalProgress:
    def __init__(
        self,
        stream: TextIO,
        checks: Sequence[Check],
        marks: Marks,
        color: bool,
        write: Callable[[TextIO, str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._marks, self._color, self._write = stream, marks, color, write
        self._clock = clock
        self._t0 = clock()
        self._left = {c.family: sum(x.family == c.family for x in checks) for c in checks}
        self._statuses: dict[str, list[str]] = {f: [] for f in self._left}
        self._running: list[str] = []
        self._frame = 0
        self._note = ""  # a long wait's progress (Context.note), shown after the spinner
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="sipdiag-progress", daemon=True)
        self._ticker.start()

    def __call__(self, event: str, check: Check, result: CheckResult | None) -> None:
        with self._lock:
            if event == "start":
                self._running.append(check.id)
            else:
                if check.id in self._running:
                    self._running.remove(check.id)
                self._statuses[check.family].append(result.status.value if result else "error")
                self._left[check.family] -= 1
                if self._left[check.family] == 0:
                    line = progress_family_line(
                        check.family,
                        self._statuses[check.family],
                        self._clock() - self._t0,
                        self._marks,
                        self._color,
                    )
                    self._write(self._stream, "\r\033[K" + line + "\n")
            self._redraw()

    def note(self, text: str) -> None:
        """Context.note: a check's long wait, e.g. "net.idle: idle 90 s: 41 s left"."""
        with self._lock:
            self._note = text
            self._redraw()

    def _redraw(self) -> None:
        if not self._running:
            self._write(self._stream, "\r\033[K")
            return
        spinner = SPINNER[self._frame % len(SPINNER)]
        line = progress_running_line(self._running, self._clock() - self._t0, spinner)
        if self._note:
            line += f" ({self._note})"
        self._write(self._stream, "\r\033[K" + line)

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self._frame += 1
                if self._running:
                    self._redraw()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(1)
        with self._lock:
            self._write(self._stream, "\r\033[K")


class PlainNotes:
    """Context.note without a terminal (a log, a pipe): a line when a wait starts, then at most
    one every NOTE_EVERY seconds, so a long net.idle shows it is alive without flooding."""

    NOTE_EVERY = 30.0

    def __init__(
        self,
        stream: TextIO,
        write: Callable[[TextIO, str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._write, self._clock = stream, write, clock
        self._topic: list[str] = []
        self._last = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        topic = text.split(":", 2)[:2]
        now = self._clock()
        with self._lock:
            if topic != self._topic or now - self._last >= self.NOTE_EVERY:
                self._topic, self._last = topic, now
                self._write(self._stream, f"sipdiag: {text}\n")
