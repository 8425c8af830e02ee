"""number.policy: the agent's numbers are permitted by the --policy file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checks.number.format import describe
from diag.context import Context
from diag.model import CheckResult, failed, passed, skipped
from diag.policy import NumberFacts, evaluate, load_policy


def check_policy(ctx: Context) -> CheckResult:
    s = ctx.settings
    assert s.policy is not None  # requires=("numbers", "policy")
    policy = load_policy(Path(s.policy))  # validated before the run: cannot fail here
    results: list[dict[str, Any]] = []
    for number in s.numbers:
        facts = describe(number, s.region)
        entry: dict[str, Any] = {"number": number, "e164": facts["e164"]}
        if facts["e164"] is None:
            entry.update(evaluated=False, why=f"not evaluated: {facts['error']}")
        else:
            decision = evaluate(
                policy, NumberFacts(facts["e164"], facts["country"], facts["type"] or "unknown")
            )
            entry.update(evaluated=True, permitted=decision.permitted, rule=decision.rule)
        results.append(entry)
    details = {"policy": s.policy, "default": policy.default, "numbers": results}
    denied = [r for r in results if r["evaluated"] and not r["permitted"]]
    if denied:
        text = "; ".join(f"{r['e164']} denied by {r['rule']}" for r in denied)
        return failed(
            f"not permitted: {text}",
            "use a permitted number for this agent, or ask the platform administrator to "
            f"change the rule ({denied[0]['rule']})",
            **details,
        )
    checked = [r for r in results if r["evaluated"]]
    if not checked:
        return skipped("no agent number could be parsed (see number.format)", None, **details)
    text = "; ".join(f"{r['e164']} by {r['rule']}" for r in checked)
    return passed(f"permitted: {text}", **details)
