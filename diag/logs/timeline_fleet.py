"""`fleet` over `sipdiag watch` timelines (timeline_set's tables): per agent the share of time it
was registered and reachable, the count of each event and when it last sampled; per watch and
UTC hour a sample summary (ECS `sipdiag.run` documents); the events themselves.

Share of time: each sample's state holds from it until the next sample of its watch, at most two
intervals (a longer gap, the machine asleep or the watch stopped, observed nothing); the last
sample counts one interval. A share is over the time where that state was measured (not null).
An agent "stopped reporting" when its newest watch has no `end` line and its last sample is more
than three intervals older than the newest sample of any timeline read (the files' own clock, so
the output is the same for the same files).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

RATIOS = ("registered", "inbound_reachable", "devices_present", "quality_ok")
HOUR_US = 3_600_000_000


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    t = dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ratio_sql(state: str) -> str:
    return (
        f"round(sum(dur) FILTER ({state}) / nullif(sum(dur) FILTER ({state} IS NOT NULL), 0), 4)"
        f" AS {state}_ratio"
    )


def summarise(con: Any, since_us: int | None, details: bool = True) -> dict[str, Any]:
    """`watch_agents`, `watch_hours` and `watch_events` of the fleet summary; the last two
    empty unless `details` (the formats that show them: a week of 10,000 watches is 1.7 million
    hours)."""
    since = f"true_us >= {int(since_us)}" if since_us is not None else "true"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW watch_spans AS
        SELECT s.*, least(coalesce(lead(true_us) OVER (PARTITION BY w ORDER BY true_us)
                                   - true_us, iv), 2 * iv) AS dur
        FROM (SELECT s.*, CAST(coalesce(w.interval_s, 60) * 1e6 AS BIGINT) AS iv
              FROM samples s JOIN watches w USING (w) WHERE {since}) s"""
    ).fetchall()
    con.execute(
        """CREATE OR REPLACE TEMP VIEW watch_agent AS
        SELECT w, watch_id, coalesce(agent_id, sip_uri, hostname) AS agent, agent_id, sip_uri,
               hostname FROM watches"""
    ).fetchall()
    ratios = ", ".join(_ratio_sql(s) for s in RATIOS)
    per_watch = con.execute(
        f"""SELECT a.agent, s.w, count(*) AS samples, min(true_us), max(true_us), sum(dur),
                   any_value(iv), {ratios}
        FROM watch_spans s JOIN watch_agent a USING (w) GROUP BY a.agent, s.w"""
    ).fetchall()
    agents = con.execute(
        f"""SELECT a.agent, count(DISTINCT s.w), count(*), min(true_us), max(true_us),
                   sum(dur), any_value(a.hostname), any_value(a.agent_id), any_value(a.sip_uri),
                   {ratios}
        FROM watch_spans s JOIN watch_agent a USING (w) GROUP BY a.agent ORDER BY a.agent"""
    ).fetchall()
    events = con.execute(
        f"""SELECT a.agent, e.event, count(*) FROM events e JOIN watch_agent a USING (w)
        WHERE {since} GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    ends = dict(con.execute("SELECT w, arg_max(reason, true_us) FROM ends GROUP BY w").fetchall())
    newest_all = max((r[4] for r in per_watch), default=None)
    newest_watch: dict[str, tuple[int, int, int]] = {}  # agent -> (last sample, watch, interval)
    for agent, w, _n, _first, last, _dur, iv, *_ in per_watch:
        if agent not in newest_watch or last > newest_watch[agent][0]:
            newest_watch[agent] = (last, w, iv)
    counts: dict[str, dict[str, int]] = {}
    for agent, event, n in events:
        counts.setdefault(agent, {})[event] = int(n)
    watch_agents = []
    for agent, watches, samples, first, last, observed, host, agent_id, sip_uri, *shares in agents:
        _, w, iv = newest_watch[agent]
        ended = ends.get(w)
        stopped = ended is None and newest_all is not None and last < newest_all - 3 * iv
        watch_agents.append(
            {
                "agent": agent,
                "agent_id": agent_id,
                "sip_uri": sip_uri,
                "hostname": host,
                "watches": int(watches),
                "samples": int(samples),
                "first_sample": _iso(first),
                "last_sample": _iso(last),
                "last_sample_timestamp": last / 1e6,
                "observed_s": round(observed / 1e6, 1),
                **{f"{s}_ratio": r for s, r in zip(RATIOS, shares, strict=True)},
                "events": counts.get(agent, {}),
                "ended": ended,
                "stopped_reporting": bool(stopped),
            }
        )
    return {
        "watch_agents": watch_agents,
        "watch_hours": _hours(con, since, ratios) if details else [],
        "watch_events": _events(con, since) if details else [],
    }


def _hours(con: Any, since: str, ratios: str) -> list[dict[str, Any]]:
    """One sample summary per watch and UTC hour, oldest first."""
    rows = con.execute(
        f"""WITH h AS (
          SELECT a.watch_id, a.agent, a.agent_id, a.sip_uri, a.hostname,
                 s.true_us // {HOUR_US} AS hour, count(*) AS samples, min(true_us) AS first,
                 max(true_us) AS last, {ratios}
          FROM watch_spans s JOIN watch_agent a USING (w) GROUP BY ALL),
        e AS (SELECT a.watch_id, true_us // {HOUR_US} AS hour, count(*) AS events,
                     list(DISTINCT event ORDER BY event) AS names
              FROM events e JOIN watch_agent a USING (w) WHERE {since} GROUP BY ALL)
        SELECT h.*, coalesce(e.events, 0), coalesce(e.names, [])
        FROM h LEFT JOIN e USING (watch_id, hour) ORDER BY hour, watch_id"""
    ).fetchall()
    out = []
    for watch_id, agent, agent_id, sip_uri, host, hour, n, first, last, *rest in rows:
        shares = dict(zip((f"{s}_ratio" for s in RATIOS), rest[: len(RATIOS)], strict=True))
        events, names = rest[len(RATIOS) :]
        healthy = all(v is None or v == 1 for v in shares.values())
        out.append(
            {
                "watch_id": watch_id,
                "agent": agent,
                "agent_id": agent_id,
                "sip_uri": sip_uri,
                "hostname": host,
                "hour": _iso(hour * HOUR_US),
                "first_sample": _iso(first),
                "last_sample": _iso(last),
                "samples": int(n),
                **shares,
                "events": int(events),
                "event_names": list(names),
                "healthy": healthy,
            }
        )
    return out


def _events(con: Any, since: str) -> list[dict[str, Any]]:
    """Every event, oldest first, with its evidence as parsed JSON."""
    import json

    rows = con.execute(
        f"""SELECT a.watch_id, a.agent, a.agent_id, a.sip_uri, a.hostname, e.true_us, e.event,
                   e.evidence
        FROM events e JOIN watch_agent a USING (w) WHERE {since}
        ORDER BY e.true_us, a.watch_id, e.event"""
    ).fetchall()
    out = []
    for watch_id, agent, agent_id, sip_uri, host, t, event, evidence in rows:
        try:
            parsed = json.loads(evidence)
        except ValueError:
            parsed = {}
        out.append(
            {
                "watch_id": watch_id,
                "agent": agent,
                "agent_id": agent_id,
                "sip_uri": sip_uri,
                "hostname": host,
                "time": _iso(t),
                "event": event,
                "evidence": parsed if isinstance(parsed, dict) else {},
            }
        )
    return out
