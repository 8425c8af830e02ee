"""Exit codes and the errors the CLI's single boundary turns into one-line messages."""

from __future__ import annotations

import contextlib
import enum
import signal
import sys
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
    catch_interrupts()
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted from None


# Set once Ctrl-C or SIGTERM has reached one of our handlers. Native code that sees the
# KeyboardInterrupt may wrap it in an error of its own (DuckDB: "Query interrupted", or a
# failed import of zoneinfo read as an unknown time zone); the flag tells them apart.
_signalled = threading.Event()


def _interrupt(signum: int, frame: object) -> None:
    _signalled.set()
    raise KeyboardInterrupt


def interrupt_received() -> bool:
    return _signalled.is_set()


def forget_interrupt() -> None:
    _signalled.clear()


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is, or was caused by, Ctrl-C or SIGTERM: after one has arrived, any error
    is; before, DuckDB's InterruptException or its RuntimeError "Query interrupted"."""
    if _signalled.is_set():
        return True
    duckdb = sys.modules.get("duckdb")
    interrupt = getattr(duckdb, "InterruptException", None)
    if interrupt is not None and isinstance(exc, interrupt):
        return True
    return isinstance(exc, RuntimeError) and str(exc) == "Query interrupted"


def catch_interrupts() -> None:
    """Ctrl-C (as Python's own handler does) and SIGTERM raise KeyboardInterrupt, and are
    noted (see is_interrupt)."""
    _handle(signal.SIGINT)
    _handle(signal.SIGTERM)


def sigterm_as_interrupt() -> None:
    """SIGTERM (systemd, fleet tools, `timeout`) handled like Ctrl-C: the command cleans up and
    exits 130 through the CLI's boundary, instead of dying where it stands."""
    _handle(signal.SIGTERM)


def _handle(sig: int) -> None:
    """Our handler for `sig`, unless it is ignored: a background job that its shell started
    with Ctrl-C ignored must keep ignoring it."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers
    if signal.getsignal(sig) is not signal.SIG_IGN:
        signal.signal(sig, _interrupt)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block take effect as it ends. For native code
    that aborts the whole process when a Python exception surfaces inside it: nanobind does
    ("Critical nanobind error") when a KeyboardInterrupt hits `import duckdb` halfway. A
    handler that only notes the signal runs instead; the real one runs after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread runs signal handlers
        return
    noted: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        # None: installed outside Python, cannot be put back; SIG_IGN: nothing to defer.
        if handler is not None and handler is not signal.SIG_IGN:
            previous[sig] = handler
            signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if noted:
            signal.raise_signal(noted[0])
