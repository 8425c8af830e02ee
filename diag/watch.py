"""`sipdiag watch` (issue 18): follow the agent's machine through a shift, sample by sample.

Every interval a light set of the checks runs (LIGHT_SET: interfaces, route, VPN, proxy,
clock, the softphone process, audio devices, STUN mapping and a short quality sample, the
REGISTER query, the bindings and the inbound OPTIONS); each sample and each change between two
samples (diag/watch_events.py) becomes a line of the timeline (diag/timeline.py). A network
change notified by the OS (netlink on Linux, diag/watch_notify.py) starts a sample at once.

Do no harm (issue 10's rule): the softphone's registration is only queried. A binding of our
own is kept (checks/sip/held.py) only while the account has no other binding, or with
--register-binding; it is refreshed at half its granted expiry and never more than once per
interval, except right after a network change; it is removed when a softphone registers again
and when the watch ends (SIGTERM, Ctrl-C, --duration, --until).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from diag import __version__
from diag.config import Settings, build_settings, resolve_password
from diag.context import Check, Context, utc_now
from diag.environment import Environment, isatty, write_text
from diag.errors import ExitCode, SipdiagError, UsageError
from diag.lifecycle import forget_interrupt
from diag.model import CheckResult
from diag.report import rfc3339, user_agent
from diag.runner import RunOutcome, run_checks, select_checks
from diag.timeline import TimelineWriter, timelines_dir
from diag.watch_events import events_between, sleep_resume

LIGHT_SET = (
    "host.interfaces",
    "host.vpn",
    "host.proxy",
    "host.softphone",
    "net.route",
    "net.stun",
    "net.quality",
    "audio.backend",
    "audio.devices",
    "sip.register",
    "host.clock",
    "sip.bindings",
)
LATE = ("sip.inbound",)  # after the watch's binding was looked after (register/refresh)
CAPTURE = ("audio.input",)  # only with --capture-seconds
# Settings the watch refuses: opt-in actions that must not repeat every interval.
REFUSED = {
    "inbound_call": "--inbound-call rings the softphone; the watch sends OPTIONS only",
    "idle": "--idle waits minutes per run; run it with `sipdiag check`",
    "dial_test": "--dial-test places a call; run it with `sipdiag check`",
    "play_tone": "--play-tone plays a sound; run it with `sipdiag check`",
}
NOTIFIED_GAP = 5.0  # s: a network change starts a sample no sooner after the last one
TRIM_EVERY = 10  # samples between two malloc_trim calls (_trim_heap)
MIN_INTERVAL = 0.2  # s; below, the samples themselves would be the load
DEFAULT_INTERVAL = 60.0
NETWORK_EVENTS = {"interface_up", "interface_down", "address_changed", "route_changed"}
NETWORK_EVENTS |= {"vpn_up", "vpn_down", "public_mapping_changed"}


@dataclass
class Plan:
    interval: float
    end_mono: float | None  # --duration / --until, as a monotonic time
    end_reason: str  # "duration" or "until"
    out: Path


def parse_until(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """--until: an RFC 3339 time, or HH:MM[:SS] local time (the next such time)."""
    now = now or dt.datetime.now().astimezone()
    t = text.strip()
    try:
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.astimezone()
        return when
    except ValueError:
        pass
    try:
        clock = dt.time.fromisoformat(t)
    except ValueError:
        raise UsageError(
            f"invalid --until '{text}'", "use HH:MM (local time) or 2026-12-02T17:30:00Z"
        ) from None
    when = now.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
    return when if when > now else when + dt.timedelta(days=1)


def plan_watch(
    interval: float | None, duration: str | None, until: str | None, out: str | None
) -> Plan:
    from diag.logs.match import parse_duration

    every = DEFAULT_INTERVAL if interval is None else interval
    if not MIN_INTERVAL <= every <= 86400:
        raise UsageError(
            f"--interval {every:g} is out of range", f"use {MIN_INTERVAL:g} to 86400 seconds"
        )
    if duration is not None and until is not None:
        raise UsageError("--duration and --until both given", "give one of them")
    end_mono, reason = None, "duration"
    if duration is not None:
        seconds = parse_duration(duration, "--duration")
        if seconds <= 0:
            raise UsageError(f"--duration {duration} is not positive", "use e.g. 8h or 90m")
        end_mono = time.monotonic() + seconds
    elif until is not None:
        when = parse_until(until)
        left = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
        if left <= 0:
            raise UsageError(f"--until {until} is in the past", "give a time still to come")
        end_mono, reason = time.monotonic() + left, "until"
    return Plan(every, end_mono, reason, _out_path(out) if out else _default_path())


def _out_path(out: str) -> Path:
    """--out, checked before anything starts: a new file or a regular one (appended to) in a
    directory that exists. A FIFO would block the writer's open() for good, a device would
    swallow the lines."""
    again = "choose another --out path"
    try:
        path = Path(out).expanduser()
    except RuntimeError:  # ~nosuchuser, or ~ with neither $HOME nor a passwd entry
        raise UsageError(
            f"cannot expand ~ in --out {out}: its home directory is unknown",
            "give the directory in full",
        ) from None
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # a new file (or a dangling symlink, which the writer follows)
    except OSError as exc:  # a symlink loop on the way, a file used as a directory, no access
        raise UsageError(f"cannot write --out {out}: {exc.strerror or exc}", again) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"--out {out} is a directory", "give a file name such as shift.jsonl")
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(
            f"--out {out} is not a regular file", "give a file name such as shift.jsonl"
        )
    try:
        parent = path.resolve().parent
    except (OSError, RuntimeError) as exc:  # Python 3.11 reports a symlink loop as RuntimeError
        raise UsageError(f"cannot write --out {out}: {exc}", again) from None
    if not parent.is_dir():
        raise UsageError(
            f"cannot write --out {out}: directory {parent} does not exist",
            "create the directory or choose another --out path",
        )
    return path


def _default_path() -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return timelines_dir() / f"watch-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"


def watch_settings(profile: Path | None, flags: Mapping[str, Any]) -> Settings:
    return build_settings(profile, flags, REFUSED)


def light_checks(
    registry: Sequence[Check], settings: Settings, capture: bool
) -> tuple[list[Check], list[Check]]:
    """(the sample's checks, those run after the binding upkeep), narrowed by --only/--skip;
    the microphone is recorded only when --capture-seconds was given."""
    wanted = LIGHT_SET + LATE + (CAPTURE if capture else ())
    light = [c for c in registry if c.id in wanted]
    chosen = (
        select_checks(light, settings.only, settings.skip)
        if (settings.only or settings.skip)
        else light
    )
    return [c for c in chosen if c.id not in LATE], [c for c in chosen if c.id in LATE]


class _Stop:
    """SIGINT/SIGTERM: remember which, wake the wait; inside the checks, interrupt them (the
    runner sets ctx.stop and gives them CLEANUP_GRACE to remove what they registered)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self.in_checks = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, reason in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler(reason))

    def _handler(self, reason: str) -> Any:
        def handle(signum: int, frame: object) -> None:
            if self.reason is None:
                self.reason = reason
            self.event.set()
            if self.in_checks:
                raise KeyboardInterrupt

        return handle

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


