"""A watch timeline's summary (diag/timeline_report.py) for people: text, Markdown, JSON, HTML.

The HTML is the report's page (diag/render/html.py's style and escaping) with the lanes drawn as
inline SVG that we write ourselves: the chart is a few rects, diamonds and tick labels with ids,
classes and <title> tooltips that tests and print rely on; the charting libraries either need
JavaScript to show anything (plotly, bokeh, altair, pygal's tooltips) or give no stable
element ids and classes and would add a large dependency for this (matplotlib).
Every string from the file is neutralised (diag/render/safe.py), then escaped for its format.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from diag.render.html import STYLE, esc
from diag.render.safe import md_code, md_text, neutralise_tree

FORMATS = ("text", "md", "html", "json")
STATE_LABELS = {
    "registered": "registered",
    "inbound_reachable": "inbound reachable",
    "quality_ok": "quality good",
    "devices_present": "audio devices present",
    "softphone_running": "softphone running",
}
LANE_LABELS = {
    "registration": "Registration",
    "inbound": "Inbound",
    "quality": "Quality",
    "audio": "Audio devices",
    "network": "Network",
}
FALSE_LABELS = {
    "registered": "not registered",
    "inbound_reachable": "not reachable inbound",
    "quality_ok": "quality bad",
    "devices_present": "audio devices absent",
}
VALUE_WORDS = {"true": "yes", "false": "no", "unknown": "unknown"}
NEVER_FAILED = "None: no sample saw registration, inbound, quality or audio devices fail."
WORST_SHOWN = 20  # worst moments listed in text/Markdown/HTML (longest first; JSON has all)
SHOWN_VALUE = 160  # characters of one evidence value in text/Markdown/HTML (JSON keeps all)


def render_timeline(summary: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return render_timeline_markdown(summary)
    if fmt == "html":
        return render_timeline_html(summary)
    return render_timeline_text(summary)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _clock(t: Any) -> str:
    """HH:MM:SS of an RFC 3339 UTC time (the file's own text, neutralised upstream)."""
    text = str(t or "?")
    return text[11:19] if len(text) >= 19 and text[10] == "T" else text


def evidence_text(evidence: Mapping[str, Any]) -> str:
    parts = []
    for k, v in evidence.items():
        value = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        if len(value) > SHOWN_VALUE:
            value = value[:SHOWN_VALUE] + "…"
        parts.append(f"{k}={value}")
    return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "?" if value is None else str(value)


def _agent(summary: Mapping[str, Any]) -> str:
    agent = summary.get("agent") or {}
    parts = [agent.get("id") or "", agent.get("sip_uri") or "", *(agent.get("numbers") or [])]
    return " ".join(str(p) for p in parts if p) or "not configured"


def facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    span = summary["span"]
    ids = ", ".join(str(w["watch_id"]) for w in summary["watches"])
    rows = [
        ("Watch", ids or "?"),
        ("Agent", _agent(summary)),
        ("Host", str((summary.get("host") or {}).get("hostname", "?"))),
        (
            "Sampled",
            f"{span['from'] or '?'} to {span['to'] or '?'} ({duration(span['seconds'])}), "
            f"every {_number(summary['interval_s'])} s",
        ),
        (
            "Samples",
            f"{_count(summary['samples'], 'sample')}, {_count(summary['events'], 'event')}",
        ),
        ("Ended", str(summary["end_reason"])),
        ("sipdiag", str(summary.get("sipdiag") or "?")),
    ]
    if summary.get("dropped_lines"):
        rows.append(("Dropped", f"{summary['dropped_lines']} lines not valid timeline v1"))
    return rows


def _moment_title(m: Mapping[str, Any]) -> str:
    states = ", ".join(FALSE_LABELS.get(s, f"not {s}") for s in m["states"])
    return f"{_clock(m['start'])}–{_clock(m['end'])} UTC ({duration(m['duration_s'])}): {states}"


def _more_moments(summary: Mapping[str, Any]) -> str:
    more = len(summary["worst_moments"]) - WORST_SHOWN
    return f"… and {more} shorter ones (all in --format json)" if more > 0 else ""


def _log_text(r: Mapping[str, Any]) -> str:
    cause = r.get("likely_cause") or "unexplained"
    call = f" [Call-ID {r['call_id']}]" if r.get("call_id") else ""
    return f"{r.get('status')}, likely cause {cause}: {r.get('explanation') or ''}{call}"


def render_timeline_text(summary: Mapping[str, Any]) -> str:
    s = neutralise_tree(summary)
    out = [f"sipdiag timeline — {_agent(s)}", ""]
    out += [f"  {k}: {v}" for k, v in facts(s)]
    out += ["", "Time in each state (yes / no / unknown):"]
    for key, share in s["states"].items():
        out.append(
            f"  {STATE_LABELS.get(key, key):<24}{share['true_pct']:>6.1f}%"
            f"{share['false_pct']:>7.1f}%{share['unknown_pct']:>7.1f}%"
        )
    out += ["", "Worst moments (longest first):"]
    if not s["worst_moments"]:
        out.append(f"  {NEVER_FAILED}")
    for m in s["worst_moments"][:WORST_SHOWN]:
        out.append(f"  {_moment_title(m)}")
        for c in m["checks"]:
            out.append(f"      check {c['id']} {c['status']}: {c.get('summary', '')}")
        for e in m["events"]:
            out.append(f"      {_clock(e['t'])} {e['event']} {evidence_text(e['evidence'])}")
        for r in m["log_rows"]:
            out.append(f"      {_clock(r['time'])} central log: {_log_text(r)}")
    if _more_moments(s):
        out.append(f"  {_more_moments(s)}")
    out += ["", "Events:"]
    if not s["event_list"]:
        out.append("  none")
    for e in s["event_list"]:
        out.append(
            f"  {e['t']}  {e['event']:<24} ({e.get('detected_by') or '?'})  "
            f"{evidence_text(e['evidence'])}"
        )
    if s["log_rows"]:
        out += ["", "Central-log rows (from match):"]
        out += [f"  {r['time']}  {_log_text(r)}" for r in s["log_rows"]]
    return "\n".join(out) + "\n"


def render_timeline_markdown(summary: Mapping[str, Any]) -> str:
    s = neutralise_tree(summary)
    t = md_text
    out = [f"# sipdiag timeline — {t(_agent(s))}", ""]
    out += [f"- {k}: {t(v)}" for k, v in facts(s)]
    out += ["", "## Time in each state", "", "| state | yes | no | unknown |", "|---|---|---|---|"]
    for key, share in s["states"].items():
        out.append(
            f"| {t(STATE_LABELS.get(key, key))} | {share['true_pct']}% "
            f"({duration(share['true_s'])}) | {share['false_pct']}% "
            f"({duration(share['false_s'])}) | {share['unknown_pct']}% |"
        )
    out += ["", "## Worst moments", ""]
    if not s["worst_moments"]:
        out.append(NEVER_FAILED)
    for m in s["worst_moments"][:WORST_SHOWN]:
        out += [f"### {t(_moment_title(m))}", ""]
        out += [
            f"- check {md_code(c['id'])} {t(c['status'])}: {t(c.get('summary'))}"
            for c in m["checks"]
        ]
        out += [
            f"- {t(_clock(e['t']))} {md_code(e['event'])} {t(evidence_text(e['evidence']))}"
            for e in m["events"]
        ]
        out += [f"- {t(_clock(r['time']))} central log: {t(_log_text(r))}" for r in m["log_rows"]]
        out.append("")
    if _more_moments(s):
        out += [_more_moments(s), ""]  # our own words: nothing to escape
    out += ["## Events", "", "| time (UTC) | event | detected by | evidence |", "|---|---|---|---|"]
    for e in s["event_list"]:
        out.append(
            f"| {t(e['t'])} | {md_code(e['event'])} | {t(e.get('detected_by'))} | "
            f"{t(evidence_text(e['evidence']))} |"
        )
    if s["log_rows"]:
        out += ["", "## Central-log rows", "", "| time | status | likely cause | explanation |"]
        out.append("|---|---|---|---|")
        for r in s["log_rows"]:
            out.append(
                f"| {t(r['time'])} | {t(r.get('status'))} | {t(r.get('likely_cause'))} | "
                f"{t(r.get('explanation'))} |"
            )
    return "\n".join(out).rstrip() + "\n"


# The chart, in viewBox units: it scales to the page's width (760 px and up) and to print.
W, LABEL_W, PAD, LANE_H, LANE_GAP = 1000, 136, 28, 26, 8
PLOT_W = W - LABEL_W - PAD
TICK_STEPS = (10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

_TIMELINE_STYLE = """
figure{margin:1em 0}
svg#timeline-lanes{display:block;width:100%;height:auto}
.seg.true,.swatch.true{fill:var(--pass);background:var(--pass)}
.seg.false,.swatch.false{fill:var(--fail);background:var(--fail)}
.seg.unknown,.swatch.unknown{fill:#d9d9d9;background:#d9d9d9}
.lane-label{font:600 16px system-ui,sans-serif;fill:#1f1f1f}
.axis text{font:15px system-ui,sans-serif;fill:#444}.axis line{stroke:#888}
.event-marker path,.swatch.event{fill:#fff;stroke:#1f1f1f;stroke-width:1.5}
.log-row-marker circle{fill:var(--skip);stroke:#fff;stroke-width:1.5}
.log-row-marker.explained circle{fill:var(--warn)}
.worst{fill:rgba(176,0,32,.10);stroke:var(--fail);stroke-width:1.5;stroke-dasharray:5 3}
#legend{margin:.4em 0}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:-.15em;border-radius:2px;
 margin:0 .3em 0 .8em;border:1px solid #888}
.swatch.event{background:#fff;transform:rotate(45deg) scale(.75)}
.swatch.log{background:var(--warn);border-radius:50%}
.swatch.worst{background:rgba(176,0,32,.10);border:1.5px dashed var(--fail)}
@media print{figure{break-inside:avoid}
 .seg,.swatch,.log-row-marker,.worst{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def _x(offset: float, span: float) -> float:
    return round(LABEL_W + (offset / span if span > 0 else 0) * PLOT_W, 2)


def _at(summary: Mapping[str, Any], offset: float) -> str:
    start = summary["series"]["from"]
    when = dt.datetime.fromisoformat(start.replace("Z", "+00:00")) + dt.timedelta(seconds=offset)
    return when.strftime("%H:%M:%S")


def _axis(summary: Mapping[str, Any], y: float) -> str:
    span = summary["series"]["seconds"]
    start = dt.datetime.fromisoformat(summary["series"]["from"].replace("Z", "+00:00"))
    step = next((s for s in TICK_STEPS if span / s <= 8), TICK_STEPS[-1])
    first = -(-int(start.timestamp()) // step) * step  # the first multiple of step at/after start
    label = "%H:%M:%S" if step < 60 else ("%m-%d %H:%M" if span > 86400 else "%H:%M")
    parts = [f"<g class='axis'><line x1='{LABEL_W}' x2='{LABEL_W + PLOT_W}' y1='{y}' y2='{y}'/>"]
    parts.append(f"<text class='lane-label' x='4' y='{y + 18}'>UTC</text>")
    tick = first
    while tick <= start.timestamp() + span:
        x = _x(tick - start.timestamp(), span)
        when = dt.datetime.fromtimestamp(tick, dt.timezone.utc).strftime(label)
        parts.append(
            f"<g class='tick'><line x1='{x}' x2='{x}' y1='{y}' y2='{y + 5}'/>"
            f"<text x='{x}' y='{y + 19}' text-anchor='middle'>{when}</text></g>"
        )
        tick += step
    return "".join(parts) + "</g>"


def _lanes_svg(s: Mapping[str, Any]) -> str:
    series = s["series"]
    span = series["seconds"]
    rows = list(LANE_LABELS) + (["log"] if s["log_rows"] else [])
    top = {lane: 8 + i * (LANE_H + LANE_GAP) for i, lane in enumerate(rows)}
    bottom = 8 + len(rows) * (LANE_H + LANE_GAP)
    height = bottom + 30
    parts = [
        f"<svg id='timeline-lanes' viewBox='0 0 {W} {height}' width='100%' role='img' "
        "xmlns='http://www.w3.org/2000/svg' aria-labelledby='timeline-lanes-title'>"
        "<title id='timeline-lanes-title'>States, events and central-log rows over time</title>"
    ]
    for lane, label in LANE_LABELS.items():
        y = top[lane]
        parts.append(f"<g class='lane' data-lane='{lane}'>")
        parts.append(f"<text class='lane-label' x='4' y='{y + 18}'>{esc(label)}</text>")
        for a, b, value in series["lanes"][lane]:
            x1, x2 = _x(a, span), _x(b, span)
            tip = f"{label}: {VALUE_WORDS.get(value, value)} {_at(s, a)}–{_at(s, b)} UTC"
            parts.append(
                f"<rect class='seg {esc(value)}' x='{x1}' y='{y}' width='{max(x2 - x1, 0.6):.2f}' "
                f"height='{LANE_H}'><title>{esc(tip)} ({duration(b - a)})</title></rect>"
            )
        for e in s["event_list"]:
            if e["lane"] != lane:
                continue
            tip = f"{_clock(e['t'])} UTC {e['event']}: {evidence_text(e['evidence'])}"
            parts.append(
                f"<g class='event-marker' data-event='{esc(e['event'])}' "
                f"data-seq='{esc(e['seq'])}' "
                f"transform='translate({_x(e['offset_s'], span)},{y + LANE_H / 2})'>"
                f"<title>{esc(tip)}</title><path d='M0,-9L6,0L0,9L-6,0Z'/></g>"
            )
        parts.append("</g>")
    if s["log_rows"]:
        y = top["log"]
        parts.append("<g class='lane' data-lane='log'>")
        parts.append(f"<text class='lane-label' x='4' y='{y + 18}'>Central log</text>")
        parts.append(
            f"<line x1='{LABEL_W}' x2='{LABEL_W + PLOT_W}' y1='{y + LANE_H / 2}' "
            f"y2='{y + LANE_H / 2}' stroke='#ccc'/>"
        )
        for r in s["log_rows"]:
            if r["offset_s"] is None or not 0 <= r["offset_s"] <= span:
                continue  # listed below the chart, outside the watched time
            explained = " explained" if r.get("likely_cause") else ""
            parts.append(
                f"<g class='log-row-marker{explained}' data-status='{esc(r.get('status'))}' "
                f"data-cause='{esc(r.get('likely_cause'))}'>"
                f"<title>{esc(_clock(r['time']))} UTC {esc(_log_text(r))}</title>"
                f"<circle cx='{_x(r['offset_s'], span)}' cy='{y + LANE_H / 2}' r='6'/></g>"
            )
        parts.append("</g>")
    start = dt.datetime.fromisoformat(series["from"].replace("Z", "+00:00"))
    for rank, m in enumerate(s["worst_moments"], 1):
        a = (dt.datetime.fromisoformat(m["start"].replace("Z", "+00:00")) - start).total_seconds()
        x1, x2 = _x(a, span), _x(a + m["duration_s"], span)
        parts.append(
            f"<rect class='worst' data-rank='{rank}' x='{x1}' y='3' width='{x2 - x1:.2f}' "
            f"height='{bottom - 4}'><title>{esc(_moment_title(m))}</title></rect>"
        )
    parts.append(_axis(s, bottom))
    return "".join(parts) + "</svg>"


_LEGEND = (
    "<p id='legend'>"
    "<span class='swatch true'></span>yes (registered, reachable, good, present; network: a "
    "default route)<span class='swatch false'></span>no<span class='swatch unknown'></span>"
    "unknown (not measured, or no sample: asleep, watch stopped)"
    "<span class='swatch event'></span>event<span class='swatch log'></span>central-log row"
    "<span class='swatch worst'></span>worst moment</p>"
)


def render_timeline_html(summary: Mapping[str, Any]) -> str:
    s = neutralise_tree(summary)
    facts_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts(s))
    shares = "".join(
        f"<tr data-state='{esc(k)}'><th>{esc(STATE_LABELS.get(k, k))}</th>"
        f"<td>{v['true_pct']}% ({duration(v['true_s'])})</td>"
        f"<td>{v['false_pct']}% ({duration(v['false_s'])})</td>"
        f"<td>{v['unknown_pct']}% ({duration(v['unknown_s'])})</td></tr>"
        for k, v in s["states"].items()
    )
    chart = (
        f"<figure>{_lanes_svg(s)}<figcaption>{_LEGEND}</figcaption></figure>"
        if s["series"]["from"]
        else "<p>No sample: nothing to draw.</p>"
    )
    moments = "".join(
        _moment_html(rank, m) for rank, m in enumerate(s["worst_moments"][:WORST_SHOWN], 1)
    )
    if _more_moments(s):
        moments += f"<p class='more-moments'>{esc(_more_moments(s))}</p>"
    events = "".join(
        f"<tr class='event' data-event='{esc(e['event'])}'><td>{esc(e['t'])}</td>"
        f"<td>{esc(LANE_LABELS.get(e['lane'], e['lane']))}</td><td><code>{esc(e['event'])}</code>"
        f"</td><td>{esc(e.get('detected_by'))}</td><td>{esc(evidence_text(e['evidence']))}</td></tr>"
        for e in s["event_list"]
    )
    logs = "".join(
        f"<tr class='log-row'><td>{esc(r['time'])}</td><td>{esc(r.get('status'))}</td>"
        f"<td><code>{esc(r.get('likely_cause') or 'unexplained')}</code></td>"
        f"<td>{esc(r.get('explanation'))}</td><td><code>{esc(r.get('call_id'))}</code></td></tr>"
        for r in s["log_rows"]
    )
    log_section = (
        "<h2 id='log-rows'>Central-log rows</h2><table class='log-rows'><colgroup>"
        "<col style='width:13em'><col style='width:5em'><col style='width:13em'><col>"
        "<col style='width:12em'></colgroup><tr><th>Time (UTC)</th><th>Status</th>"
        f"<th>Likely cause</th><th>Explanation</th><th>Call-ID</th></tr>{logs}</table>"
        if logs
        else ""
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>sipdiag timeline {esc(s['watch_id'])}</title>"
        f"<style>{STYLE}{_TIMELINE_STYLE}</style></head><body>"
        f"<h1>sipdiag timeline</h1>"
        f"<table class='facts'><colgroup><col style='width:12em'><col></colgroup>{facts_rows}"
        "</table><h2 id='lanes'>Over time</h2>"
        f"{chart}"
        "<h2 id='states'>Time in each state</h2><table class='states'><tr><th>State</th>"
        f"<th>Yes</th><th>No</th><th>Unknown</th></tr>{shares}</table>"
        "<h2 id='worst'>Worst moments</h2>"
        f"{moments or f'<p>{NEVER_FAILED}</p>'}"
        "<h2 id='events'>Events</h2><table id='event-list'><colgroup><col style='width:13em'>"
        "<col style='width:8em'><col style='width:14em'><col style='width:7em'><col></colgroup>"
        "<tr><th>Time (UTC)</th><th>Lane</th><th>Event</th><th>Detected by</th><th>Evidence</th>"
        f"</tr>{events}</table>{log_section}</body></html>\n"
    )


def _moment_html(rank: int, m: Mapping[str, Any]) -> str:
    items = [
        f"<li>check <code>{esc(c['id'])}</code> <span class='badge {esc(c['status'])}'>"
        f"{esc(c['status'])}</span> {esc(c.get('summary'))}</li>"
        for c in m["checks"]
    ]
    items += [
        f"<li>{esc(_clock(e['t']))} <code>{esc(e['event'])}</code> "
        f"{esc(evidence_text(e['evidence']))}</li>"
        for e in m["events"]
    ]
    items += [
        f"<li>{esc(_clock(r['time']))} central log: {esc(_log_text(r))}</li>" for r in m["log_rows"]
    ]
    body = f"<ul>{''.join(items)}</ul>" if items else ""
    return (
        f"<section class='finding critical worst-moment' data-rank='{rank}'>"
        f"<h3>{esc(_moment_title(m))}</h3>{body}</section>"
    )
