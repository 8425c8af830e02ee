"""`fleet` output for `sipdiag watch` timelines (issue 18): the Prometheus series per agent
watched and the ECS documents (a `sipdiag.run` sample summary per watch and hour, a
`sipdiag.watch_event` per event), beside diag/render/fleet.py's for reports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ECS_VERSION = "8.11.0"  # fleet.py's documents use it too
_WARNING = 2  # event.severity of a warning, as a finding's


def watch_families(s: Mapping[str, Any]) -> list[Any]:
    """The timelines' series (issue 18), one sample per agent watched."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=["agent"])

    registered = gauge(
        "sipdiag_watch_registered_ratio", "Share of the watched time the agent was registered."
    )
    reachable = gauge(
        "sipdiag_watch_inbound_reachable_ratio",
        "Share of the watched time requests from the platform reached the agent.",
    )
    last = gauge(
        "sipdiag_watch_last_sample_timestamp_seconds",
        "Time of the agent's newest timeline sample (Unix seconds).",
    )
    stopped = gauge(
        "sipdiag_watch_stopped_reporting",
        "1 when the agent's newest watch stopped sampling without an end line.",
    )
    events = CounterMetricFamily(
        "sipdiag_watch_events",
        "Timeline events of the agent, by event.",
        labels=["agent", "event"],
    )
    for a in s.get("watch_agents", []):
        if a["registered_ratio"] is not None:
            registered.add_metric([a["agent"]], a["registered_ratio"])
        if a["inbound_reachable_ratio"] is not None:
            reachable.add_metric([a["agent"]], a["inbound_reachable_ratio"])
        last.add_metric([a["agent"]], a["last_sample_timestamp"])
        stopped.add_metric([a["agent"]], int(a["stopped_reporting"]))
        for event, n in sorted(a["events"].items()):
            events.add_metric([a["agent"], event], n)
    return [registered, reachable, last, stopped, events]


def _watch_user(x: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": x["agent_id"], "name": x["sip_uri"]}


def hour_document(h: Mapping[str, Any]) -> dict[str, Any]:
    """A watch's samples in one UTC hour (event.dataset sipdiag.run, like a report's run): a
    dashboard counts healthy hours and sees agents whose documents stop."""
    shares = {k: h[k] for k in h if k.endswith("_ratio")}
    said = ", ".join(
        f"{k.removesuffix('_ratio').replace('_', ' ')} {v * 100:.0f}%"
        for k, v in shares.items()
        if v is not None
    )
    return {
        "@timestamp": h["hour"],
        "ecs": {"version": ECS_VERSION},
        "message": f"sipdiag watch {'healthy' if h['healthy'] else 'degraded'}: {h['samples']} "
        f"samples ({said or 'nothing measured'}), {h['events']} events",
        "log": {"level": "info" if h["healthy"] else "warning"},
        "event": {
            "kind": "event",
            "category": ["host"],
            "type": ["info"],
            "outcome": "success" if h["healthy"] else "failure",
            "id": f"{h['watch_id']}:{h['hour']}",
            "dataset": "sipdiag.run",
            "module": "sipdiag",
            "start": h["first_sample"],
            "end": h["last_sample"],
            "severity": 0 if h["healthy"] else _WARNING,
        },
        "host": {"name": h["hostname"]},
        "user": _watch_user(h),
        "labels": {"watch_id": h["watch_id"], "verdict": "healthy" if h["healthy"] else "degraded"},
        "sipdiag": {
            "watch_id": h["watch_id"],
            "agent": h["agent"],
            "summary": "hour",
            "samples": h["samples"],
            **shares,
            "events": h["events"],
            "event_names": h["event_names"],
        },
    }


def event_document(e: Mapping[str, Any]) -> dict[str, Any]:
    """One timeline event (event.dataset sipdiag.watch_event)."""
    return {
        "@timestamp": e["time"],
        "ecs": {"version": ECS_VERSION},
        "message": f"sipdiag watch event {e['event']}",
        "log": {"level": "info"},
        "event": {
            "kind": "event",
            "category": [_WATCH_EVENT_CATEGORY.get(e["event"].split("_")[0], "host")],
            "type": ["change"],
            "action": e["event"],
            "id": f"{e['watch_id']}:{e['time']}:{e['event']}",
            "dataset": "sipdiag.watch_event",
            "module": "sipdiag",
        },
        "host": {"name": e["hostname"]},
        "user": _watch_user(e),
        "labels": {"watch_id": e["watch_id"]},
        "sipdiag": {
            "watch_id": e["watch_id"],
            "agent": e["agent"],
            "event": e["event"],
            "evidence": e["evidence"],
        },
    }


_WATCH_EVENT_CATEGORY = {
    "interface": "network", "address": "network", "route": "network", "vpn": "network",
    "public": "network", "inbound": "network", "quality": "network",
    "registration": "authentication", "audio": "host", "sleep": "host", "softphone": "process",
}  # fmt: skip
