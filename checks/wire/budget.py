"""Shared time budgets and the one reading of socket errors, for every probe that sends on its own.

A healthy registrar or STUN server answers in milliseconds; these bounds keep a probe on a silent
network from spending the run's budget (RFC 3261 T1 for the one UDP retransmission).
"""

from __future__ import annotations

import errno

from diag.outcomes import ERROR, REFUSED, UNREACHABLE

PROBE_TIMEOUT = 2.0  # seconds per probe: a healthy server answers in milliseconds
T1 = 0.5  # RFC 3261 T1: one retransmission, as a softphone would
MIN_CONCLUSIVE_WAIT = 1.0  # a shorter wait that timed out is no evidence (budget too small)
RESERVE = 0.15  # kept back from the deadline to build the result
# No route: the network, not the server, said so (ICMP host/net unreachable, link down).
UNREACHABLE_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)


def outcome_of(exc: OSError) -> str:
    """What an OSError from connect/send/recv says about the path: refused (nothing listens:
    TCP RST or ICMP port unreachable), unreachable (no route), else a local error."""
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    return UNREACHABLE if exc.errno in UNREACHABLE_ERRNOS else ERROR
