"""Output of `fleet`: text, JSON, Markdown, Prometheus textfile, ECS ndjson.

Saved reports are text from outside: text and Markdown neutralise every string of the summary
(diag/render/safe.py), Markdown escapes each field as well; JSON, Prometheus and ECS keep them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from diag.render.fleet_timeline import ECS_VERSION as ECS_VERSION
from diag.render.fleet_timeline import event_document, hour_document, watch_families
from diag.render.safe import md_code, md_text, neutralise_tree


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def render_fleet(summary: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return _json(summary)
    if fmt == "prom":
        return render_prom(summary)
    if fmt == "ndjson":
        return "".join(json.dumps(d, sort_keys=True) + "\n" for d in ecs_documents(summary))
    if fmt == "md":
        return _fleet_md(neutralise_tree(summary))
    return _fleet_text(neutralise_tree(summary))


def _fleet_text(s: Mapping[str, Any]) -> str:
    v, a = s["verdicts"], s["agent_verdicts"]
    lines = [
        f"reports {s['reports_read']} (skipped {s['reports_skipped']}"
        + (f", before --since {s['excluded_by_since']}" if s["since"] else "")
        + f"): {', '.join(f'{k} {n}' for k, n in v.items())}",
        f"agents {len(s['agents'])} (newest report): {', '.join(f'{k} {n}' for k, n in a.items())}",
    ]
    lines += [f"  skipped {x['path']}: {x['reason']}" for x in s["skipped"]]
    sections: list[tuple[str, list[str]]] = [
        (
            "Findings by cause (agents now / reports)",
            [
                f"  {c['cause']} [{c['family']}]: {c['agents']} / {c['reports']}"
                for c in s["findings_by_cause"]
            ],
        ),
        ("By public address", _group_lines(s["by_public_address"])),
        ("By subnet", _group_lines(s["by_subnet"])),
        (
            "By day",
            [
                f"  {d['day']}: {d['reports']} reports, failing {d['failing']}, "
                f"degraded {d['degraded']}"
                for d in s["by_day"]
            ],
        ),
        (
            "Verdict changed",
            [
                f"  {c['agent']}: {c['previous_verdict']} -> {c['verdict']} ({c['started_at']})"
                for c in s["verdict_changed"]
            ],
        ),
        (
            "Agents (newest report)",
            [
                f"  {x['agent']}: {x['verdict']} {x['started_at']} {x['run_id'][:8]} "
                f"{' '.join(x['causes'])}".rstrip()
                for x in s["agents"]
            ],
        ),
    ]
    if s.get("timelines_read") or s.get("timelines_skipped"):
        lines += ["", f"timelines {s['timelines_read']} (skipped {s['timelines_skipped']})"]
        lines += [f"  skipped {x['path']}: {x['reason']}" for x in s["skipped_timelines"]]
    sections.append(
        (
            "Agents watched (share of time registered / inbound reachable, events)",
            [
                f"  {a['agent']}: registered {_share(a['registered_ratio'])}, reachable "
                f"{_share(a['inbound_reachable_ratio'])}, {a['samples']} samples until "
                f"{a['last_sample']}"
                + ("; stopped reporting" if a["stopped_reporting"] else "")
                + (f"; ended ({a['ended']})" if a["ended"] else "")
                + (f"; {_tally(a['events'])}" if a["events"] else "")
                for a in s.get("watch_agents", [])
            ],
        )
    )
    for title, body in sections:
        if body:
            lines += ["", title + ":", *body]
    return "\n".join(lines) + "\n"


def _share(ratio: float | None) -> str:
    return "not measured" if ratio is None else f"{ratio * 100:.1f}%"


def _tally(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def _group_lines(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"  {g['key']}: {g['agents']} agents, {g['failing']} failing"
        + (f" ({', '.join(f'{c} {n}' for c, n in g['causes'].items())})" if g["causes"] else "")
        for g in groups
    ]


def _fleet_md(s: Mapping[str, Any]) -> str:
    t = md_text

    def tally(counts: Mapping[str, Any]) -> str:
        return t(", ".join(f"{k} {n}" for k, n in counts.items()))

    out = [
        "# sipdiag fleet",
        "",
        f"- Reports: {s['reports_read']} ({tally(s['verdicts'])}); skipped {s['reports_skipped']}",
        f"- Agents: {len(s['agents'])} ({tally(s['agent_verdicts'])})",
        "",
        "## Findings by cause",
        "",
        "| cause | family | agents (newest report) | reports |",
        "|---|---|---|---|",
        *(
            f"| {md_code(c['cause'])} | {t(c['family'])} | {t(c['agents'])} | {t(c['reports'])} |"
            for c in s["findings_by_cause"]
        ),
        "",
        "## By public address",
        "",
        "| address | agents | failing | causes |",
        "|---|---|---|---|",
        *(
            f"| {t(g['key'])} | {t(g['agents'])} | {t(g['failing'])} | {tally(g['causes'])} |"
            for g in s["by_public_address"]
        ),
        "",
        "## Agents",
        "",
        "| agent | verdict | previous | last run | causes |",
        "|---|---|---|---|---|",
        *(
            f"| {t(a['agent'])} | {t(a['verdict'])} | {t(a['previous_verdict'])} | "
            f"{t(a['started_at'])} | {t(', '.join(a['causes']))} |"
            for a in s["agents"]
        ),
    ]
    if s.get("watch_agents"):
        out += [
            "",
            "## Agents watched",
            "",
            "| agent | registered | inbound reachable | samples | last sample | stopped reporting "
            "| events |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {t(a['agent'])} | {t(_share(a['registered_ratio']))} | "
                f"{t(_share(a['inbound_reachable_ratio']))} | {t(a['samples'])} | "
                f"{t(a['last_sample'])} | {t('yes' if a['stopped_reporting'] else 'no')} | "
                f"{t(_tally(a['events']))} |"
                for a in s["watch_agents"]
            ),
        ]
    skipped_files = [*s["skipped"], *s.get("skipped_timelines", [])]
    if skipped_files:
        out += [
            "",
            "## Skipped files",
            "",
            *(f"- {md_code(x['path'])}: {t(x['reason'])}" for x in skipped_files),
        ]
    return "\n".join(out) + "\n"


def render_prom(s: Mapping[str, Any]) -> str:
    """node_exporter textfile format; families and samples sorted, so output is deterministic."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    def families() -> list[GaugeMetricFamily]:
        reports = GaugeMetricFamily(
            "sipdiag_reports", "Reports read, by verdict.", labels=["verdict"]
        )
        for verdict, n in s["verdicts"].items():
            reports.add_metric([verdict], n)
        skipped = GaugeMetricFamily(
            "sipdiag_reports_skipped", "Files skipped as unreadable or not sipdiag reports."
        )
        skipped.add_metric([], s["reports_skipped"])
        agents = GaugeMetricFamily(
            "sipdiag_agents", "Agents by the verdict of their newest report.", labels=["verdict"]
        )
        for verdict, n in s["agent_verdicts"].items():
            agents.add_metric([verdict], n)
        findings = GaugeMetricFamily(
            "sipdiag_findings",
            "Agents whose newest report has this finding.",
            labels=["cause", "family"],
        )
        for c in sorted(s["findings_by_cause"], key=lambda c: c["cause"]):
            findings.add_metric([c["cause"], c["family"]], c["agents"])
        site = GaugeMetricFamily(
            "sipdiag_public_address_findings",
            "Agents behind this public address whose newest report has this finding.",
            labels=["public_address", "cause"],
        )
        for g in sorted(s["by_public_address"], key=lambda g: g["key"]):
            for cause, n in g["causes"].items():
                site.add_metric([g["key"], cause], n)
        last = GaugeMetricFamily(
            "sipdiag_last_run_timestamp_seconds",
            "Start time of the agent's newest report (Unix seconds).",
            labels=["agent"],
        )
        verdict = GaugeMetricFamily(
            "sipdiag_agent_verdict",
            "1 for the verdict of the agent's newest report, 0 for the others.",
            labels=["agent", "verdict"],
        )
        for a in s["agents"]:
            last.add_metric([a["agent"]], a["last_run_timestamp"])
            for v in ("healthy", "degraded", "failing"):
                verdict.add_metric([a["agent"], v], int(a["verdict"] == v))
        return [reports, skipped, agents, findings, site, last, verdict, *watch_families(s)]

    class _Fleet(Collector):
        def collect(self) -> Any:
            return iter(families())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fleet())
    return generate_latest(registry).decode("utf-8")