@dataclass
class Status:
    """The live line on a terminal, or one stderr line per event (systemd, --quiet)."""

    stream: TextIO
    live: bool
    shown: bool = False
    marks: dict[bool | None, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        utf = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "") == "utf8"
        self.marks = {True: "✓" if utf else "+", False: "✗" if utf else "x", None: "?"}

    def event(self, when: str, name: str, evidence: Mapping[str, Any]) -> None:
        self._clear()
        said = ", ".join(f"{k}={v}" for k, v in list(evidence.items())[:4])
        write_text(
            self.stream, f"sipdiag watch: {when} {name}" + (f" ({said})" if said else "") + "\n"
        )

    def sample(self, n: int, when: str, state: Mapping[str, Any], events: int) -> None:
        if not self.live:
            return
        parts = [
            f"{label} {self.marks[state.get(key)]}"
            for label, key in (
                ("registered", "registered"),
                ("inbound", "inbound_reachable"),
                ("quality", "quality_ok"),
                ("audio", "devices_present"),
                ("softphone", "softphone_running"),
            )
        ]
        line = f"{when[11:19]} sample {n}: " + "  ".join(parts) + f"  | {events} events"
        write_text(self.stream, "\r\x1b[2K" + line[:200])
        self.shown = True

    def _clear(self) -> None:
        if self.shown:
            write_text(self.stream, "\r\x1b[2K")
            self.shown = False

    def close(self) -> None:
        if self.shown:
            write_text(self.stream, "\n")
            self.shown = False


