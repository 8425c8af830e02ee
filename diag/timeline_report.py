"""What a watch's timeline says (issue 18's `sipdiag report TIMELINE.jsonl`): time in each state,
every event, the worst moments, and a compact series for the lanes chart.

`summarise` is pure: lines in (as diag/timeline.py's `read_lines` yields them), a JSON-ready dict
out; the renderers (diag/render/timeline.py) only format it. Time rules:

- a sample's state holds from its `t` until the next sample's `t`;
- the last sample of a watch holds one interval (cut at the watch's `end` line if that is sooner);
- a gap longer than GAP_INTERVALS intervals (a sleep, a stopped watch): the sample before it holds
  one interval and the rest of the gap is unknown, as is a state a sample did not measure (null).

Shares are over the sampled span (first sample to the end of the last one). A file may hold more
than one watch (a service restarted onto the same file): they are read as one timeline, each
sample timed with its own watch's interval.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.report import rfc3339

STATE_KEYS = (
    "registered", "inbound_reachable", "quality_ok", "devices_present", "softphone_running",
)  # fmt: skip
# The states whose false makes a "worst moment" (the list).
WORST_KEYS = ("registered", "inbound_reachable", "quality_ok", "devices_present")
GAP_INTERVALS = 3
DEFAULT_INTERVAL_S = 60.0  # when no start line says (a file whose first lines were rotated away)
# The latest time a timeline can say (it writes milliseconds): a sample held past it (a clock set
# to year 9999, a huge interval) is cut there, and offsets added back to `from` stay in range.
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=dt.timezone.utc)
NO_END = "no end line: the watch was killed or is still running"
# The chart's lanes, top to bottom: lane -> the sample state it shows (network: its default route).
LANES = {
    "registration": "registered",
    "inbound": "inbound_reachable",
    "quality": "quality_ok",
    "audio": "devices_present",
    "network": "default_route",
}
EVENT_LANE = {
    "registration_lost": "registration", "registration_refused": "registration",
    "registration_recovered": "registration", "softphone_started": "registration",
    "softphone_stopped": "registration",
    "inbound_lost": "inbound", "inbound_recovered": "inbound",
    "quality_below_threshold": "quality", "quality_recovered": "quality",
    "audio_device_added": "audio", "audio_device_removed": "audio",
    "audio_default_changed": "audio",
}  # fmt: skip  # every other event (interfaces, routes, VPN, sleep, mapping): network
METRICS = ("rtt_ms", "jitter_ms", "loss_pct", "mos")
HINT = "give a timeline written by `sipdiag watch` (JSON Lines; `sipdiag schema --timeline`)"


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:  # Python 3.10's fromisoformat does not read "Z"
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(dt.timezone.utc) if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _valid_lines(lines: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The lines that match the timeline schema and have a readable `t`, with their parsed time
    under "_t", in time order; and how many were dropped."""
    import jsonschema

    from diag.timeline import schema

    validator = jsonschema.Draft202012Validator(schema())
    kept, dropped = [], 0
    for line in lines:
        when = _time(line.get("t")) if isinstance(line, Mapping) else None
        if when is None or not validator.is_valid(line):
            dropped += 1
            continue
        try:  # a lone surrogate ("\ud800") loads, but no renderer could write it out
            json.dumps(line, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            dropped += 1
            continue
        kept.append({**line, "_t": when})
    kept.sort(key=lambda x: (x["_t"], x["seq"]))
    return kept, dropped


def _value(sample: Mapping[str, Any], key: str) -> bool | None:
    if key == "default_route":  # the network lane: a default route or none, else not measured
        network = sample.get("network")
        if not isinstance(network, Mapping) or "default_route" not in network:
            return None
        return bool(network["default_route"])
    value = sample["state"].get(key)
    return value if isinstance(value, bool) else None


def _word(value: bool | None) -> str:
    return "unknown" if value is None else ("true" if value else "false")


def _later(t: dt.datetime, seconds: float) -> dt.datetime:
    """`t` plus `seconds`, never past LATEST (nor before `t`, for a `t` already past it)."""
    if seconds >= (LATEST - t).total_seconds():
        return max(t, LATEST)
    return t + dt.timedelta(seconds=seconds)


def _spans(
    samples: list[dict[str, Any]], interval: Mapping[str, float], ends: Mapping[str, dt.datetime]
) -> list[tuple[dt.datetime, dt.datetime, dict[str, Any] | None]]:
    """The timeline cut into (from, to, sample or None = unknown) pieces by the rules above."""
    out: list[tuple[dt.datetime, dt.datetime, dict[str, Any] | None]] = []
    for i, s in enumerate(samples):
        start, watch = s["_t"], s["watch_id"]
        seconds = interval.get(watch, DEFAULT_INTERVAL_S)
        one = _later(start, seconds)
        nxt = samples[i + 1] if i + 1 < len(samples) else None
        if (
            nxt is not None
            and nxt["watch_id"] == watch
            and nxt["_t"] <= _later(start, GAP_INTERVALS * seconds)
        ):
            out.append((start, nxt["_t"], s))
            continue
        stop = one
        end = ends.get(watch)
        if end is not None and start < end < stop:
            stop = end
        if nxt is not None and nxt["_t"] < stop:
            stop = nxt["_t"]
        out.append((start, stop, s))
        if nxt is not None and nxt["_t"] > stop:
            out.append((stop, nxt["_t"], None))
    return out


def _seconds(a: dt.datetime, b: dt.datetime) -> float:
    return round((b - a).total_seconds(), 3)


def _event(line: Mapping[str, Any], t0: dt.datetime) -> dict[str, Any]:
    return {
        "t": line["t"],
        "offset_s": _seconds(t0, line["_t"]),
        "event": line["event"],
        "lane": EVENT_LANE.get(line["event"], "network"),
        "detected_by": line.get("detected_by"),
        "evidence": line["evidence"],
        "watch_id": line["watch_id"],
        "seq": line["seq"],
    }


def _log_rows(paired: Sequence[Mapping[str, Any]], t0: dt.datetime | None) -> list[dict[str, Any]]:
    rows = []
    for row in paired:
        when = _time(row.get("time"))
        rows.append(
            {
                "time": row.get("time"),
                "offset_s": _seconds(t0, when) if when and t0 else None,
                "status": row.get("status"),
                "likely_cause": row.get("likely_cause"),
                "explanation": row.get("explanation"),
                "call_id": row.get("call_id"),
                "_t": when,
            }
        )
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    rows.sort(key=lambda r: r["_t"] or far)
    return rows


def _worst_moments(
    spans: list[tuple[dt.datetime, dt.datetime, dict[str, Any] | None]],
    events: list[dict[str, Any]],
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Runs of pieces where a WORST_KEYS state was false, longest first. A moment's events are
    those since the last sample before it (what broke it; events seen by that sample carry its
    time) up to its end (what mended it); the same for central-log rows."""
    moments: list[dict[str, Any]] = []
    prev_start: dt.datetime | None = None
    current: dict[str, Any] | None = None
    for start, stop, s in spans:
        bad = [k for k in WORST_KEYS if s is not None and s["state"].get(k) is False]
        if bad and current is not None and current["_end"] == start:
            current["_end"] = stop
            current["states"] += [k for k in bad if k not in current["states"]]
        elif bad:
            current = {"_start": start, "_end": stop, "_since": prev_start or start, "states": bad}
            current.update(checks={}, causes=[])
            moments.append(current)
        else:
            current = None
        if bad and s is not None and current is not None:
            for cid, result in s["checks"].items():
                if result["status"] in ("fail", "warn", "error"):
                    current["checks"].setdefault(cid, {"id": cid, **result})
            current["causes"] += [c for c in s.get("causes", []) if c not in current["causes"]]
        prev_start = start if s is not None else None
    out = []
    for m in moments:
        window = (m["_since"], m["_start"], m["_end"])
        out.append(
            {
                "start": rfc3339(m["_start"]),
                "end": rfc3339(m["_end"]),
                "duration_s": _seconds(m["_start"], m["_end"]),
                "states": [k for k in WORST_KEYS if k in m["states"]],
                "events": [e for e in events if _within(_time(e["t"]), *window)],
                "checks": list(m["checks"].values()),
                "causes": m["causes"],
                "log_rows": [_public(r) for r in rows if _within(r["_t"], *window)],
            }
        )
    out.sort(key=lambda m: (-m["duration_s"], m["start"]))
    return out


def _within(
    t: dt.datetime | None, since: dt.datetime, start: dt.datetime, end: dt.datetime
) -> bool:
    return t is not None and (since < t or t == start) and t <= end


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _merge(pieces: list[list[Any]]) -> list[list[Any]]:
    merged: list[list[Any]] = []
    for piece in pieces:
        if merged and merged[-1][2] == piece[2] and merged[-1][1] == piece[0]:
            merged[-1][1] = piece[1]
        else:
            merged.append(list(piece))
    return merged


def summarise(
    lines: Iterable[Mapping[str, Any]], paired: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The summary of a timeline's lines (any order; invalid ones dropped and counted), with
    `paired` central-log rows (`match`'s: time, status, likely_cause, explanation, call_id)."""
    valid, dropped = _valid_lines(lines)
    starts = [x for x in valid if x["type"] == "start"]
    samples = [x for x in valid if x["type"] == "sample"]
    event_lines = [x for x in valid if x["type"] == "event"]
    end_lines = {x["watch_id"]: x for x in valid if x["type"] == "end"}
    interval = {x["watch_id"]: float(x["interval_s"]) for x in starts}
    watch_ids = list(dict.fromkeys(x["watch_id"] for x in valid))
    first = starts[0] if starts else {}
    spans = _spans(samples, interval, {w: e["_t"] for w, e in end_lines.items()})
    t0: dt.datetime | None = spans[0][0] if spans else (valid[0]["_t"] if valid else None)
    t1: dt.datetime | None = spans[-1][1] if spans else (valid[-1]["_t"] if valid else None)

    states: dict[str, dict[str, Any]] = {}
    for key in STATE_KEYS:
        totals = {"true": 0.0, "false": 0.0, "unknown": 0.0}
        for start, stop, s in spans:
            totals[_word(None if s is None else _value(s, key))] += (stop - start).total_seconds()
        span = sum(totals.values())
        states[key] = {
            **{f"{w}_s": round(v, 3) for w, v in totals.items()},
            **{f"{w}_pct": round(100 * v / span, 1) if span else 0.0 for w, v in totals.items()},
        }
    events = [_event(x, t0) for x in event_lines] if t0 else []
    rows = _log_rows(paired or [], t0)
    lanes: dict[str, list[list[Any]]] = {lane: [] for lane in LANES}
    for lane, key in LANES.items():
        for a, b, s in spans:
            assert t0 is not None  # spans start at t0
            lanes[lane].append(
                [_seconds(t0, a), _seconds(t0, b), _word(None if s is None else _value(s, key))]
            )
        lanes[lane] = _merge(lanes[lane])
    span_s = _seconds(t0, t1) if t0 and t1 else 0.0
    last_watch = watch_ids[-1] if watch_ids else None
    last_end = end_lines.get(last_watch) if last_watch else None
    return {
        "kind": "timeline_summary",
        "watch_id": watch_ids[0] if watch_ids else None,
        "watches": [
            {
                "watch_id": w,
                "interval_s": interval.get(w),
                "end_reason": end_lines[w]["reason"] if w in end_lines else NO_END,
            }
            for w in watch_ids
        ],
        "agent": first.get("agent") or {},
        "host": first.get("host") or {},
        "sipdiag": first.get("sipdiag"),
        "interval_s": interval.get(watch_ids[0], DEFAULT_INTERVAL_S) if watch_ids else None,
        "first_t": valid[0]["t"] if valid else None,
        "last_t": valid[-1]["t"] if valid else None,
        "span": {
            "from": rfc3339(t0) if t0 else None,
            "to": rfc3339(t1) if t1 else None,
            "seconds": span_s,
        },
        "samples": len(samples),
        "events": len(events),
        "dropped_lines": dropped,
        "end_reason": last_end["reason"] if last_end else NO_END,
        "states": states,
        "event_list": events,
        "worst_moments": _worst_moments(spans, events, rows),
        "log_rows": [_public(r) for r in rows],
        "series": {
            "from": rfc3339(t0) if t0 else None,
            "seconds": span_s,
            "lanes": lanes,
            "events": [[e["offset_s"], e["event"], e["lane"]] for e in events],
            "log_rows": [
                [r["offset_s"], r["status"]]
                for r in rows
                if r["offset_s"] is not None and 0 <= r["offset_s"] <= span_s
            ],
            "metrics": [
                [_seconds(t0, s["_t"]), *(s.get("metrics", {}).get(m) for m in METRICS)]
                for s in samples
                if t0 and s.get("metrics")
            ],
        },
    }


def looks_like_timeline(path: Path) -> bool:
    """A .jsonl file, or a file whose first complete line is a v1 `start` line."""
    if path.name.endswith(".jsonl") or ".jsonl." in path.name:
        return True
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with path.open("rb") as f:
            first = f.readline(1 << 20)
        line = json.loads(first)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(line, dict) and line.get("type") == "start" and line.get("v") == 1


def load_timeline(path: Path) -> list[dict[str, Any]]:
    """The lines of the timeline at `path` (its rotated files too); UsageError when there is no
    such regular file or not one line of timeline v1 in it."""
    from diag.timeline import read_lines

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or /dev/zero would never end
            raise UsageError(f"timeline {path} is not a regular file", HINT)
        lines = list(read_lines(path))
    except FileNotFoundError:
        raise UsageError(f"timeline {path} not found", HINT) from None
    except OSError as exc:
        raise UsageError(f"cannot read timeline {path}: {exc.strerror or exc}", HINT) from None
    except RecursionError:
        raise UsageError(f"timeline {path} has a line nested too deeply", HINT) from None
    if not lines:
        raise UsageError(f"timeline {path} has no complete line of timeline format v1", HINT)
    return lines
