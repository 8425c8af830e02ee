"""What happened to one probe (a REGISTER, an OPTIONS, a raw REGISTER query), in words that
checks record in `details` and diagnosis rules key on. One vocabulary for every SIP probe."""

from __future__ import annotations

OK = "ok"  # 2xx from the registrar
ANSWERED = "answered"  # OPTIONS: any SIP response (even 4xx/5xx): the path works
REJECTED = "rejected"  # a non-2xx final answer that really came from the registrar
CHALLENGED = "challenged"  # a challenge-only probe (no credentials) got its 401/407
TIMEOUT = "timeout"  # nothing came back in time
REFUSED = "refused"  # connection refused: TCP RST or ICMP port unreachable
UNREACHABLE = "unreachable"  # no route to the host / network unreachable
TLS_UNTRUSTED = "tls_untrusted"  # the registrar's certificate failed verification
TLS_FAILED = "tls_failed"  # the TLS handshake failed for another reason
DNS_FAILURE = "dns_failure"  # the registrar's name did not resolve
LOCAL_ERROR = "local_error"  # the probe could not even be sent (unsupported transport, bad URI)
ERROR = "error"  # something else broke
NOT_FINISHED = "not_finished"  # the budget ended first: no evidence either way

NETWORK = frozenset({TIMEOUT, REFUSED, UNREACHABLE})  # nothing came back: a path problem
REGISTRAR_ANSWERED = frozenset({OK, ANSWERED, REJECTED, CHALLENGED})