class Debounce:
    """A registration, inbound or quality state must be seen in two samples in a row before it
    becomes an event: one lost UDP answer (a query unanswered under 30 % loss, one STUN probe
    of 50 lost at 0.5 %) is a measurement, not a change. The event is dated at the first
    sample that saw it; each sample's own `state` stays what that sample measured."""

    KEYS = {"registered": ("registration_",), "inbound": ("inbound_",)}
    KEYS |= {"quality_ok": ("quality_",)}

    def __init__(self) -> None:
        self.confirmed: dict[str, Any] = {}
        self.pending: dict[str, tuple[Any, dt.datetime]] = {}
        self.dated: dict[str, dt.datetime] = {}

    def settle(self, obs: Mapping[str, Any], when: dt.datetime) -> dict[str, Any]:
        out = dict(obs)
        self.dated = {}
        for key in self.KEYS:
            raw = obs.get(key)
            if raw is None:
                out[key] = self.confirmed.get(key)  # unknown changes nothing
                continue
            if key not in self.confirmed or raw == self.confirmed[key]:
                self.confirmed[key] = raw
                self.pending.pop(key, None)
            elif key in self.pending and self.pending[key][0] == raw:
                self.confirmed[key] = raw
                self.dated[key] = self.pending.pop(key)[1]
            else:
                self.pending[key] = (raw, when)
            out[key] = self.confirmed[key]
        return out

    def since(self, event: str) -> dt.datetime | None:
        """When the change behind ``event`` was first seen, if it was confirmed later."""
        for key, prefixes in self.KEYS.items():
            if key in self.dated and event.startswith(prefixes):
                return self.dated[key]
        return None


