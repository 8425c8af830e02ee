"""The pjsua2 side of number.dial-test, run inside the SIP worker process (checks/sip/worker.py).

Register the account, place one INVITE, and end it as soon as it says anything about the
number: CANCEL on the first ringing/progress answer (18x), BYE at once on a 200, and
CANCEL (or drop) at the maximum duration whatever happened. Then remove our binding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from checks.sip.stack import PROBE_HEADER, SipStack
from checks.wire.sip import parse

UNREGISTER_WAIT = 1.0  # at most this long for the un-REGISTER's answer
END_WAIT = 1.0  # after CANCEL/BYE, this long for the call to end cleanly
# Hang up this much before the maximum duration: events are pumped in 20 ms slices, and the
# CANCEL must be on the wire before the limit, not after it.
HANGUP_MARGIN = 0.1


@dataclass(frozen=True)
class DialPlan:
    transport: str
    register_uri: str
    target: dict[str, Any]
    dial_uri: str
    max_duration: float  # already cut to what the run's budget leaves
    deadline: float  # monotonic: the worker's own deadline, never passed waiting for the end


def _cseq(raw: str) -> tuple[int, str]:
    msg = parse(raw)
    parts = ((msg.first("cseq") if msg else None) or "").split()
    number = int(parts[0]) if parts and parts[0].isdigit() else -1
    return number, parts[-1].upper() if parts else ""


def _answers(stack: SipStack, call_id: str) -> tuple[list[tuple[int, str]], bool]:
    """Responses to our latest INVITE (a challenged INVITE is re-sent with the next CSeq; the
    CANCEL and BYE share the Call-ID but not the method), and whether we were challenged."""
    invites = [
        (_cseq(raw)[0], code, raw)
        for code, raw in stack.trace.responses(call_id)
        if _cseq(raw)[1] == "INVITE"
    ]
    latest = max((n for n, _, _ in invites), default=-1)
    challenged = any(code in (401, 407) for n, code, _ in invites if n < latest)
    return [(code, raw) for n, code, raw in invites if n == latest], challenged


def place_call(stack: SipStack, pj: Any, account: Any, plan: DialPlan, probe: str) -> dict:
    """One INVITE through `account`; returns what the platform answered and how it ended."""
    states: list[int] = []

    class Call(pj.Call):
        def onCallState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 callback name
            states.append(self.getInfo().state)

    call = Call(account)
    prm = pj.CallOpParam(True)
    header = pj.SipHeader()
    header.hName, header.hValue = PROBE_HEADER, probe
    prm.txOption.headers.append(header)
    t0 = time.monotonic()
    out: dict[str, Any] = {"uri": plan.dial_uri, "max_duration_s": plan.max_duration}
    try:
        call.makeCall(plan.dial_uri, prm)
    except pj.Error as exc:
        out.update(outcome="local_error", reason=str(getattr(exc, "reason", "") or exc))
        return out
    call_id = call.getInfo().callIdString
    out["call_id"] = call_id
    disconnected = pj.PJSIP_INV_STATE_DISCONNECTED
    ended_by: str | None = None
    ended_at: float | None = None
    limit = t0 + plan.max_duration

    def hang_up(why: str) -> None:
        nonlocal ended_by, ended_at
        ended_by, ended_at = why, time.monotonic()
        try:
            call.hangup(pj.CallOpParam(True))
        except pj.Error:
            pass  # already ending

    while disconnected not in states:
        stack.pump(lambda: disconnected in states, time.monotonic() + 0.02)
        now = time.monotonic()
        if ended_by is None:
            codes = [c for c, _ in _answers(stack, call_id)[0]]
            if any(c >= 200 and c < 300 for c in codes):
                hang_up("bye")  # answered: hang up at once
            elif any(100 < c < 200 for c in codes):
                hang_up("cancel")  # ringing or progress: that is all we needed to know
            elif now >= limit - HANGUP_MARGIN:
                hang_up("max_duration")
        elif now >= min(max(limit, ended_at or now) + END_WAIT, plan.deadline):
            break  # e.g. no provisional answer ever came, so no CANCEL could be sent
    t_end = time.monotonic()
    answers, challenged = _answers(stack, call_id)
    provisional = [c for c, _ in answers if c < 200]
    finals = [(c, raw) for c, raw in answers if c >= 200]
    out.update(
        provisional=provisional,
        finals=[c for c, _ in finals],
        challenged=challenged,
        ended_by=ended_by,
        ended_after_ms=int(((ended_at or t_end) - t0) * 1000),
        duration_ms=int((t_end - t0) * 1000),
        disconnected=disconnected in states,
    )
    first_18x = next((raw for c, raw in answers if 100 < c < 200), None)
    if first_18x is not None:
        out["first_provisional"] = _quote(first_18x)
    # The answer that decides: the last final answer to the INVITE (after any auth challenge);
    # our own CANCEL ends a ringing call with 487, so then the 18x is the platform's answer.
    decisive = finals[-1][1] if finals else None
    ours = ended_by in ("cancel", "max_duration") and finals and finals[-1][0] == 487
    if decisive is not None and not ours:
        out.update(outcome="answered", **_quote(decisive))
    elif first_18x is not None:
        out.update(outcome="answered", **_quote(first_18x))
    else:
        out.update(
            outcome="no_answer",
            code=0,
            reason=f"no answer beyond 100 Trying within {round(plan.max_duration, 1):g} s"
            if provisional
            else f"no answer within {round(plan.max_duration, 1):g} s",
        )
    return out  # `call` dies with this frame: no Call may outlive the endpoint


def _quote(raw: str) -> dict[str, Any]:
    msg = parse(raw)
    assert msg is not None
    parts = msg.start_line.split(" ", 2)
    return {
        "code": int(parts[1]),
        "reason": parts[2] if len(parts) > 2 else "",
        "warning": msg.all("warning"),
        "reason_header": msg.all("reason"),
        "server": msg.first("server") or msg.first("user-agent"),
    }