_ECS_CATEGORY = {
    "audio_device": "host",
    "host": "host",
    "network_firewall": "network",
    "registration": "authentication",
    "number_permission": "configuration",
}
_ECS_SEVERITY = {"critical": 3, "warning": 2, "info": 1}


def _run_document(r: Mapping[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """The run itself (event.dataset sipdiag.run), healthy or not, so that a dashboard can count
    healthy runs and see agents that stopped reporting, not only findings."""
    findings = r["findings"]
    worst = max(
        (f["severity"] for f in findings), key=lambda v: _ECS_SEVERITY.get(v, 0), default="info"
    )
    causes = [f["cause"] for f in findings]
    return {
        "@timestamp": r["started_at"],
        "ecs": {"version": ECS_VERSION},
        "message": f"sipdiag run {r['verdict']}"
        + (f": {', '.join(causes)}" if causes else ": no findings"),
        "log": {"level": worst},
        "event": {
            "kind": "event",
            "category": ["host"],
            "type": ["info"],
            "outcome": "success" if r["verdict"] == "healthy" else "failure",
            "id": r["run_id"],
            "dataset": "sipdiag.run",
            "module": "sipdiag",
            "severity": _ECS_SEVERITY.get(worst, 0) if causes else 0,
        },
        "host": host,
        "user": {"id": r["agent_id"], "name": r["sip_uri"]},
        "labels": {"run_id": r["run_id"], "verdict": r["verdict"]},
        "sipdiag": {
            "run_id": r["run_id"],
            "agent": r["agent"],
            "verdict": r["verdict"],
            "findings": len(findings),
            "causes": causes,
            "public_addresses": r["public_addresses"],
        },
    }


def ecs_documents(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Elastic Common Schema documents, oldest report first: per report one for the run
    (event.dataset sipdiag.run), then one per finding (sipdiag.finding); then per watch and
    UTC hour one sample summary (sipdiag.run), and one per timeline event
    (sipdiag.watch_event), oldest first."""
    docs = []
    for r in s["reports"]:
        host: dict[str, Any] = {"name": r["hostname"], "ip": r["local_addresses"]}
        if r["os"]:
            host["os"] = {"name": r["os"]}
        docs.append(_run_document(r, host))
        for f in r["findings"]:
            doc: dict[str, Any] = {
                "@timestamp": r["started_at"],
                "ecs": {"version": ECS_VERSION},
                "message": f"{f['cause']}: {f['title']}",
                "log": {"level": f["severity"]},
                "event": {
                    "kind": "event",
                    "category": [_ECS_CATEGORY.get(f["family"], "host")],
                    "type": ["error" if f["severity"] == "critical" else "info"],
                    "outcome": "failure",
                    "code": f["cause"],
                    "id": f"{r['run_id']}:{f['cause']}",
                    "dataset": "sipdiag.finding",
                    "module": "sipdiag",
                    "severity": _ECS_SEVERITY.get(f["severity"], 0),
                    "reason": f.get("explanation") or f["title"],
                },
                "host": host,
                "user": {"id": r["agent_id"], "name": r["sip_uri"]},
                "rule": {"id": f["cause"], "name": f["title"], "category": f["family"]},
                "labels": {"run_id": r["run_id"], "verdict": r["verdict"]},
                "sipdiag": {
                    "run_id": r["run_id"],
                    "agent": r["agent"],
                    "verdict": r["verdict"],
                    "cause": f["cause"],
                    "family": f["family"],
                    "severity": f["severity"],
                    "action": f.get("action"),
                    "public_addresses": r["public_addresses"],
                },
            }
            docs.append(doc)
    docs += [hour_document(h) for h in s.get("watch_hours", [])]
    docs += [event_document(e) for e in s.get("watch_events", [])]
    return docs
