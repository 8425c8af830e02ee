"""Self-contained HTML report (no external assets)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
    ".pass{color:#176d1a}.warn{color:#a35b00}.fail,.error{color:#b00020}.skip{color:#666}"
)


def render_html(report: Mapping[str, Any]) -> str:
    def e(value: Any) -> str:
        return escape(str(value if value is not None else ""))

    rows = "".join(
        f"<tr class='{e(c['status'])}'><td>{e(c['status'])}</td><td>{e(c['title'])}"
        f"<br><code>{e(c['id'])}</code></td><td>{e(c['summary'])}</td><td>{e(c['hint'])}</td></tr>"
        for c in report["checks"]
    )
    findings = (
        "".join(
            f"<section><h3>{e(f['severity'])}: {e(f['title'])} <code>{e(f['cause'])}</code></h3>"
            f"<p>{e(f['explanation'])}</p>"
            f"<p><strong>Action:</strong> {e(f['action'])}</p></section>"
            for f in report["findings"]
        )
        or "<p>No problems found.</p>"
    )
    incomplete = "" if report["complete"] else " <strong>(incomplete)</strong>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sipdiag report {e(report['run_id'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>sipdiag report: {e(report['verdict'])}{incomplete}</h1>"
        f"<p>Run <code>{e(report['run_id'])}</code> at {e(report['started_at'])} on "
        f"{e(report['host']['hostname'])}; registrar {e(report['target']['registrar'] or 'none')}; "
        f"User-Agent <code>{e(report['correlation']['user_agent'])}</code></p>"
        "<h2>Checks</h2><table><tr><th>Status</th><th>Check</th><th>Summary</th>"
        f"<th>Next action</th></tr>{rows}</table><h2>Findings</h2>{findings}</body></html>\n"
    )
