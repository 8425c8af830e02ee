"""Run the CLI's net.stun and net.nat inside a network namespace (the real registry)."""

from __future__ import annotations

from pathlib import Path

from clihelp import CliResult, cli_process, registered

from .process import netns_prefix

STUN_CHECK, NAT_CHECK = registered("net.stun", "net.nat")


def run_in_netns(netns: str, tmp_path: Path, *args: str, timeout: float = 30) -> CliResult:
    """``sipdiag check --only net.stun --only net.nat --format json ARGS`` inside ``netns``."""
    return cli_process(
        "check", "--only", "net.stun", "--only", "net.nat", "--format", "json", *args,
        env={"XDG_DATA_HOME": str(tmp_path / "data")}, timeout=timeout,
        prefix=netns_prefix(netns),
    )  # fmt: skip
