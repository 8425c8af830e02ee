"""`sipdiag bundle`: one zip for a support ticket.

Contents: the report as JSON and HTML, the run's SIP message trace (when sip.register ran
pjsua2), and a manifest. Credentials are scrubbed from every file by structure (diag/scrub.py);
with redact, hostname, user name and every IP address are replaced by the same token in every
file. The report is scrubbed and redacted as parsed JSON and the HTML rendered from that copy,
so both stay a valid report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diag import __version__
from diag.render.html import render_html
from diag.report import reports_dir, rfc3339, sip_log_path, to_json
from diag.scrub import Redactor, scrub_sip, scrub_tree

BUNDLE_FORMAT = 1

# Report fields that name the report's own structure (schema enums, patterns, check IDs the
# findings refer to, static titles): never redacted, or the report would no longer validate
# or render. A path is the keys from the root, "*" for a list item; a field's whole subtree.
REPORT_STRUCTURE = frozenset(
    {
        ("schema_version",),
        ("tool",),
        ("run_id",),
        ("started_at",),
        ("finished_at",),
        ("duration_ms",),
        ("complete",),
        ("verdict",),
        ("target", "transports"),
        ("checks", "*", "id"),
        ("checks", "*", "title"),
        ("checks", "*", "status"),
        ("findings", "*", "cause"),
        ("findings", "*", "family"),
        ("findings", "*", "severity"),
        ("findings", "*", "evidence", "checks"),
        ("correlation", "user_agent"),
    }
)


@dataclass(frozen=True)
class BundleResult:
    path: Path
    files: list[str]
    notes: list[str]


def find_sip_log(report_path: Path, run_id: str) -> Path | None:
    """Next to the report, else next to the saved copy in the reports directory."""
    beside = sip_log_path(report_path)
    if beside.is_file():
        return beside
    saved = sorted(reports_dir().glob(f"sipdiag-*-{run_id[:8]}.sip.log"))
    return saved[0] if saved else None


def _redactor(report: Mapping[str, Any]) -> Redactor:
    host = report.get("host") or {}
    hostname = str(host.get("hostname") or "")
    # Both the FQDN and its first label: either may show up in a trace or a path.
    names = [hostname, hostname.split(".", 1)[0]] if hostname else []
    users = [str(host["user"])] if host.get("user") else []
    return Redactor(names, users)


def _is_structure(path: tuple[str, ...]) -> bool:
    return path in REPORT_STRUCTURE


def build_bundle(
    report: Mapping[str, Any], report_path: Path, out: Path, *, redact: bool
) -> BundleResult:
    redactor = _redactor(report) if redact else None
    # One redactor for every file, so tokens agree across the report and the trace.
    clean_report = scrub_tree(report)
    if redactor:
        clean_report = redactor.redact_tree(clean_report, _is_structure)
    files: dict[str, str] = {
        "report.json": to_json(clean_report),
        "report.html": render_html(clean_report),
    }
    notes: list[str] = []
    sip_log = find_sip_log(report_path, str(report["run_id"]))
    if sip_log is not None:
        trace = scrub_sip(sip_log.read_text(encoding="utf-8", errors="replace"))
        files["sip.log"] = redactor.redact(trace) if redactor else trace
    else:
        notes.append("no SIP trace: sip.register did not run pjsua2 in this run")
    manifest = {
        "bundle_format": BUNDLE_FORMAT,
        "tool": {"name": "sipdiag", "version": __version__},
        "created_at": rfc3339(dt.datetime.now(dt.timezone.utc)),
        "run_id": report["run_id"],
        "verdict": report.get("verdict"),
        "redacted": redact,
        "scrubbed": ["Authorization", "Proxy-Authorization", "password fields"],
        "redactions": ["hostname", "user name", "IP addresses"] if redact else [],
        "files": [
            {
                "name": name,
                "bytes": len(text.encode("utf-8")),
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
            for name, text in files.items()
        ],
        "notes": notes,
    }
    files["manifest.json"] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_bundle_file(out, _zip(files))
    return BundleResult(out, list(files), notes)


def _zip(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def write_bundle_file(path: Path, data: bytes) -> None:
    """As reports are written (diag.environment.write_report_file): a regular file is replaced
    atomically, a symlink's target is written, not the link; a device or pipe (/dev/null, a
    FIFO) is written in place, never replaced. Write errors (ENOSPC on /dev/full) raise OSError,
    so nothing claims a bundle that was not written."""
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with open(path, "wb") as fh:
            fh.write(data)  # close() flushes: an error surfaces here, not silently
        return
    _write_atomic(path.expanduser().resolve(), data)


def _write_atomic(out: Path, data: bytes) -> None:
    """Temp file + fsync + rename, like reports: a failed bundle never leaves half a zip."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