class Watch:
    def __init__(
        self,
        env: Environment,
        settings: Settings,
        checks: tuple[list[Check], list[Check]],
        plan: Plan,
        writer: TimelineWriter,
        watch_id: str,
        clocks: tuple[Callable[[], float], Callable[[], float]] = (time.time, time.monotonic),
    ) -> None:
        # (wall, monotonic) read at each sample for sleep/resume: injected by the tests, as a
        # machine cannot be put to sleep here.
        self.clocks = clocks
        self.env = env
        self.settings = settings
        self.early, self.late = checks
        self.plan = plan
        self.writer = writer
        self.watch_id = watch_id
        self.stop = _Stop()
        live = isatty(env.stderr) and not settings.quiet and "INVOCATION_ID" not in env.environ
        self.status = Status(env.stderr, live)
        self.held: Any = None  # checks.sip.held.HeldBinding
        self.audio = any(c.family == "audio" for c in (*self.early, *self.late))
        self.capture = any(c.id == "audio.input" for c in (*self.early, *self.late))
        self.audio_seen: object | None = None
        self.notified_gap = NOTIFIED_GAP
        self.debounce = Debounce()
        self.net_seen: object = None  # the interfaces when the last sample began
        self.prev_steady: dict[str, Any] | None = None
        self.backoff_until = 0.0  # no REGISTER of our binding before (503 Retry-After, failures)
        self.binding_refused: str | None = None  # why the watch holds no binding any more
        self.samples = 0
        self.events = 0
        self.last_register_mono: float | None = None
        self.mono0 = clocks[1]()

    # ---- the loop

    def run(self) -> int:
        self.stop.install()
        notifier = _open_notifier()
        prev_obs: dict[str, Any] | None = None
        prev_clock: tuple[float, float] | None = None
        reason: str | None = "error"
        try:
            self.writer.write("start", self._start_fields())
            notified: list[str] = []
            while True:
                began = time.monotonic()  # the loop's own pace is real time
                wall, mono = self.clocks[0](), self.clocks[1]()
                obs = self._sample(prev_obs, prev_clock, (wall, mono), notified)
                prev_obs, prev_clock = obs, (wall, mono)
                if (reason := self._over()) is not None:
                    break
                notified = self._wait(began, notifier)
                if (reason := self._over()) is not None:
                    break
        except OSError as exc:  # the timeline cannot be written (disk full, removed mount)
            reason = "error"
            failed = SipdiagError(
                f"cannot write the timeline {self.writer.path}: {exc.strerror or exc}",
                "free space or choose another --out; the lines written so far are valid",
            )
            raise failed from None
        finally:
            self.stop.in_checks = False
            removed = self._drop_binding()
            end: dict[str, Any] = {
                "mono": round(self.clocks[1]() - self.mono0, 3),
                "reason": reason,
                "samples": self.samples,
                "events": self.events,
            }
            if removed is not None:
                end["binding_removed"] = removed
            try:
                with contextlib.suppress(OSError):  # the error above is the one to tell
                    self.writer.write("end", end)
            finally:
                self.writer.close()
                self.status.close()
                if notifier is not None:
                    notifier.close()
                self.stop.restore()
                forget_interrupt()
        if reason == "interrupted":
            return int(ExitCode.INTERRUPTED)
        return int(ExitCode.OK)

    def _over(self) -> str | None:
        """Why the watch ends now (a signal, --duration, --until), or None."""
        if self.stop.event.is_set():
            return self.stop.reason or "interrupted"
        if self.plan.end_mono is not None and time.monotonic() >= self.plan.end_mono:
            return self.plan.end_reason
        return None

    def _wait(self, began: float, notifier: Any) -> list[str]:
        """Until the next sample (``began`` + interval), the end, a signal, or a network change
        (returned). A change starts a sample at once, but never sooner than NOTIFIED_GAP after
        the last one began: a flapping link or a VPN client rewriting routes every second must
        not turn the watch into a flood of REGISTERs and OPTIONS."""
        until = began + self.plan.interval
        if self.plan.end_mono is not None:
            until = min(until, self.plan.end_mono)
        earliest = began + min(self.notified_gap, self.plan.interval)
        seen: list[str] = []
        while not self.stop.event.is_set():
            now = time.monotonic()
            if now >= until or (seen and now >= earliest):
                break
            step = min(until - now, 0.5)  # a signal is seen within half a second
            if seen:
                step = min(step, max(0.0, earliest - now))
            if notifier is None:
                self.stop.event.wait(step)
                continue
            kinds = notifier.wait(step, self.stop.event) or []
            if kinds and not any("route" in k or k == "overrun" for k in kinds):
                if _interfaces_now() == self.net_seen:
                    continue  # e.g. an address's lifetime refreshed: nothing to sample for
            for kind in kinds:
                if kind not in seen and len(seen) < 20:
                    seen.append(kind)
        return seen

    # ---- one sample

    def _sample(
        self,
        prev_obs: dict[str, Any] | None,
        prev_clock: tuple[float, float] | None,
        clock: tuple[float, float],
        notified: list[str],
    ) -> dict[str, Any] | None:
        from diag.diagnosis import diagnose
        from diag.watch_observe import observe, sample_fields

        started = time.monotonic()
        if self.audio:
            import checks

            seen = checks.audio_fingerprint(self.env.environ)
            if seen is None or seen != self.audio_seen:
                _refresh_portaudio()
            self.audio_seen = seen
        run_id = str(uuid.uuid4())
        self.net_seen = _interfaces_now()
        ctx = self._context(run_id)
        first = self._checks(self.early, ctx, None)
        results = {r.check.id: r.result for r in first.runs}
        runs = list(first.runs)
        if first.complete and not self.stop.event.is_set():
            # Only a real change of our addresses or route re-registers our binding, not every
            # notification (an IPv6 address lifetime refreshed by a router advert is one).
            now_seen = observe(results)
            moved = prev_obs is not None and any(
                prev_obs.get(k) is not None
                and now_seen.get(k) is not None
                and prev_obs[k] != now_seen[k]
                for k in ("interfaces", "default_route")
            )
            self._upkeep(ctx, results, network_changed=moved)
            if self.late:
                late_ctx = self._context(run_id)
                second = self._checks(self.late, late_ctx, results)
                runs += second.runs
                results.update({r.check.id: r.result for r in second.runs})
        if self.stop.event.is_set() and not first.complete:
            return prev_obs  # interrupted mid-sample: no half-measured sample in the timeline
        findings = diagnose(runs)
        obs = observe(results)
        fields = sample_fields(results, findings)
        when = utc_now()
        mono = round(clock[1] - self.mono0, 3)
        found: list[tuple[str, dict[str, Any]]] = []
        if prev_clock is not None:
            slept = sleep_resume(prev_clock[0], prev_clock[1], clock[0], clock[1])
            if slept is not None:
                found.append(slept)
        steady = self.debounce.settle(obs, when)
        found += events_between(self.prev_steady, steady)
        self.prev_steady = steady
        for name, evidence in found:
            by = "notification" if notified and name in NETWORK_EVENTS else "sample"
            if notified and by == "notification":
                evidence = {**evidence, "notified": notified}
            at = when
            since = self.debounce.since(name)
            if since is not None:  # confirmed now, happened at the first sample that saw it
                at, evidence = since, {**evidence, "confirmed_at": rfc3339(when)}
            self.writer.write(
                "event",
                {"mono": mono, "event": name, "evidence": evidence, "detected_by": by},
                at,
            )
            self.events += 1
            self.status.event(when.strftime("%H:%M:%S"), name, evidence)
        self.samples += 1
        line = {
            "mono": mono,
            "run_id": run_id,
            **fields,
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
        if self.held is not None:
            line["own_binding"] = {
                "contact": self.held.contact.strip("<>"),
                "registered": self.held.ok,
            }
        elif self.binding_refused:
            line["own_binding"] = {
                "contact": None,
                "registered": False,
                "refused": self.binding_refused,
            }
        self.writer.write("sample", line, when)
        if self.samples % TRIM_EVERY == 0:
            _trim_heap()
        self.status.sample(self.samples, when.isoformat(), fields.get("state", {}), self.events)
        return obs

    def _context(self, run_id: str) -> Context:
        return Context(
            settings=self.settings,
            run_id=run_id,
            user_agent=user_agent(run_id),
            environ=self.env.environ,
            watching=True,
            held=self.held,
        )

    def _checks(
        self, checks: list[Check], ctx: Context, given: Mapping[str, CheckResult] | None
    ) -> RunOutcome:
        self.stop.in_checks = True
        try:
            if self.stop.event.is_set():
                raise KeyboardInterrupt
            return run_checks(checks, ctx, self.settings.timeout, None, given)
        except KeyboardInterrupt:
            now = utc_now()
            return RunOutcome([], now, now, 0, False)
        finally:
            self.stop.in_checks = False

    # ---- our own binding

    def _upkeep(
        self, ctx: Context, results: Mapping[str, CheckResult], network_changed: bool
    ) -> None:
        """Make, refresh or drop the watch's binding from this sample's REGISTER query."""
        import checks

        register = results.get("sip.register")
        s = self.settings
        if register is None or s.password is None or s.no_register or self.binding_refused:
            return
        want = checks.binding_wanted(register, s.register_binding)
        if want is None:
            return  # the registrar did not accept the query: nothing to decide on
        now = time.monotonic()
        if not want:
            self._drop_binding()  # a softphone registered: ours must not stay beside it
            return
        if now < self.backoff_until:
            return  # the registrar asked us to wait (503 Retry-After) or keeps refusing
        if self.held is not None and network_changed:
            self._drop_binding()  # its Contact names an address we no longer have
        once = self.last_register_mono is None or now - self.last_register_mono >= (
            self.plan.interval * 0.999
        )
        if self.held is None:
            if not (once or network_changed):
                return
            self.held = checks.held_binding_for(ctx, register, self.watch_id, self.plan.interval)
            if self.held is None:
                return
            self.last_register_mono = now
            done = self.held.register(now + 2.0)
            first = True
        elif self.held.refresh_due(now) and once:
            self.last_register_mono = now
            done = self.held.refresh(now + 2.0)
            first = False
        else:
            return
        if not done.ok:
            self.backoff_until = done.at + (done.retry_after or 0)
        elif first and checks.binding_replaced(register, self.held):
            # A registrar keeping one binding per account: ours (--register-binding) replaced
            # the softphone's. Remove ours at once and hold none for the rest of the watch.
            self._drop_binding()
            self.binding_refused = (
                "the registrar keeps one binding per account: ours replaced the softphone's "
                "(removed again; the softphone registers anew at its next refresh)"
            )
            self.status.event(
                utc_now().strftime("%H:%M:%S"), "own binding", {"dropped": self.binding_refused}
            )

    def _drop_binding(self) -> bool | None:
        if self.held is None:
            return None
        held, self.held = self.held, None
        try:  # after a signal the runner's grace is spent already: be brief
            return bool(held.close(0.5 if self.stop.event.is_set() else 1.0))
        except OSError:
            return False

    def _start_fields(self) -> dict[str, Any]:
        from diag.check_command import host_section

        s = self.settings
        return {
            "mono": 0.0,
            "interval_s": self.plan.interval,
            "host": host_section(self.env.environ),
            "sipdiag": __version__,
            "agent": {"id": s.agent_id, "sip_uri": s.sip_uri, "numbers": list(s.numbers)},
            "settings": {
                "registrar": s.registrar,
                "user": s.user,
                "transports": list(s.effective_transports),
                "stun": list(s.stun),
                "softphone_processes": list(s.softphone_processes),
                "register_binding": s.register_binding,
                "capture_seconds": s.capture_seconds if self.capture else None,
                "timeout": s.timeout,
                "checks": [c.id for c in (*self.early, *self.late)],
            },
            "pid": os.getpid(),
        }


def _profile_keys(profile: Path) -> set[str]:
    from diag.config import load_profile

    return set(load_profile(profile))


def _interfaces_now() -> object:
    """Each interface's addresses and up flag (psutil): what an address or link notification
    must have changed to be worth a sample before its time."""
    try:
        import psutil

        stats = psutil.net_if_stats()
        return sorted(
            (
                name,
                bool(stats[name].isup) if name in stats else None,
                sorted(a.address for a in addrs),
            )
            for name, addrs in psutil.net_if_addrs().items()
        )
    except Exception:  # noqa: BLE001 - unknown: every notification counts
        return object()


def _trim_heap() -> None:
    """Give freed heap back to the OS (glibc): each sample's checks run in threads of their
    own, and the per-thread malloc arenas they leave free would otherwise creep the RSS up by
    about 1 KB per sample over a shift (bench/bench_watch.py)."""
    import ctypes
    import ctypes.util

    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    trim = getattr(_LIBC, "malloc_trim", None) if _LIBC else None
    if trim is not None:
        trim(0)


_LIBC: Any = None  # ctypes.CDLL of the C library once looked up; False: none (not glibc)


def _refresh_portaudio() -> None:
    """PortAudio reads its device list once per initialisation: start it afresh so a headset
    plugged in or out since the last sample is seen (only once sounddevice is loaded). Only
    when audio_fingerprint changed: each restart through ALSA's pulse plugin leaks ~12 KB,
    a watch's RSS would grow by that every sample (bench/bench_watch.py)."""
    import sys

    sd = sys.modules.get("sounddevice")
    if sd is None:
        return
    try:
        sd._terminate()
        sd._initialize()
    except Exception:  # noqa: BLE001 - audio.backend reports a broken PortAudio itself
        pass


def _open_notifier() -> Any:
    try:
        from diag.watch_notify import open_notifier

        return open_notifier()
    except Exception:  # noqa: BLE001 - no notifications: changes are seen at the next sample
        return None


def run_watch_command(
    env: Environment,
    profile: Path | None,
    flags: Mapping[str, Any],
    interval: float | None,
    duration: str | None,
    until: str | None,
    out: str | None,
) -> int:
    settings = watch_settings(profile, flags)
    plan = plan_watch(interval, duration, until, out)
    capture = flags.get("capture_seconds") is not None or (
        profile is not None and "capture_seconds" in _profile_keys(profile)
    )
    early, late = light_checks(env.checks(), settings, capture)
    selected = [*early, *late]
    if any(c.uses_sip and all(r.is_set(settings) for r in c.requires) for c in selected):
        settings = resolve_password(settings, env.environ, env.stdin_isatty)
    watch_id = str(uuid.uuid4())
    try:
        writer = TimelineWriter(plan.out, watch_id)
    except OSError as exc:
        raise SipdiagError(
            f"cannot write the timeline {plan.out}: {exc.strerror or exc}",
            "choose another --out path or make the directory writable",
        ) from None
    if not settings.quiet:
        write_text(env.stderr, f"sipdiag watch: timeline {plan.out} (every {plan.interval:g} s)\n")
    return Watch(env, settings, (early, late), plan, writer, watch_id).run()
