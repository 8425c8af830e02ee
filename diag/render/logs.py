"""Output of `explain`, `match` and `fleet`: text, JSON, CSV, Markdown, Prometheus, ECS ndjson."""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from diag.explain import StatusEntry
    from diag.match import MatchResult

ECS_VERSION = "8.11.0"
MALFORMED_SHOWN = 10  # text/md list this many malformed lines; json lists them all


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


# ---- explain


def explanation_json(text: str, e: StatusEntry) -> dict[str, Any]:
    return {
        "input": text,
        "status": e.status,
        "sip_code": e.sip_code,
        "reason": e.reason,
        "category": e.category,
        "meaning": e.meaning,
        "typical_causes": list(e.typical_causes),
        "next_step": e.next_step,
        "checks": list(e.checks),
        "cause_ids": list(e.cause_ids),
    }


def render_explanation(
    entries: Sequence[tuple[str, StatusEntry]], families: Collection[str], fmt: str = "text"
) -> str:
    """`families`: the check families this build has; only those are offered as commands."""
    if fmt == "json":
        return _json([explanation_json(text, e) for text, e in entries])
    blocks = []
    for _text, e in entries:
        lines = [
            e.status,
            f"  category: {e.category}",
            f"  meaning:  {e.meaning}",
            "  typical causes:",
            *(f"    - {c}" for c in e.typical_causes),
            f"  next:     {e.next_step}",
        ]
        runnable = [f for f in e.checks if f.split(".")[0] in families]
        if runnable:
            lines.append(f"  sipdiag:  sipdiag check --only {' --only '.join(runnable)}")
        if e.cause_ids:
            lines.append(f"  causes:   {', '.join(e.cause_ids)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# ---- match

MATCH_COLUMNS = (
    "line", "time", "agent", "status", "category", "run_id", "matched_by", "report_offset_s",
    "findings", "likely_cause",
)  # fmt: skip


def _sql_text(col: str) -> str:
    return f"coalesce(CAST({col} AS VARCHAR), '')"


def _sql_md(col: str) -> str:
    """A Markdown table cell: `|` escaped, line breaks as one space (the regex only where a
    line break is: most cells have none, and 10^6 regex calls cost ~0.3 s)."""
    x = f"replace({_sql_text(col)}, '|', '\\|')"
    return (
        f"CASE WHEN strpos({x}, chr(10)) > 0 OR strpos({x}, chr(13)) > 0 "
        f"THEN regexp_replace({x}, '[\r\n]+', ' ', 'g') ELSE {x} END"
    )


_CELL = {c: "finding_causes" if c == "findings" else c for c in MATCH_COLUMNS}
_JSON_COLUMNS = ", ".join((
    "line", "time", "agent", "status", "explained_as", "category", "call_id", "number",
    "run_id", "matched_by", "report_offset_s", "findings", "likely_cause",
))  # fmt: skip
_TEXT_ROW = (
    "time || '  ' || coalesce(agent, number, '') || '  ' || status || '  [' || category || ']  '"
    " || coalesce(left(run_id, 8), 'no report') || '  -> ' || likely_cause"
)


@contextlib.contextmanager
def _copy_file(result: MatchResult, select: str, options: str) -> Iterator[Path]:
    """DuckDB's own writer (parallel, does the quoting) into a temporary file, in line order."""
    with tempfile.TemporaryDirectory(prefix="sipdiag-") as tmp:
        out = Path(tmp) / "rows"
        result.con.execute(
            f"COPY (SELECT {select} FROM match_rows ORDER BY line) TO '{out}' ({options})"
        ).fetchall()
        yield out


def _emit(result: MatchResult, select: str, options: str, out: TextIO) -> None:
    """The rows DuckDB writes, copied into `out`: to a UTF-8 stream's binary buffer as they are
    (10^5 rows and more: a decode and an encode of the whole output cost ~0.2 s), else as text."""
    binary = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None) or ""
    with _copy_file(result, select, options) as path:
        # Where text streams write "\r\n" (Windows), the rows go through the text stream too.
        utf8 = bool(encoding) and codecs.lookup(encoding).name == "utf-8"
        if binary is not None and utf8 and os.linesep == "\n":
            out.flush()
            with path.open("rb") as rows:
                shutil.copyfileobj(rows, binary, 1 << 20)
            binary.flush()
        else:
            with path.open(encoding="utf-8", newline="") as rows:
                shutil.copyfileobj(rows, out, 1 << 20)


_CSV_SELECT = ", ".join(f"{_CELL[c]} AS {c}" for c in MATCH_COLUMNS)
_CSV_OPTIONS = "FORMAT csv, HEADER false"
# One pre-rendered text column per row, written as it is: no quoting, no escaping.
_RAW_OPTIONS = "FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIM '\x1f'"
_MD_ROW = "'| ' || " + " || ' | ' || ".join(_sql_md(_CELL[c]) for c in MATCH_COLUMNS) + " || ' |'"


