"""The pjsua2 side of sip.register, in a process of its own.

PJSIP is native code: on a hostile network, or on an unlucky timing, it can abort() the whole
process (an assertion), and the run's report would be lost. So the REGISTER attempts run here,
in a child process (`python -m checks.sip.worker`) that owns the run's one pjsua2 Endpoint: the
parent sends a job as JSON on stdin (the password included: never on the command line or in the
environment) and reads the attempts as JSON from stdout. If the child dies, the parent reports
it as a broken probe and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from checks.sip.stack import PROBE_HEADER, SipStack, SipUnavailable
from checks.wire.sip import parse, parse_challenge, via_received
from diag import outcomes as o
from diag.config import Secret

PARENT_POLL_S = 0.2  # how soon a worker notices that sipdiag has gone (where no PDEATHSIG)
UNREGISTER_RESERVE = 0.3  # seconds kept back to remove our binding again
UNREGISTER_WAIT = 1.0  # at most this long for the un-REGISTER's answer
REGISTER_EXPIRES = 60  # short: a binding we fail to remove disappears soon by itself


@dataclass(frozen=True)
class Job:
    """What the parent asks for. `deadline` is time.monotonic() (one clock for both processes)."""

    user_agent: str
    run_id: str
    sip_uri: str
    auth_user: str
    password: Secret
    ca: str | None
    route: str | None  # an address: the endpoint binds to the local address routing there
    deadline: float
    plans: list[dict[str, Any]]  # [{"transport", "uri", "target"}]
    trace_path: str | None = None  # append the scrubbed SIP message trace here
    # number.dial-test: register before the call; False when the account has other bindings
    # (a one-binding registrar would replace the softphone's): the call then goes unregistered
    register: bool = True

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        raw["password"] = Secret(raw["password"])
        return cls(**raw)


def local_outcome(code: int, reason: str) -> str:
    """Classify an answer pjsip made up itself (no packet from the registrar)."""
    lowered = reason.lower()
    if "certificate" in lowered or "ecertverif" in lowered:
        return o.TLS_UNTRUSTED
    if "resolve" in lowered or "gethostbyname" in lowered or "unknown host" in lowered:
        return o.DNS_FAILURE
    if code == 408 or "timed out" in lowered or "timeout" in lowered:
        return o.TIMEOUT
    if "refused" in lowered or "reset" in lowered:
        return o.REFUSED
    if "no route" in lowered or "unreachable" in lowered:
        return o.UNREACHABLE
    return o.LOCAL_ERROR


class _Registration:
    """One pjsua2 account registering over one transport; every attempt runs side by side."""

    def __init__(
        self,
        job: Job,
        pj: Any,
        transport: str,
        tid: int,
        target: dict[str, Any],
        uri: str,
        proxy: str | None = None,
        register: bool = True,
    ) -> None:
        self.transport, self.target, self.uri = transport, target, uri
        self.register = register
        self.probe = f"{job.run_id}-{transport}"
        events: list[dict[str, Any]] = []
        self.events = events

        class Account(pj.Account):
            def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 callback name
                events.append(
                    {
                        "code": prm.code,
                        "reason": prm.reason,
                        "expiration": prm.expiration,
                        "raw": prm.rdata.wholeMsg,
                        "src": prm.rdata.srcAddress,
                        "local_time": dt.datetime.now(dt.timezone.utc),
                        "t": time.monotonic(),
                    }
                )

        cfg = pj.AccountConfig()
        cfg.idUri = job.sip_uri
        cfg.regConfig.registrarUri = uri
        cfg.regConfig.registerOnAdd = register
        cfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is not retried: never flood
        cfg.regConfig.timeoutSec = REGISTER_EXPIRES
        header = pj.SipHeader()
        header.hName, header.hValue = PROBE_HEADER, self.probe
        cfg.regConfig.headers.append(header)
        # A Contact of our own and no SIP outbound: pjsua's default +sip.instance is the same
        # in every pjsua-based softphone, and a registrar would replace the agent's binding.
        # The tag goes in the account's Contact (sipConfig), not regConfig.contactUriParams:
        # pjsua 2.15 parses that REGISTER Contact from a buffer it never NUL-terminates, and
        # aborts (pjsua_acc.c update_regc_contact) when the stale byte after it is a ',' or such.
        cfg.sipConfig.contactUriParams = f";sipdiag={job.run_id[:8]}"
        cfg.natConfig.sipOutboundUse = 0
        # No re-REGISTER from the address the registrar reported: the 200 must answer the
        # Contact and Via we sent, or plain NAT would look like a SIP ALG (net.sip-alg).
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.sipConfig.transportId = tid  # decides the address family too
        if proxy:  # a test call goes through the registrar, as the softphone's calls do
            cfg.sipConfig.proxies.append(proxy)
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", job.auth_user, 0, job.password.reveal())
        )
        self.account = Account()
        self.t0 = time.monotonic()
        self.error: str | None = None
        try:
            self.account.create(cfg)
        except pj.Error as exc:
            self.error = str(getattr(exc, "reason", "") or getattr(exc, "title", "") or exc)

    @property
    def finished(self) -> bool:
        return self.error is not None or bool(self.events) or not self.register

    @property
    def accepted(self) -> bool:
        if not self.register:
            return self.error is None
        return bool(self.events) and self.events[0]["code"] // 100 == 2

    def unregister(self) -> None:
        self.account.setRegistration(False)

    @property
    def unregistered(self) -> bool:
        return len(self.events) > 1 and self.events[1]["code"] // 100 == 2

    def result(self, stack: SipStack, budget: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "transport": self.transport,
            "uri": self.uri,
            "target": self.target,
            "credentials": True,
        }
        if self.error is not None:
            out.update(
                outcome=o.LOCAL_ERROR, code=0, remote=False, reason=self.error, duration_ms=0
            )
        elif not self.events:
            out.update(
                outcome=o.NOT_FINISHED,
                code=0,
                remote=False,
                duration_ms=int(budget * 1000),
                reason=f"no final answer within the {budget:.1f} s this attempt had",
            )
        else:
            out.update(_describe(self.events[0], self.t0))
            if out["outcome"] == o.OK:
                out["unregistered"] = self.unregistered
        # The Call-ID we sent is the one to search logs for. PJSIP matches answers by branch
        # only, so a registrar (or a middlebox) answering with another Call-ID would be taken
        # for ours: such an answer is not our transaction, and says nothing about it.
        sent = stack.trace.call_id(self.probe)
        answered = out.get("call_id")
        if sent and answered and answered != sent:
            out.update(
                outcome=o.ERROR,
                remote=False,
                reason=f"the answer {out['code']} carried another Call-ID ({answered}): not our "
                "transaction, ignored",
                foreign_answer={"code": out["code"], "call_id": answered},
                code=0,
            )
            out.pop("unregistered", None)
        call_id = sent or answered
        out["call_id"] = call_id
        out["sent"] = stack.trace.sent(self.probe)
        # The first 2xx on the Call-ID we sent: what the registrar made of our Via and Contact.
        sent_call_id = stack.trace.call_id(self.probe)
        answers = stack.trace.responses(sent_call_id) if sent_call_id else []
        first_ok = next((raw for code, raw in answers if code // 100 == 2), None)
        first = parse(first_ok) if first_ok else None
        if first is not None:
            out["first_ok"] = {"via": first.first("via"), "contacts": first.all("contact")}
        _add_challenge(out, stack.trace.responses(call_id) if call_id else [])
        return out


def _describe(ev: dict[str, Any], t0: float) -> dict[str, Any]:
    msg = parse(ev["raw"])
    code = int(ev["code"])
    out: dict[str, Any] = {
        "code": code,
        "reason": ev["reason"],
        "remote": msg is not None,  # False: pjsip made this answer up (timeout, refused)
        "duration_ms": int((ev["t"] - t0) * 1000),
        "local_time": ev["local_time"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if msg is None:
        out["outcome"] = local_outcome(code, ev["reason"])
        return out
    out["outcome"] = o.OK if code // 100 == 2 else o.REJECTED
    out.update(
        {
            "source": ev["src"],
            "warning": msg.all("warning"),
            "reason_header": msg.all("reason"),
            "server": msg.first("server") or msg.first("user-agent"),
            "call_id": msg.first("call-id"),
            "server_date": msg.first("date"),
        }
    )
    if code // 100 == 2:
        out["expires"] = ev["expiration"]
        out["bindings"] = msg.all("contact")
    via = msg.first("via")
    if via:
        out["received"], out["rport"] = via_received(via)
        out["via_echoed"] = via  # our top Via as the registrar received it
    return out


def _add_challenge(result: dict[str, Any], responses: list[tuple[int, str]]) -> None:
    """Whether the registrar challenged this REGISTER, and with what (pjsua answers 401/407
    itself, so onRegState never sees them), and whether it answered anything at all."""
    challenges = [raw for code, raw in responses if code in (401, 407)]
    result["challenged"] = bool(challenges)
    result["challenges"] = len(challenges)
    result["registrar_answered"] = bool(responses)  # e.g. a challenge, then silence
    result["challenge"] = None
    if challenges:
        msg = parse(challenges[0])
        header = msg and (msg.first("www-authenticate") or msg.first("proxy-authenticate"))
        result["challenge"] = parse_challenge(header) if header else None


def _stack(job: Job) -> SipStack:
    """The job's PJSIP stack, appending its scrubbed message trace to ``job.trace_path``."""
    stack = SipStack(job.user_agent, job.route, job.ca)
    if job.trace_path:
        try:
            stack.trace.log_to(job.trace_path)
        except OSError:
            pass  # the trace is for support bundles; never a reason to lose the REGISTER
    return stack


