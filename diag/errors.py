"""Exit codes and the errors the CLI's single boundary turns into one-line messages."""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
from collections.abc import Iterator


class ExitCode(enum.IntEnum):
    OK = 0  # no check failed (warnings allowed unless --fail-on warn)
    CHECKS_FAILED = (
        1  # a check failed or broke, a critical finding, or a warning with --fail-on warn
    )
    USAGE = 64  # usage error, invalid profile or input (EX_USAGE)
    INTERNAL = 70  # sipdiag itself broke (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; the partial report is still written


class SipdiagError(Exception):
    """An error the user can act on: printed as one line with a hint, never a traceback."""

    exit_code = ExitCode.INTERNAL

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def one_line(self) -> str:
        return f"sipdiag: error: {self.what} (hint: {self.hint})"


class UsageError(SipdiagError):
    exit_code = ExitCode.USAGE


class Interrupted(SipdiagError):
    """Ctrl-C or SIGTERM in a command with nothing to keep (typer would swallow the
    KeyboardInterrupt into a silent exit 130)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted", "re-run when ready")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a long command's work: SIGTERM as Ctrl-C, and either one becomes `Interrupted`,
    reported on one line by the CLI's boundary."""
    sigterm_as_interrupt()
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted from None


def sigterm_as_interrupt() -> None:
    """SIGTERM (systemd, fleet tools, `timeout`) handled like Ctrl-C: the command cleans up and
    exits 130 through the CLI's boundary, instead of dying where it stands."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
