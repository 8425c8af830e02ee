"""`sipdiag bundle`: one zip for a support ticket.

Contents: the report as JSON and HTML, the run's SIP message trace (when sip.register ran
pjsua2), and a manifest. Credentials are scrubbed from every file; with redact, hostname, user
name and every IP address are replaced by the same token in every file.
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
from diag.config import DEFAULT_PASSWORD_ENV, DEFAULT_TURN_PASSWORD_ENV
from diag.render.html import render_html
from diag.report import reports_dir, rfc3339, sip_log_path, to_json
from diag.scrub import Redactor, scrub_sip

BUNDLE_FORMAT = 1


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


def _secrets(environ: Mapping[str, str]) -> list[str]:
    """Defence in depth: the passwords of this shell, if set, never appear in a bundle."""
    return [environ[n] for n in (DEFAULT_PASSWORD_ENV, DEFAULT_TURN_PASSWORD_ENV) if environ.get(n)]


def _redactor(report: Mapping[str, Any]) -> Redactor:
    host = report.get("host") or {}
    hostname = str(host.get("hostname") or "")
    # Both the FQDN and its first label: either may show up in a trace or a path.
    names = [hostname, hostname.split(".", 1)[0]] if hostname else []
    users = [str(host["user"])] if host.get("user") else []
    return Redactor(names, users)


def build_bundle(
    report: Mapping[str, Any],
    report_path: Path,
    out: Path,
    *,
    redact: bool,
    environ: Mapping[str, str],
) -> BundleResult:
    secrets = _secrets(environ)
    redactor = _redactor(report) if redact else None

    def clean(text: str) -> str:
        text = scrub_sip(text, secrets)
        return redactor.redact(text) if redactor else text

    # Every file goes through the same clean(): one redactor, so tokens agree across files.
    files: dict[str, str] = {
        "report.json": clean(to_json(report)),
        "report.html": clean(render_html(report)),
    }
    notes: list[str] = []
    sip_log = find_sip_log(report_path, str(report["run_id"]))
    if sip_log is not None:
        files["sip.log"] = clean(sip_log.read_text(encoding="utf-8", errors="replace"))
    else:
        notes.append("no SIP trace: sip.register did not run pjsua2 in this run")
    manifest = {
        "bundle_format": BUNDLE_FORMAT,
        "tool": {"name": "sipdiag", "version": __version__},
        "created_at": rfc3339(dt.datetime.now(dt.timezone.utc)),
        "run_id": report["run_id"],
        "verdict": report.get("verdict"),
        "redacted": redact,
        "scrubbed": ["Authorization", "Proxy-Authorization", "passwords"],
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
    files["manifest.json"] = clean(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
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
