"""Output of `explain`: what each status means, as text or JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from diag.render.safe import neutralise

if TYPE_CHECKING:
    from diag.logs.explain import StatusEntry


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def explanation_json(text: str, e: StatusEntry) -> dict[str, Any]:
    return {
        "input": text,
        "status": e.status,
        "sip_code": e.sip_code,
        "reason": e.reason,
        "category": e.category,
        "meaning": e.meaning,
        "typical_causes": list(e.typical_causes),
        "next_step": e.next_step,
        "checks": list(e.checks),
        "cause_ids": list(e.cause_ids),
    }


def _offered(checks: Sequence[str], families: Collection[str]) -> list[str]:
    """The families and check ids worth an `--only`: registered, and a check id only when its
    family is not offered whole already."""
    family = {name: name.split(".")[0] for name in checks}
    return [
        n for n in checks if family[n] in families and (n == family[n] or family[n] not in checks)
    ]


def render_explanation(
    entries: Sequence[tuple[str, StatusEntry]], families: Collection[str], fmt: str = "text"
) -> str:
    """`families`: the check families this build has; only those are offered as commands."""
    if fmt == "json":
        return _json([explanation_json(text, e) for text, e in entries])
    blocks = []
    for _text, e in entries:
        lines = [
            e.status,
            f"  category: {e.category}",
            f"  meaning:  {e.meaning}",
            "  typical causes:",
            *(f"    - {c}" for c in e.typical_causes),
            f"  next:     {e.next_step}",
        ]
        runnable = _offered(e.checks, families)
        if runnable:
            lines.append(f"  sipdiag:  sipdiag check --only {' --only '.join(runnable)}")
        if e.cause_ids:
            lines.append(f"  causes:   {', '.join(e.cause_ids)}")
        blocks.append("\n".join(map(neutralise, lines)))  # each line: its own breaks kept
    return "\n\n".join(blocks) + "\n"
