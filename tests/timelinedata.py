"""Timelines for `match` and `fleet` tests, written by the real TimelineWriter (diag/timeline.py)
as `sipdiag watch` writes them: a start line naming the agent, samples, events, an end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from diag.timeline import TimelineWriter

DAY = dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)


def at(h: int, m: int, s: int = 0, day: dt.datetime = DAY) -> dt.datetime:
    return day.replace(hour=h, minute=m, second=s)


HEALTHY = {
    "registered": True, "inbound_reachable": True, "quality_ok": True, "devices_present": True,
    "softphone_running": True, "public_address": "198.51.100.7", "clock_offset_ms": 0,
}  # fmt: skip


class Watch:
    """A timeline being written; times given are the agent's own clock unless `skew_ms` is
    set, in which case they are true times and the lines carry them skewed by it."""

    def __init__(
        self,
        path: Path,
        watch_id: str,
        agent: str,
        *,
        start: dt.datetime,
        interval_s: float = 60,
        skew_ms: int = 0,
        max_bytes: int = 16 * 1024 * 1024,
        keep: int = 5,
        sip_uri: str | None = None,
        numbers: list[str] | None = None,
        hostname: str = "pc",
    ) -> None:
        self.skew = dt.timedelta(milliseconds=skew_ms)
        self.skew_ms = skew_ms
        self.writer = TimelineWriter(
            path, watch_id, max_bytes=max_bytes, keep=keep, now=lambda: start + self.skew
        )
        self.writer.write(
            "start",
            {
                "interval_s": interval_s,
                "host": {"hostname": hostname, "os": "Linux"},
                "sipdiag": "0.1.0",
                "mono": 0.0,
                "agent": {"id": agent, "sip_uri": sip_uri, "numbers": numbers or []},
            },
        )

    def sample(self, t: dt.datetime, **state: Any) -> None:
        full = {**HEALTHY, "clock_offset_ms": self.skew_ms, **state}
        self.writer.write(
            "sample",
            {"state": full, "checks": {"sip.register": {"status": "pass", "summary": "ok"}}},
            when=t + self.skew,
        )

    def event(self, t: dt.datetime, event: str, **evidence: Any) -> None:
        self.writer.write(
            "event",
            {"event": event, "evidence": evidence, "detected_by": "notification"},
            when=t + self.skew,
        )

    def end(self, t: dt.datetime, reason: str = "interrupted") -> None:
        self.writer.write("end", {"reason": reason}, when=t + self.skew)

    def close(self) -> None:
        self.writer.close()


def headset_watch(directory: Path, agent: str = "A-17", **kwargs: Any) -> Watch:
    """The issue's example: samples every minute from 11:00:30; the Jabra removed at 11:01:52
    and back at 11:03:05 (the 11:02:30 sample sees no device); registration lost at 11:04:30
    (samples 11:04:30 to 11:06:30 unregistered), back at 11:07:10."""
    w = Watch(directory / f"{agent}.jsonl", f"watch-{agent}", agent, start=at(11, 0), **kwargs)
    w.sample(at(11, 0, 30))
    w.sample(at(11, 1, 30))
    w.event(at(11, 1, 52), "audio_device_removed", name="Jabra Evolve")
    w.sample(at(11, 2, 30), devices_present=False)
    w.event(at(11, 3, 5), "audio_device_added", name="Jabra Evolve")
    w.sample(at(11, 3, 30))
    w.event(at(11, 4, 30), "registration_lost", code=408, reason="Request Timeout")
    for m in (4, 5, 6):
        w.sample(at(11, m, 30), registered=False)
    w.event(at(11, 7, 10), "registration_recovered", code=200)
    w.sample(at(11, 7, 30))
    w.sample(at(11, 8, 30))
    return w