def register_all(job: Job) -> dict[str, Any]:
    """Every planned transport registers side by side, then every accepted binding is removed."""
    stack = _stack(job)
    attempts: dict[str, dict[str, Any]] = {}
    runs: list[_Registration] = []
    try:
        with stack.session(job.route) as pj:
            budget = max(0.05, job.deadline - time.monotonic() - UNREGISTER_RESERVE)
            stack.set_transaction_budget(budget)
            try:
                for plan in job.plans:
                    transport, uri, target = plan["transport"], plan["uri"], plan["target"]
                    tid = stack.transport_ids.get(transport)
                    if tid is None:
                        attempts[transport] = {
                            "transport": transport,
                            "uri": uri,
                            "target": target,
                            "outcome": o.LOCAL_ERROR,
                            "code": 0,
                            "remote": False,
                            "duration_ms": 0,
                            "reason": f"no {transport} transport in this PJSIP build",
                        }
                        continue
                    runs.append(_Registration(job, pj, transport, tid, target, uri))
                stack.pump(lambda: all(r.finished for r in runs), time.monotonic() + budget)
                accepted = [r for r in runs if r.accepted]
                for r in accepted:
                    # Remove our binding at once: the diagnostic must never take the agent's calls.
                    r.unregister()
                wait_until = min(job.deadline - 0.1, time.monotonic() + UNREGISTER_WAIT)
                stack.pump(lambda: all(r.unregistered for r in accepted), wait_until)
                for r in runs:
                    attempts[r.transport] = r.result(stack, budget)
            finally:
                for r in runs:
                    # No Account may outlive the endpoint: pjsua2 aborts if one survives it.
                    r.account.shutdown()
                runs.clear()
    except SipUnavailable as exc:
        return {"unavailable": str(exc)}
    local = stack.local_address
    stack.close()
    return {"attempts": [attempts[p["transport"]] for p in job.plans], "local_address": local}