def write_match(result: MatchResult, fmt: str, out: TextIO) -> None:
    """The match result in `fmt` into `out`; the rows stream from DuckDB's writer."""
    if fmt == "json":
        head = {
            "summary": result.summary,
            "malformed": result.malformed,
            "skipped_reports": result.skipped_reports,
        }
        text = json.dumps(head, indent=2, ensure_ascii=False)[:-2]  # reopen the object
        out.write(text + ',\n  "rows": ')
        if result.summary["failures"]:
            _emit(result, _JSON_COLUMNS, "FORMAT json, ARRAY true", out)  # "[ ... ]\n"
        else:
            out.write("[]\n")
        out.write("}\n")
    elif fmt == "csv":
        out.write(",".join(MATCH_COLUMNS) + "\n")
        _emit(result, _CSV_SELECT, _CSV_OPTIONS, out)
    elif fmt == "md":
        lines = [
            "# sipdiag match",
            "",
            *(f"- {line.strip()}" for line in _summary_lines(result)),
            "",
            "| " + " | ".join(MATCH_COLUMNS) + " |",
            "|" + "---|" * len(MATCH_COLUMNS),
        ]
        out.write("\n".join(lines) + "\n")
        _emit(result, _MD_ROW, _RAW_OPTIONS, out)
    else:
        _emit(result, _TEXT_ROW, _RAW_OPTIONS, out)
        out.write("\n".join(["", *_summary_lines(result)]) + "\n")


def render_match(result: MatchResult, fmt: str) -> str:
    buffer = io.StringIO()
    write_match(result, fmt, buffer)
    return buffer.getvalue()


def _summary_lines(result: MatchResult) -> list[str]:
    s = result.summary
    cats = ", ".join(f"{k} {v}" for k, v in s["by_category"].items()) or "none"
    lines = [
        f"rows read {s['rows_read']}, skipped as malformed {s['rows_skipped']}; "
        f"failures {s['failures']} ({cats})",
        f"matched {s['matched']} ({s['matched_by_call_id']} by Call-ID), "
        f"unmatched {s['unmatched']}; reports read {s['reports_read']}, "
        f"skipped {s['reports_skipped']}",
    ]
    for m in result.malformed[:MALFORMED_SHOWN]:
        lines.append(f"  malformed line {m['line']}: {m['reason']}")
    if len(result.malformed) > MALFORMED_SHOWN:
        lines.append(f"  … {len(result.malformed) - MALFORMED_SHOWN} more (see --format json)")
    return lines


# ---- fleet


def render_fleet(summary: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return _json(summary)
    if fmt == "prom":
        return render_prom(summary)
    if fmt == "ndjson":
        return "".join(json.dumps(d, sort_keys=True) + "\n" for d in ecs_documents(summary))
    if fmt == "md":
        return _fleet_md(summary)
    return _fleet_text(summary)


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
    for title, body in sections:
        if body:
            lines += ["", title + ":", *body]
    return "\n".join(lines) + "\n"


def _group_lines(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"  {g['key']}: {g['agents']} agents, {g['failing']} failing"
        + (f" ({', '.join(f'{c} {n}' for c, n in g['causes'].items())})" if g["causes"] else "")
        for g in groups
    ]


def _fleet_md(s: Mapping[str, Any]) -> str:
    out = [
        "# sipdiag fleet",
        "",
        f"- Reports: {s['reports_read']} "
        f"({', '.join(f'{k} {n}' for k, n in s['verdicts'].items())}); "
        f"skipped {s['reports_skipped']}",
        f"- Agents: {len(s['agents'])} "
        f"({', '.join(f'{k} {n}' for k, n in s['agent_verdicts'].items())})",
        "",
        "## Findings by cause",
        "",
        "| cause | family | agents (newest report) | reports |",
        "|---|---|---|---|",
        *(
            f"| `{c['cause']}` | {c['family']} | {c['agents']} | {c['reports']} |"
            for c in s["findings_by_cause"]
        ),
        "",
        "## By public address",
        "",
        "| address | agents | failing | causes |",
        "|---|---|---|---|",
        *(
            f"| {g['key']} | {g['agents']} | {g['failing']} | "
            f"{_cell(', '.join(f'{c} {n}' for c, n in g['causes'].items()))} |"
            for g in s["by_public_address"]
        ),
        "",
        "## Agents",
        "",
        "| agent | verdict | previous | last run | causes |",
        "|---|---|---|---|---|",
        *(
            f"| {_cell(a['agent'])} | {a['verdict']} | {a['previous_verdict'] or ''} | "
            f"{a['started_at']} | {_cell(', '.join(a['causes']))} |"
            for a in s["agents"]
        ),
    ]
    if s["skipped"]:
        out += [
            "",
            "## Skipped files",
            "",
            *(f"- `{x['path']}`: {x['reason']}" for x in s["skipped"]),
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
        return [reports, skipped, agents, findings, site, last, verdict]

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


def ecs_documents(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Elastic Common Schema document per finding, oldest report first."""
    docs = []
    for r in s["reports"]:
        for f in r["findings"]:
            host: dict[str, Any] = {"name": r["hostname"], "ip": r["local_addresses"]}
            if r["os"]:
                host["os"] = {"name": r["os"]}
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
    return docs
