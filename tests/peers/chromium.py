"""Headless Debian chromium for the HTML report: DOM dumps, screenshots, PDFs.

Offline flags only: no network services, a fresh profile each call, nothing outside loopback.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from peers.process import PeerStartError

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium(page: Path, work: Path, *action: str, width: int = 1280, height: int = 900) -> str:
    """Run one headless action (`--dump-dom`, `--screenshot=…`, `--print-to-pdf=…`) on a file;
    returns stdout. Raises PeerStartError with chromium's stderr when it fails."""
    exe = shutil.which("chromium")
    if exe is None:
        raise PeerStartError("chromium is not installed (apt-get install chromium)")
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    proc = subprocess.run(
        [
            exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *action,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode != 0:
        raise PeerStartError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout
