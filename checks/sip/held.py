"""A binding of our own that `sipdiag watch` keeps registered between samples (issue 18).

Only made under issue 10's rule: the account has no other binding (no softphone is registered),
or the user passed --register-binding. It lets each sample's sip.inbound see whether a request
from the platform still reaches this machine while the softphone is away. The Contact carries
``;sipdiag=<tag>`` so every listing marks it ours; a Listener thread answers OPTIONS on its
socket (as a softphone answers the platform's keep-alives) and records our own test requests.

Refreshes are the watch's to schedule (at most one per interval, checks in diag/watch.py); the
registrar's 423 Min-Expires is honoured by Binder, 503 Retry-After by ``retry_after``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from checks.sip.bindings import missing_from, other_bindings, queries_of
from checks.wire import sip as sipwire
from checks.wire.sipua import Account, Binder, Channel, Listener, Registration, Server
from diag import outcomes as o
from diag.context import Context
from diag.model import CheckResult

MIN_EXPIRES = 120  # s asked for at least: a lost un-REGISTER leaves minutes, not an hour
UNREGISTER_WAIT = 1.0  # s for the un-REGISTER's answer when the watch ends


@dataclass
class Refresh:
    """What the last REGISTER of our binding got."""

    ok: bool
    code: int | None
    reason: str | None
    expires: int | None
    retry_after: int | None = None  # 503 Retry-After, or our backoff after a failure
    at: float = 0.0


class HeldBinding:
    """Our binding on ``server`` for ``account``: register(), refresh(), close()."""

    def __init__(
        self,
        server: Server,
        account: Account,
        watch_id: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.account = account
        self.interval = interval
        self.clock = clock
        self.tag = f"w{watch_id[:8]}"
        self.channel = Channel(server, clock, timeout=2.0)
        self.binder = Binder(
            self.channel, account, server, sipwire.probe_id(watch_id, "held"), self.tag
        )
        self.registration: Registration | None = None
        self.last: Refresh | None = None
        self.failures = 0
        self.maybe_bound = False
        self.listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the listener and a REGISTER never read the socket both

    @property
    def ok(self) -> bool:
        return self.last is not None and self.last.ok

    @property
    def contact(self) -> str:
        return self.registration.contact if self.registration else ""

    def expires_for(self) -> int:
        return max(MIN_EXPIRES, int(self.interval * 3))

    def register(self, deadline: float) -> Refresh:
        """The first REGISTER (with the Contact the registrar sees us as, PJSIP-style)."""
        with self._paused():
            reg = self.binder.register(self.expires_for(), deadline)
        self.registration = reg
        return self._record(reg.code, reg.reason, reg.expires, reg)

    def refresh(self, deadline: float) -> Refresh:
        if self.registration is None or not self.registration.ok:
            return self.register(deadline)
        with self._paused():
            held = self.binder.refresh(self.expires_for(), deadline)
        return self._record(held.code, held.reason, held.expires, None)

    def refresh_due(self, now: float) -> bool:
        """Refresh at half the granted expiry; after a failure, not before its backoff (503
        Retry-After, else 30 s doubling to 15 min) so a sick registrar is not hammered."""
        last = self.last
        if last is None:
            return True
        if not last.ok:
            return now - last.at >= (last.retry_after or 0)
        return now - last.at >= max(1.0, (last.expires or MIN_EXPIRES) / 2)

    def _record(
        self, code: int | None, reason: str | None, expires: int | None, reg: Registration | None
    ) -> Refresh:
        ok = code is not None and 200 <= code < 300
        # A binding may exist after a 2xx, or after no answer at all (a late 200 still made
        # it); a final refusal (423 aside, answered inside Binder) made none to remove.
        self.maybe_bound = self.maybe_bound or ok or code is None
        retry = None
        if not ok:
            self.failures += 1
            retry = min(900, 30 * 2 ** (self.failures - 1))
            answer_retry = self._retry_after()
            if code == 503 and answer_retry is not None:
                retry = max(answer_retry, 1)
        else:
            self.failures = 0
        self.last = Refresh(ok, code, reason, expires, retry, self.clock())
        if ok and self.listener is None and self.registration is not None:
            self._start_listener()
        return self.last

    def _retry_after(self) -> int | None:
        last = self.binder.last_outcome
        answer = last.answer if last is not None else None
        if answer is None:
            return None
        value = (answer.first("retry-after") or "").split(";")[0].strip()
        return int(value) if value.isdigit() else None

    def _start_listener(self) -> None:
        assert self.registration is not None
        self.listener = Listener(
            self.channel,
            uuid.uuid4().hex,
            self.account.user_agent,
            self.registration.contact,
            decline=True,
        )
        self._run_listener()

    def _run_listener(self) -> None:
        if self.listener is None:
            return
        self.listener.stop.clear()
        self._thread = threading.Thread(
            target=self.listener.run, args=(float("inf"),), name="held-binding", daemon=True
        )
        self._thread.start()

    class _Pause:
        def __init__(self, held: HeldBinding) -> None:
            self.held = held

        def __enter__(self) -> None:
            self.held._lock.acquire()
            if self.held.listener is not None and self.held._thread is not None:
                self.held.listener.stop.set()
                self.held._thread.join(1.0)

        def __exit__(self, *exc: object) -> None:
            try:
                if self.held.listener is not None and self.held.last is not None:
                    self.held._run_listener()
            finally:
                self.held._lock.release()

    def _paused(self) -> HeldBinding._Pause:
        """The listener stops reading the socket while a REGISTER waits for its answer."""
        return HeldBinding._Pause(self)

    def close(self, wait: float = UNREGISTER_WAIT) -> bool:
        """Stop listening and remove our binding (Expires: 0) whenever a REGISTER with it went
        out; True when the registrar confirmed the removal."""
        if self.listener is not None:
            self.listener.stop.set()
            if self._thread is not None:
                self._thread.join(0.5)
            self.listener = None
        removed = False
        if self.binder.sent_contact and self.maybe_bound:
            removed = self.binder.unregister(self.clock() + wait)
        self.binder.ch.close()
        self.channel.close()
        return removed


def binding_wanted(register: CheckResult, opted_in: bool) -> bool | None:
    """From a sample's sip.register: keep a binding of ours (True: the registrar accepted the
    query and lists no other binding, or --register-binding), drop it (False: a softphone is
    registered), or None (no accepted query: nothing to decide on)."""
    queries = queries_of(register)
    if not any(q.get("outcome") == o.OK for q in queries):
        return None
    return opted_in or not other_bindings(queries)


def held_binding_for(
    ctx: Context, register: CheckResult, watch_id: str, interval: float
) -> HeldBinding | None:
    """A binding to hold, over the transport and server the accepted query used (not yet
    registered); None when there is no route to take or no socket."""
    from checks.sip.inbound import plan_from_register

    plan = plan_from_register(ctx.for_check(ctx.deadline, {"sip.register": register}))
    if isinstance(plan, CheckResult):
        return None
    try:
        return HeldBinding(plan.server, plan.account, watch_id, interval)
    except OSError:
        return None


def binding_replaced(register: CheckResult, held: HeldBinding) -> bool:
    """Right after our first REGISTER: its 200 OK no longer lists a binding the sample's query
    listed (a registrar that keeps one binding per account replaced the softphone's)."""
    reg = held.registration
    if reg is None or not reg.ok:
        return False
    others = other_bindings(queries_of(register))
    return bool(others and missing_from(others, reg.listed, held.server.transport))
