"""number.dial-test: one opt-in test call (--dial-test) through the registered account.

The call itself runs in the SIP worker process (checks/sip/worker.py, checks/sip/dial_job.py) like
sip.register's REGISTERs: a PJSIP abort() there becomes an `error` result here. The platform's
real answer decides: 403 -> not permitted, 404/484 -> invalid, 480/486/18x/200 -> reachable.
"""

from __future__ import annotations

import re
from typing import Any

from checks.net.dns import targets_for
from checks.sip.register import account_bindings, register_plan
from checks.sip.stack import INSTALL_HINT
from checks.sip.worker_client import run_worker, worker_job
from diag.context import Context
from diag.evidence import DialDetails, RegisterAttempt, TestCall, evidence_text
from diag.model import CheckResult, Status, failed, passed, skipped, warned

REACHABLE = (480, 486)  # the number exists and is routed; the callee is just busy or away
INVALID = (404, 484)


def dial_uri(number: str, region: str | None, host: str) -> str:
    """The Request-URI: a SIP URI as given, else sip:NUMBER@host with the number in E.164 when
    it is a valid number, otherwise as typed minus visual separators (e.g. an extension)."""
    if number.startswith(("sip:", "sips:")):
        return number
    from checks.number.format import describe

    facts = describe(number, region)
    user = (
        facts["e164"] if facts["e164"] and not facts["error"] else re.sub(r"[\s().-]", "", number)
    )
    return f"sip:{user}@{host}"


def check_dial(ctx: Context) -> CheckResult:
    s = ctx.settings
    configured = s.target
    assert configured is not None and s.dial_test  # requires=("registrar", "user", "dial_test")
    if s.password is None:
        return skipped(
            f"no password available for {s.auth_user or s.user}: no test call placed",
            f"export {s.password_env}, store it in the OS keyring (service 'sipdiag'), "
            "or run on a terminal to be prompted",
        )
    transport = s.effective_transports[0]
    target, uri = register_plan(ctx, configured, transport, targets_for(ctx))
    host = (s.sip_uri or "").rpartition("@")[2] or configured.host_literal
    to = dial_uri(s.dial_test, s.region, host)
    deadline = ctx.monotonic() + max(0.1, ctx.remaining() - 0.2)
    plans = [{"transport": transport, "uri": uri, "target": target}]
    dial = {"uri": to, "max_duration": s.dial_max_duration}
    # The call goes through a binding of ours only where one cannot replace the softphone's
    # (when the bindings cannot be known, the REGISTER says why, as before).
    register = s.register_binding or not account_bindings(ctx, transport)
    job = worker_job(
        ctx, s.password, plans, target.get("address"), deadline, dial=dial, register=register
    )
    answer = run_worker(ctx, job, deadline)
    if isinstance(answer, str):
        return CheckResult(
            Status.ERROR,
            f"the test call could not be made: {answer}",
            {"number": s.dial_test, "uri": to},
            "re-run with --debug; report it as a sipdiag bug if it persists",
        )
    if "unavailable" in answer:
        return skipped(answer["unavailable"], INSTALL_HINT)
    return verdict(s.dial_test, to, answer, s.dial_max_duration)


def verdict(number: str, to: str, answer: dict[str, Any], requested: float) -> CheckResult:
    """The platform's answer to the test call -> pass / warn / fail (mapping in the README)."""
    reg: RegisterAttempt | dict[str, Any] = answer.get("register") or {}
    call: TestCall | None = answer.get("call")
    details: DialDetails = {"number": number, "uri": to, "register": reg, "call": call}
    if answer.get("local_address"):
        details["local_address"] = answer["local_address"]
    if call is None:
        said = f"{reg.get('code') or ''} {reg.get('reason') or ''}".strip()
        return warned(
            f"no test call placed: the account did not register ({said})",
            "fix the registration first (see sip.register), then re-run --dial-test",
            **details,
        )
    if call.get("call_id"):
        details["call_ids"] = [call["call_id"]]
    details["code"], details["reason"] = call.get("code"), call.get("reason")
    details["warning"], details["reason_header"] = call.get("warning"), call.get("reason_header")
    details["ended_by"] = call.get("ended_by")
    code, said = int(call.get("code") or 0), evidence_text(call)
    ended = {"cancel": ", cancelled at once", "bye": ", hung up at once with BYE"}.get(
        call.get("ended_by") or "", ""
    )
    if call.get("outcome") == "local_error":
        return CheckResult(
            Status.ERROR,
            f"the test call to {to} could not be sent: {call.get('reason')}",
            details,
            f"check the --dial-test value ({number})",
        )
    if call.get("outcome") == "no_answer":
        cut = call.get("max_duration_s", 0) < requested
        return warned(
            f"test call to {to}: {call.get('reason')}"
            + (" (cut short to fit --timeout)" if cut else ""),
            "re-run with a larger --dial-max-duration, or ask the platform why the call "
            "gets no answer",
            **details,
        )
    if code == 403:
        return failed(
            f"test call to {to} refused: {said}",
            f"ask the platform administrator to permit {number} for this account; quote "
            "the answer and the Call-ID",
            **details,
        )
    if code in INVALID:
        return failed(
            f"test call to {to}: {said}: the platform does not know this number",
            f"check {number} (E.164, with + and country code) in the platform's agent settings",
            **details,
        )
    if code in REACHABLE or 100 < code < 300:
        return passed(f"test call to {to} reached the number: {said}{ended}", **details)
    if code in (401, 407):
        return warned(
            f"test call to {to}: the platform did not accept our credentials ({said})",
            "check the SIP user, auth user and password (see sip.register)",
            **details,
        )
    return warned(
        f"test call to {to} answered {said}: says nothing about the number",
        "quote the answer and the Call-ID to the platform administrator",
        **details,
    )
