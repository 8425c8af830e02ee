"""The parent side of the PJSIP worker (checks/sip/worker.py): the job it is given on stdin, how
it is started (no password in its environment, the right PYTHONPATH) and bounded, and how its
answer is read back (text made valid once, where it enters)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from checks.sip.worker import command as worker_command
from checks.wire.text import clean_tree
from diag.config import Secret
from diag.context import Context

WORKER_GRACE = 0.5  # the worker process may take this long past its deadline to exit
WORKER_LATE = "the PJSIP worker did not finish in time"


def worker_job(
    ctx: Context,
    password: Secret,
    plans: list[dict[str, Any]],
    route: str | None,
    deadline: float,
    **more: Any,
) -> dict[str, Any]:
    """The job checks/sip/worker.py reads on stdin (the one place the password leaves memory:
    a pipe to our own child)."""
    s = ctx.settings
    return {
        "user_agent": ctx.user_agent,
        "run_id": ctx.run_id,
        "sip_uri": s.sip_uri or "",
        "auth_user": s.auth_user or s.user or "",
        "password": password.reveal(),
        "ca": s.ca,
        "route": route,
        "deadline": deadline,
        "plans": plans,
        "trace_path": str(ctx.sip_log) if ctx.sip_log else None,
        **more,
    }


def run_worker(ctx: Context, job: dict[str, Any], deadline: float) -> dict[str, Any] | str:
    """The worker's answer, or why there is none (WORKER_LATE, or how PJSIP crashed)."""
    try:
        proc = subprocess.run(
            worker_command(),
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=_worker_env(ctx),
            timeout=max(0.05, min(deadline + WORKER_GRACE, ctx.deadline - 0.05) - ctx.monotonic()),
        )
    except subprocess.TimeoutExpired:
        return WORKER_LATE
    try:
        answer: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return f"PJSIP crashed ({why}): {last}"
    return _valid_text(answer)


def _valid_text(answer: dict[str, Any]) -> dict[str, Any]:
    """What PJSIP read off the wire may hold bytes that were not UTF-8 (lone surrogates): they
    become U+FFFD here, once, so the report can always be written, and each attempt or call
    records how many (``undecodable_characters``)."""

    def one(record: Any) -> Any:
        cleaned, replaced = clean_tree(record)
        if replaced and isinstance(cleaned, dict):
            cleaned["undecodable_characters"] = replaced
        return cleaned

    out: dict[str, Any] = {}
    for key, value in answer.items():
        out[key] = [one(v) for v in value] if isinstance(value, list) else one(value)
    return out


def _worker_env(ctx: Context) -> dict[str, str]:
    """The worker's environment: ours without any variable that holds a password (it gets the
    password on stdin only), and a PYTHONPATH that finds this package however sipdiag itself
    was found (installed or not)."""
    s = ctx.settings
    secret = {s.password_env, s.turn_password_env}
    env = {k: v for k, v in os.environ.items() if k not in secret}
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds checks/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
