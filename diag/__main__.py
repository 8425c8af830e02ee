"""`python -m diag` and the `sipdiag` command: the CLI, imported inside the error boundary's
reach, so a Ctrl-C while its modules load is one line and exit 130, not a traceback."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from diag.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("sipdiag: error: interrupted (hint: re-run when ready)\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
