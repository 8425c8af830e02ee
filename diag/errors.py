"""Exit codes and the errors the CLI's single boundary turns into one-line messages (signals and
the exit itself: diag.lifecycle)."""

from __future__ import annotations

import enum


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
        # A path or value the user (or a hostile file) gave is shown, never acted on.
        from diag.render.safe import neutralise

        return f"sipdiag: error: {neutralise(self.what)} (hint: {neutralise(self.hint)})"


class UsageError(SipdiagError):
    exit_code = ExitCode.USAGE


class Interrupted(SipdiagError):
    """Ctrl-C or SIGTERM in a command with nothing to keep (typer would swallow the
    KeyboardInterrupt into a silent exit 130)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted", "re-run when ready")
