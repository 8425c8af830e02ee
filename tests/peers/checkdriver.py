"""Run the CLI with net.stun and net.nat registered (until checks/__init__.py lists them), in
process or inside a network namespace (a driver script run with ``ip netns exec``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clihelp import REPO, CliResult, subprocess_env

from checks.nat import check_nat
from checks.stun import check_stun
from diag.model import Check

from .process import netns_prefix

STUN_TITLE = "STUN servers answer"
NAT_TITLE = "NAT lets calls in"
STUN_CHECK = Check("net.stun", STUN_TITLE, check_stun, needs="--stun", requires=("stun",))
NAT_CHECK = Check(
    "net.nat", NAT_TITLE, check_nat, needs="--stun", requires=("stun",), after=("net.stun",)
)

DRIVER = f"""
import sys
import checks
from checks.nat import check_nat
from checks.stun import check_stun
from diag.model import Check

checks.REGISTRY = tuple(c for c in checks.REGISTRY if c.id not in ("net.stun", "net.nat")) + (
    Check("net.stun", {STUN_TITLE!r}, check_stun, needs="--stun", requires=("stun",)),
    Check("net.nat", {NAT_TITLE!r}, check_nat, needs="--stun", requires=("stun",),
          after=("net.stun",)),
)
sys.argv = ["sipdiag", *sys.argv[1:]]
from diag.cli import main
main()
"""


def run_in_netns(netns: str, tmp_path: Path, *args: str, timeout: float = 30) -> CliResult:
    """``sipdiag check --only net.stun --only net.nat --format json ARGS`` inside ``netns``."""
    driver = tmp_path / "stun_driver.py"
    driver.write_text(DRIVER)
    argv = [sys.executable, str(driver), "check", "--only", "net.stun", "--only", "net.nat"]
    proc = subprocess.run(
        [*netns_prefix(netns), *argv, "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=subprocess_env({"XDG_DATA_HOME": str(tmp_path / "data")}),
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
