"""`python -m diag` and the `sipdiag` command: the CLI, imported inside the error boundary's
reach, so a Ctrl-C or SIGTERM while its modules load is one line and exit 130, not a traceback
or a silent death."""

from __future__ import annotations

import os
import sys


def run() -> None:
    try:
        from diag.errors import sigterm_as_interrupt

        sigterm_as_interrupt()  # SIGTERM from here on: one line and exit 130, as Ctrl-C
        from diag.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("sipdiag: error: interrupted (hint: re-run when ready)\n")
        sys.stderr.flush()
        os._exit(130)  # not Python's exit: see diag.cli.main
    main()


if __name__ == "__main__":
    run()
