"""The process's life and death: which signals do what, when, and how sipdiag exits.

Every `signal.signal` and `os._exit` of the CLI process is here (the one exception is
`diag.__main__`, whose import-time fallback must work before this module has loaded):

- `catch_interrupts` / `sigterm_as_interrupt`: Ctrl-C and SIGTERM raise KeyboardInterrupt and
  are noted (`interrupt_received`, `is_interrupt`, `forget_interrupt`);
- `interruptible`: around a long command's work, either one becomes `Interrupted`;
- `signals_deferred`: signals wait until native code that must not see an exception is done;
- `sigint_ignored`: a report being written gets written;
- `exit_process`: the way out once the outcome is decided and said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, TextIO

from diag.errors import ExitCode, Interrupted

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
    if not _in_main_thread():
        return  # only the main thread may set handlers
    if signal.getsignal(sig) is not signal.SIG_IGN:
        signal.signal(sig, _interrupt)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a long command's work: SIGTERM as Ctrl-C, and either one becomes `Interrupted`,
    reported on one line by the CLI's boundary."""
    catch_interrupts()
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted from None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block take effect as it ends. For native code
    that aborts the whole process when a Python exception surfaces inside it: nanobind does
    ("Critical nanobind error") when a KeyboardInterrupt hits `import duckdb` halfway. A
    handler that only notes the signal runs instead; the real one runs after the block."""
    if not _in_main_thread():
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


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ctrl-C does nothing inside the block (the report after an interrupted run must get
    written: a second Ctrl-C waits for it); the previous handler is back after it."""
    previous: Any = signal.signal(signal.SIGINT, signal.SIG_IGN) if _in_main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def exit_process(
    code: int,
    streams: Sequence[TextIO],
    *,
    kept: object = None,
    abandoned: Sequence[threading.Thread] = (),
) -> NoReturn:
    """Leave with `code`, the outcome being decided and said: flush `streams`, then exit at
    once (os._exit) when interrupted, when a command handed over state not worth freeing
    (`kept`), or when threads of overrunning probes are still alive (`abandoned`)."""
    # A Ctrl-C or SIGTERM from now on, or one still pending (DuckDB can stop a query on Ctrl-C
    # before Python's handler has run), must not turn the outcome into a traceback or a death
    # by signal on the way out.
    if _in_main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: None)
    try:
        for stream in streams:
            stream.flush()
    except (OSError, ValueError):
        pass
    interrupted = code == ExitCode.INTERRUPTED
    if interrupted or kept is not None or any(t.is_alive() for t in abandoned):
        # Output is flushed. A probe that overran inside native code: the report is written, so
        # don't wait for it. Nothing to save in `match`'s DuckDB: don't spend time freeing it.
        # Interrupted: the command has cleaned up, and Python's own exit would turn a Ctrl-C
        # that passed through PyRun_String (native modules use it) into a death by SIGINT.
        os._exit(code)
    sys.exit(code)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
