"""`python -m diag` and the `sipdiag` command: the CLI, imported inside the error boundary's
reach, so a Ctrl-C or SIGTERM while its modules load is one line and exit 130, not a traceback
or a silent death."""

from __future__ import annotations

import os
import sys


def run() -> None:
    try:
        from diag import lifecycle

        lifecycle.catch_interrupts()  # from here on Ctrl-C and SIGTERM are noted, as the CLI's
        from diag.cli import main
    except BaseException as exc:
        # Python wraps a KeyboardInterrupt raised inside some import machinery (RuntimeError
        # from __set_name__, say): the flag says what it was.
        if isinstance(exc, KeyboardInterrupt) or _interrupt_noted():
            # The literal, as Interrupted().one_line() says it, and os._exit here, not in
            # diag.lifecycle: neither it nor diag.errors may be loaded.
            sys.stderr.write("sipdiag: error: interrupted (hint: re-run when ready)\n")
            sys.stderr.flush()
            os._exit(130)  # not Python's exit: see diag.lifecycle.exit_process
        raise
    main()


def _interrupt_noted() -> bool:
    lifecycle = sys.modules.get("diag.lifecycle")
    return bool(lifecycle and lifecycle.interrupt_received())


if __name__ == "__main__":
    run()
