"""The sipdiag CLI with net.media and net.quality registered, until checks/__init__.py lists them.

``clihelp.cli_process(*args, prefix=[*netns_prefix, sys.executable, str(DRIVER)])`` runs
``… DRIVER PYTHON -m diag ARGS``; the driver drops the ``PYTHON -m diag`` that cli_process
appends and runs ``sipdiag ARGS``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diag.model import Check

DRIVER = Path(__file__).resolve()


def extra_checks() -> tuple[Check, ...]:
    """The two checks as checks/__init__.py is expected to list them."""
    from checks.media import check_media
    from checks.quality import check_quality
    from diag.model import Check

    return (
        Check(
            "net.media",
            "The media path is open",
            check_media,
            needs="--turn with --turn-user and a password env var, and/or --media",
            timeout=5.0,
        ),
        Check(
            "net.quality",
            "Network quality is good enough for calls",
            check_quality,
            needs="--stun",
            requires=("stun",),
            timeout=5.0,
        ),
    )


def main() -> None:
    # Run by path, this file's directory comes first on sys.path: keep the peers out of the way.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != DRIVER.parent]
    import checks

    known = {c.id for c in checks.REGISTRY}
    checks.REGISTRY += tuple(c for c in extra_checks() if c.id not in known)
    args = sys.argv[1:]
    if args[1:3] == ["-m", "diag"]:
        args = args[3:]
    sys.argv = ["sipdiag", *args]
    from diag.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
