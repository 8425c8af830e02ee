"""`sipdiag fleet`: many agents' reports summarised (verdicts, causes, sites, days, changes).

Current-state figures (agents, findings by cause, by public address and subnet) use each agent's
newest report; per-day figures and the verdict totals use every report read.
An agent is `agent.id`, else `agent.sip_uri`, else the host name. `sipdiag watch` timelines among
the paths are summarised per agent as well (diag/logs/timeline_fleet.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.logs import report_set, timeline_fleet, timeline_set

VERDICTS = ("healthy", "degraded", "failing")


def parse_since(text: str, now: float | None = None) -> int:
    """'2026-11-20', an RFC 3339 time, or a duration ago ('7d', '12h') -> UTC epoch µs."""
    t = text.strip()
    if re.fullmatch(r"\d+\s*[smhd]", t.lower()):
        from diag.logs.match import parse_duration

        return int(((now or time.time()) - parse_duration(t, "--since")) * 1_000_000)
    try:
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid --since '{text}'", "use a date (2026-11-20), an RFC 3339 time or 7d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1_000_000)


def subnet(address: str) -> str | None:
    """The /24 (IPv4) or /64 (IPv6) an agent's local address is in."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if ip.is_link_local or ip.is_loopback:  # every machine has these: they say nothing of a site
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def iso(us: int) -> str:
    t = dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_fleet(
    paths: Sequence[Path], since_us: int | None, timeline_details: bool = True
) -> dict[str, Any]:
    """The fleet summary; `timeline_details`: the timelines' hour summaries and events too
    (JSON and ECS show them)."""
    (files, skipped), timelines = timeline_set.split(paths)
    con = report_set.connect()
    loaded = report_set.to_table(con, report_set.parse_files(files, skipped))
    watches = timeline_set.load(con, timelines)
    rows = con.execute(
        """SELECT run_id, started_us, coalesce(agent_id, sip_uri, hostname) AS agent, hostname,
                  verdict, findings, local_addresses, public_addresses, path, agent_id, sip_uri,
                  os, clock_offset_ms
           FROM reports ORDER BY started_us, run_id"""
    ).fetchall()
    names = (
        "run_id started_us agent hostname verdict findings local_addresses public_addresses "
        "path agent_id sip_uri os clock_offset_ms"
    ).split()
    reports = [dict(zip(names, r, strict=True)) for r in rows]
    excluded = 0
    if since_us is not None:
        kept = [r for r in reports if r["started_us"] >= since_us]
        excluded, reports = len(reports) - len(kept), kept

    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in reports:
        history[r["agent"]].append(r)
    newest = {agent: runs[-1] for agent, runs in history.items()}

    by_cause: dict[str, dict[str, Any]] = {}
    for r in reports:
        for f in r["findings"]:
            entry = by_cause.setdefault(
                f["cause"], {"cause": f["cause"], "family": f["family"], "reports": 0, "agents": 0}
            )
            entry["reports"] += 1
    for r in newest.values():
        for cause in {f["cause"] for f in r["findings"]}:
            by_cause[cause]["agents"] += 1

    summary: dict[str, Any] = {
        "reports_read": len(reports),
        "reports_skipped": len(loaded.skipped),
        "skipped": loaded.skipped,
        "since": iso(since_us) if since_us is not None else None,
        "excluded_by_since": excluded,
        "verdicts": _count((r["verdict"] for r in reports), VERDICTS),
        "agent_verdicts": _count((r["verdict"] for r in newest.values()), VERDICTS),
        "findings_by_cause": sorted(by_cause.values(), key=lambda c: (-c["agents"], c["cause"])),
        "findings_by_family": dict(
            sorted(Counter(f["family"] for r in reports for f in r["findings"]).items())
        ),
        "by_public_address": _group(newest.values(), lambda r: r["public_addresses"]),
        "by_subnet": _group(
            newest.values(),
            lambda r: sorted({s for a in r["local_addresses"] if (s := subnet(a))}),
        ),
        "by_day": _by_day(reports),
        "agents": [_agent(agent, history[agent]) for agent in sorted(history)],
        "verdict_changed": [],
        "timelines_read": watches,
        "timelines_skipped": len(timelines.skipped),
        "skipped_timelines": timelines.skipped,
        **timeline_fleet.summarise(con, since_us, timeline_details),
    }
    summary["verdict_changed"] = [
        {k: a[k] for k in ("agent", "previous_verdict", "verdict", "run_id", "started_at")}
        for a in summary["agents"]
        if a["previous_verdict"] is not None and a["previous_verdict"] != a["verdict"]
    ]
    summary["reports"] = [
        {
            "run_id": r["run_id"],
            "started_at": iso(r["started_us"]),
            "agent": r["agent"],
            "agent_id": r["agent_id"],
            "sip_uri": r["sip_uri"],
            "hostname": r["hostname"],
            "os": r["os"],
            "verdict": r["verdict"],
            "local_addresses": r["local_addresses"],
            "public_addresses": r["public_addresses"],
            "findings": r["findings"],
        }
        for r in reports
    ]
    return summary


def _count(values: Any, keys: Sequence[str]) -> dict[str, int]:
    counts = Counter(values)
    return {k: counts.get(k, 0) for k in keys} | {
        k: v for k, v in sorted(counts.items()) if k not in keys
    }


def _group(newest: Any, keys_of: Any) -> list[dict[str, Any]]:
    """Agents grouped by a key (public address, subnet): how many fail, and with which causes."""
    groups: dict[str, dict[str, Any]] = {}
    for r in newest:
        for key in keys_of(r):
            g = groups.setdefault(key, {"key": key, "agents": 0, "failing": 0, "causes": Counter()})
            g["agents"] += 1
            g["failing"] += r["verdict"] == "failing"
            g["causes"].update({f["cause"] for f in r["findings"]})
    return [
        {**g, "causes": dict(sorted(g["causes"].items()))}
        for g in sorted(groups.values(), key=lambda g: (-g["failing"], g["key"]))
    ]


def _by_day(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for r in reports:
        day = iso(r["started_us"])[:10]
        d = days.setdefault(day, {"day": day, "reports": 0, **dict.fromkeys(VERDICTS, 0)})
        d["reports"] += 1
        d[r["verdict"]] = d.get(r["verdict"], 0) + 1
        causes = d.setdefault("causes", Counter())
        causes.update(f["cause"] for f in r["findings"])
    return [
        {**d, "causes": dict(sorted(d.get("causes", Counter()).items()))}
        for _, d in sorted(days.items())
    ]


def _agent(agent: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    last = runs[-1]
    return {
        "agent": agent,
        "run_id": last["run_id"],
        "started_at": iso(last["started_us"]),
        "last_run_timestamp": last["started_us"] / 1e6,
        "hostname": last["hostname"],
        "verdict": last["verdict"],
        "previous_verdict": runs[-2]["verdict"] if len(runs) > 1 else None,
        "reports": len(runs),
        "causes": sorted({f["cause"] for f in last["findings"]}),
    }