def dial(job: Job, dial_uri: str, max_duration: float) -> dict[str, Any]:
    """number.dial-test: register over the one planned transport, place one call through that
    account (checks/sip/dial_job.py), then remove the binding again. No call without a binding."""
    plan = job.plans[0]
    stack = _stack(job)
    out: dict[str, Any] = {"register": None, "call": None}
    try:
        with stack.session(job.route) as pj:
            budget = max(0.05, job.deadline - time.monotonic() - UNREGISTER_RESERVE)
            stack.set_transaction_budget(budget)
            tid = stack.transport_ids.get(plan["transport"])
            if tid is None:
                out["register"] = {
                    "transport": plan["transport"],
                    "outcome": o.LOCAL_ERROR,
                    "code": 0,
                    "reason": f"no {plan['transport']} transport in this PJSIP build",
                }
            else:
                proxy = plan["uri"] + ";lr"
                reg = _Registration(
                    job,
                    pj,
                    plan["transport"],
                    tid,
                    plan["target"],
                    plan["uri"],
                    proxy,
                    register=job.register,
                )
                try:
                    _register_and_call(stack, pj, job, reg, budget, dial_uri, max_duration, out)
                finally:
                    reg.account.shutdown()  # no Account may outlive the endpoint
    except SipUnavailable as exc:
        return {"unavailable": str(exc)}
    out["local_address"] = stack.local_address
    stack.close()
    return out


