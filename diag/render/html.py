"""Self-contained HTML report: one file, inline CSS, no scripts, no external assets.

Order (what support reads first): verdict, findings (cause, explanation, action, evidence), every
check with its details, then the correlation block for searching the platform's logs.
Readable on a laptop and printable: tables have a fixed layout and long values wrap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from diag.render.pictures import ladder, level_meter, quality_chart
from diag.render.safe import neutralise_tree
from diag.render.sections import correlation_rows, run_facts, status_counts
from diag.scrub import scrub_tree

# Status colours are also the DOM contract the Chromium test asserts on (class names).
STYLE = """
html{--pass:#176d1a;--warn:#9a5200;--fail:#b00020;--error:#6a1b9a;--skip:#5f6368}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
 padding:1.5em;max-width:72em;color:#1f1f1f;background:#fff}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
code,pre{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.3em 0;background:#f6f8fa;padding:.5em;
 border-radius:4px}
table{border-collapse:collapse;width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top;
 overflow-wrap:anywhere}
th{background:#f2f2f2}
.verdict{padding:.8em 1em;border-radius:6px;color:#fff;font-size:1.2em}
.verdict.healthy{background:var(--pass)}.verdict.degraded{background:var(--warn)}
.verdict.failing{background:var(--fail)}
.badge{display:inline-block;min-width:4.5em;text-align:center;padding:.1em .4em;border-radius:3px;
 color:#fff;font-weight:600;font-size:.85em;text-transform:uppercase}
.badge.pass{background:var(--pass)}.badge.warn{background:var(--warn)}
.badge.fail{background:var(--fail)}.badge.error{background:var(--error)}
.badge.skip{background:var(--skip)}
.badge.critical{background:var(--fail)}.badge.warning{background:var(--warn)}
.badge.info{background:var(--skip)}
.finding{border-left:6px solid var(--skip);padding:.2em 1em;margin:1em 0;background:#fafafa}
.finding.critical{border-color:var(--fail)}.finding.warning{border-color:var(--warn)}
details summary{cursor:pointer}
.picture{margin:.6em 0;max-width:100%;overflow-x:auto}
.picture svg{display:block;width:100%;height:auto}
col.status{width:7em}col.check{width:30%}
@media print{body{padding:0;max-width:none;font-size:11pt}
 details>*{display:block}.finding,tr,.picture{break-inside:avoid}
 .picture{overflow:visible}.picture svg{print-color-adjust:exact;-webkit-print-color-adjust:exact}
 .verdict,.badge{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def esc(value: Any) -> str:
    return escape(str(value if value is not None else ""))


def _details(details: Mapping[str, Any]) -> str:
    if not details:
        return ""
    body = json.dumps(details, indent=2, ensure_ascii=False, default=str)
    # <details open>: on screen it folds, in print everything shows.
    return f"<details open><summary>details</summary><pre>{esc(body)}</pre></details>"


def _finding(f: Mapping[str, Any]) -> str:
    evidence = {k: v for k, v in f["evidence"].items() if k != "checks"}
    checks = ", ".join(f"<code>{esc(c)}</code>" for c in f["evidence"].get("checks", []))
    return (
        f"<section class='finding {esc(f['severity'])}' data-cause='{esc(f['cause'])}'>"
        f"<h3><span class='badge {esc(f['severity'])}'>{esc(f['severity'])}</span> "
        f"{esc(f['title'])}</h3>"
        f"<p><strong>Cause:</strong> <code>{esc(f['cause'])}</code> ({esc(f['family'])})</p>"
        f"<p><strong>Why:</strong> {esc(f['explanation'])}</p>"
        f"<p><strong>Action:</strong> {esc(f['action'])}</p>"
        f"<p><strong>Evidence:</strong> {checks}</p>"
        f"{_details(evidence)}</section>"
    )


def _check_row(c: Mapping[str, Any], picture: str = "") -> str:
    hint = f"<p><strong>Next:</strong> {esc(c['hint'])}</p>" if c.get("hint") else ""
    if picture:  # full width under its check's row; pictures.py escapes what it draws
        picture = (
            f"<tr class='picture-row' data-picture-for='{esc(c['id'])}'><td colspan='3'>"
            f"<div class='picture'>{picture}</div></td></tr>"
        )
    return (
        f"<tr class='check {esc(c['status'])}' data-check='{esc(c['id'])}'>"
        f"<td><span class='badge {esc(c['status'])}'>{esc(c['status'])}</span></td>"
        f"<td>{esc(c['title'])}<br><code>{esc(c['id'])}</code><br>"
        f"<small>{esc(c.get('duration_ms', 0))} ms</small></td>"
        f"<td>{esc(c['summary'])}{hint}{_details(c.get('details') or {})}</td></tr>{picture}"
    )


def render_html(report: Mapping[str, Any]) -> str:
    # Credential values never show (scrubbed by structure, as in bundles); control and bidi
    # characters from outside are shown (docs/report.md), then HTML-escaped.
    report = neutralise_tree(scrub_tree(dict(report)))
    verdict = report["verdict"]
    incomplete = "" if report["complete"] else " (incomplete: the run was interrupted)"
    tally = ", ".join(f"{n} {s}" for s, n in status_counts(report).items() if n)
    findings = "".join(_finding(f) for f in report["findings"]) or (
        "<p class='no-findings'>No problems found.</p>"
    )
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in run_facts(report))
    corr = "".join(
        f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>"
        for k, v in correlation_rows(report)
    )
    pictures = {"audio.input": level_meter(report), "net.quality": quality_chart(report)}
    checks = "".join(_check_row(c, pictures.get(c["id"], "")) for c in report["checks"])
    sip = ladder(report)
    exchange = (
        "<h2 id='sip-exchange'>SIP exchange</h2><p>Every SIP request of the run and what came "
        "back, as the checks recorded them (no Authorization values).</p>"
        f"<div class='picture ladder-box'>{sip}</div>"
        if sip
        else ""
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>sipdiag report {esc(report['run_id'])}: {esc(verdict)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>sipdiag report</h1>"
        f"<p id='verdict' class='verdict {esc(verdict)}'>Verdict: <strong>{esc(verdict)}</strong>"
        f"{esc(incomplete)} — {esc(tally)}</p>"
        f"<table class='facts'><colgroup><col style='width:12em'><col></colgroup>{facts}</table>"
        f"<h2 id='findings'>Findings</h2>{findings}{exchange}"
        "<h2 id='checks'>Checks</h2><table class='checks'><colgroup><col class='status'>"
        "<col class='check'><col></colgroup>"
        f"<tr><th>Status</th><th>Check</th><th>Result</th></tr>{checks}</table>"
        "<h2 id='correlation'>Correlation</h2>"
        "<p>Search the platform's SIP logs for these values.</p>"
        f"<table class='correlation'><colgroup><col style='width:12em'><col></colgroup>{corr}"
        "</table></body></html>\n"
    )
