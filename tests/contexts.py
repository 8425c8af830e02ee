"""The one way tests build the Context a check gets, to call it (or the runner) directly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from diag.config import Settings
from diag.context import Context
from diag.model import CheckResult
from diag.report import user_agent


def make_context(
    *,
    budget: float = 5.0,
    deadline: float | None = None,
    results: Mapping[str, CheckResult] | None = None,
    environ: Mapping[str, str] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    **settings: Any,
) -> Context:
    """A fresh run as the CLI starts one (its own run id, and the User-Agent that carries it).

    ``settings`` are Settings fields; ``results`` the evidence of the checks it runs after; the
    deadline is ``budget`` seconds away unless ``deadline`` names it. The environment is empty
    unless given: a test never reads the developer's.
    """
    run_id = str(uuid.uuid4())
    return Context(
        settings=Settings(**settings),
        run_id=run_id,
        user_agent=user_agent(run_id),
        environ=dict(environ or {}),
        monotonic=monotonic,
        results=dict(results or {}),
        deadline=monotonic() + budget if deadline is None else deadline,
    )
