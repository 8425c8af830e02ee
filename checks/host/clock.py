"""host.clock: this machine's clock agrees with the registrar's Date header."""

from __future__ import annotations

import datetime as dt

from checks.wire.sip import parse_date
from diag.context import Context
from diag.model import CheckResult, passed, skipped, warned

CLOCK_SKEW_WARN_MS = 5000  # Date has 1 s resolution; 5 s is well past rounding + round trip


def clock_offset_ms(server_date: str, local_at_response: str) -> int | None:
    """Local minus server time in ms (positive: this machine is ahead)."""
    server = parse_date(server_date)
    try:
        local = dt.datetime.fromisoformat(local_at_response.replace("Z", "+00:00"))
    except ValueError:
        return None
    if server is None:
        return None
    # The Date header is truncated to whole seconds: compare against the local second too.
    local = local.replace(microsecond=0)
    return int((local - server).total_seconds() * 1000)


def check_clock(ctx: Context) -> CheckResult:
    register = ctx.results.get("sip.register")
    if register is None:
        return skipped(
            "no registrar Date header to compare against",
            "run it together with sip.register (--registrar, --user) to read the registrar's clock",
        )
    dated = [
        a
        for a in register.details.get("attempts", [])
        if a.get("server_date") and a.get("local_time")
    ]
    if not dated:
        return skipped(
            "no registrar Date header to compare against",
            "the registrar sent no Date header; check that NTP is enabled instead",
        )
    sample = dated[0]
    offset = clock_offset_ms(sample["server_date"], sample["local_time"])
    if offset is None:
        return skipped(f"the registrar's Date header is unreadable: {sample['server_date']!r}")
    details = {
        "clock_offset_ms": offset,
        "server_date": sample["server_date"],
        "local_time": sample["local_time"],
        "threshold_ms": CLOCK_SKEW_WARN_MS,
    }
    direction = "ahead of" if offset > 0 else "behind"
    if abs(offset) > CLOCK_SKEW_WARN_MS:
        return warned(
            f"clock is {abs(offset) / 1000:.1f} s {direction} the registrar's",
            "enable time synchronisation (NTP) on this machine",
            **details,
        )
    return passed(
        f"clock within {CLOCK_SKEW_WARN_MS // 1000} s of the registrar's ({offset:+d} ms)",
        **details,
    )
