"""host.proxy: the proxy settings a browser or softphone on this machine would use."""

from __future__ import annotations

from collections.abc import Mapping

from checks.wire.ws import redact_url
from diag.context import Context
from diag.model import CheckResult, passed

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def proxies(environ: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for var in PROXY_VARS:
        value = environ.get(var) or environ.get(var.lower())
        if value:
            found[var.lower()] = value if var == "NO_PROXY" else redact_url(value)
    return found


def check_proxy(ctx: Context) -> CheckResult:
    found = proxies(ctx.environ)
    if not found:
        return passed("no proxy configured in the environment", proxies={})
    shown = ", ".join(f"{k}={v}" for k, v in found.items())
    # SIP over UDP/TCP/TLS ignores HTTP proxies; only browser (WebRTC) softphones go through them.
    return passed(f"proxy settings found: {shown} (native SIP does not use them)", proxies=found)
