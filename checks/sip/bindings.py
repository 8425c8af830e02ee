"""The account's bindings as a REGISTER query's 200 lists them, and the one rule that keeps
sipdiag from harming the agent's registration: a binding of our own only where it cannot replace
another (or with --register-binding); a binding the query listed that our 200 OK no longer lists
was replaced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from diag import outcomes as o
from diag.evidence import (
    Binding,
    BindingPlan,
    RegisterAttempt,
)


def other_bindings(queries: list[RegisterAttempt]) -> list[Binding]:
    """The account's bindings as the registrar listed them (each contact once), ours left out."""
    seen: dict[str, Binding] = {}
    for q in queries:
        for b in cast(list[Binding], q.get("bindings") or []):  # a query's: parsed records
            if not b["ours"]:
                seen.setdefault(b["contact"], b)
    return list(seen.values())


def binding_plan(
    queries: Sequence[RegisterAttempt], bindings: list[Binding], opted_in: bool
) -> BindingPlan:
    """Whether sip.register may make a binding of its own, and why (details["binding"])."""
    if not any(q["outcome"] == o.OK for q in queries):
        return {"create": False, "reason": "the registrar did not accept the query"}
    if opted_in:
        return {"create": True, "reason": "--register-binding"}
    if bindings:
        return {
            "create": False,
            "reason": f"the account has {len(bindings)} other binding(s); a registration of "
            "ours could replace them (--register-binding opts in)",
        }
    return {"create": True, "reason": "the account has no other binding"}


def replaced_bindings(before: list[Binding], attempts: Sequence[RegisterAttempt]) -> list[Binding]:
    """Bindings the query listed that the 200 OK to our own REGISTER no longer lists: the
    registrar keeps one binding per account and ours replaced them."""
    from checks.wire.sip import parse_bindings

    gone: dict[str, Binding] = {}
    for a in attempts:
        if a.get("outcome") != o.OK or "bindings" not in a:
            continue
        contacts = cast(list[str], a["bindings"])  # our REGISTER's 200 OK: Contact values
        listed = {b.contact for b in parse_bindings(list(contacts))}
        for b in before:
            if b["contact"] not in listed:
                gone.setdefault(b["contact"], {**b, "replaced_over": a["transport"]})
    return list(gone.values())


REPLACED_ACTION = (
    "re-register the softphone now (log out and in, or restart it): its registration will only "
    "be back at its next refresh; run sipdiag without --register-binding on this registrar"
)


def contacts_text(bindings: list[Binding]) -> str:
    return ", ".join(f"<{b['contact']}>" for b in bindings)
