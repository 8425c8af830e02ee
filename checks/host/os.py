"""host.os: which operating system, user and host this report comes from."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
from collections.abc import Mapping
from typing import Any

from checks.host.interfaces import list_interfaces
from checks.host.proxy import proxies
from diag.context import Context
from diag.model import CheckResult, passed, warned


def describe_host_minimal(environ: Mapping[str, str]) -> dict[str, Any]:
    """The report's `host` section without interfaces (needs nothing beyond the stdlib)."""
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    version = platform.version()
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_version": platform.release() + (f" ({version})" if version else ""),
        "python": sys.version.split()[0],
        "user": user,
        "interfaces": [],
        "proxies": proxies(environ),
    }


def describe_host(environ: Mapping[str, str]) -> dict[str, Any]:
    """The report's `host` section."""
    host = describe_host_minimal(environ)
    host["interfaces"] = [
        {k: i[k] for k in ("name", "addresses", "is_up", "is_vpn")} for i in list_interfaces()
    ]
    return host


def check_os(ctx: Context) -> CheckResult:
    system, release = platform.system(), platform.release()
    details = {
        "os": system,
        "os_version": release,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    if system not in ("Linux", "Darwin", "Windows"):
        return warned(
            f"{system} {release} is not a platform sipdiag knows",
            "run sipdiag on the agent's Windows, macOS or Linux desktop",
            **details,
        )
    return passed(f"{system} {release} on {platform.machine()}", **details)
