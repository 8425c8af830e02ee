"""Text that came off the wire, made valid once where it enters.

PJSIP (through SWIG) and the OS hand us bytes that were not UTF-8 as lone surrogates
(surrogateescape); such a string cannot be written as UTF-8, and one of them in a reason
phrase used to cost the whole report. Here they become U+FFFD, and the caller records how many.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def clean_text(value: str) -> tuple[str, int]:
    """``value`` with every lone surrogate replaced by U+FFFD, and how many were replaced."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return value, 0  # the usual case costs one encode
    out = [REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in value]
    return "".join(out), sum(1 for c in value if "\ud800" <= c <= "\udfff")


def clean_tree(value: Any) -> tuple[Any, int]:
    """clean_text over every string (keys too) of a JSON-like structure."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        items = [clean_tree(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        total, out = 0, {}
        for k, v in value.items():
            key, n1 = clean_tree(k) if isinstance(k, str) else (k, 0)
            val, n2 = clean_tree(v)
            out[key] = val
            total += n1 + n2
        return out, total
    return value, 0