def _register_and_call(
    stack: SipStack,
    pj: Any,
    job: Job,
    reg: _Registration,
    budget: float,
    dial_uri: str,
    max_duration: float,
    out: dict[str, Any],
) -> None:
    from checks.sip.dial_job import DialPlan, place_call

    plan = job.plans[0]
    stack.pump(lambda: reg.finished, time.monotonic() + budget)
    if reg.register:
        out["register"] = reg.result(stack, budget)
    else:
        out["register"] = {
            "transport": plan["transport"],
            "outcome": "not_registered",
            "code": 0,
            "reason": "no binding made: the account has another (the call goes unregistered)",
        }
    if not reg.accepted:
        return
    # The call never runs past the run's deadline, whatever --dial-max-duration says; the
    # un-REGISTER keeps a short reserve (it takes milliseconds when the registrar is there).
    limit = min(max_duration, job.deadline - time.monotonic() - UNREGISTER_RESERVE)
    out["call"] = place_call(
        stack,
        pj,
        reg.account,
        DialPlan(
            plan["transport"],
            plan["uri"],
            plan["target"],
            dial_uri,
            max(0.1, limit),
            job.deadline - UNREGISTER_RESERVE,
        ),
        f"{job.run_id}-dial",
    )
    if not reg.register:
        return
    reg.unregister()
    stack.pump(
        lambda: reg.unregistered,
        min(job.deadline - 0.1, time.monotonic() + UNREGISTER_WAIT),
    )
    out["register"]["unregistered"] = reg.unregistered


FROZEN_WORKER_ARG = "--sipdiag-sip-worker"


def command() -> list[str]:
    """How to start this worker: a one-file (PyInstaller) build runs itself with a marker."""
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_WORKER_ARG]
    return [sys.executable, "-m", "checks.sip.worker"]


def die_with_parent() -> None:
    """The worker must never outlive sipdiag (it would go on sending REGISTERs and appending to
    the run's trace): on Linux the kernel kills it when its parent goes (PR_SET_PDEATHSIG);
    everywhere, a watcher thread ends it once it has been re-parented."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent went before the kernel was told
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="sipdiag-parent-watch").start()


def main() -> None:
    die_with_parent()
    raw = json.loads(sys.stdin.read())
    dial_job = raw.pop("dial", None)  # {"uri", "max_duration"} for number.dial-test
    job = Job.from_json(json.dumps(raw))
    if dial_job is not None:
        answer = dial(job, dial_job["uri"], float(dial_job["max_duration"]))
    else:
        answer = register_all(job)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
