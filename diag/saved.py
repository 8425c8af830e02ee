"""Saved reports: finding the newest one and reading one back for `report` and `bundle`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.inputs import REPORT_LIMIT, read_input
from diag.report import SCHEMA_VERSION, reports_dir, schema


def newest_report() -> Path:
    """The most recently saved report of this user (what `sipdiag check` just wrote)."""
    directory = reports_dir()
    candidates = [p for p in directory.glob("sipdiag-*.json") if p.is_file()]
    if not candidates:
        raise UsageError(
            f"no saved report in {directory}",
            "run `sipdiag check` first, or give the report's path",
        )
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))


def load_report(path: Path) -> dict[str, Any]:
    """A saved report, checked enough that rendering it cannot fail half-way."""
    hint = "give a JSON report written by `sipdiag check`"
    raw = read_input(path, "report", REPORT_LIMIT, hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read report {path}: {exc}", hint) from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"report {path} is not valid JSON (line {exc.lineno})",
            "give a JSON report written by `sipdiag check` (--format json or the saved copy)",
        ) from None
    except RecursionError:
        raise UsageError(
            f"report {path} is nested too deeply to be a sipdiag report", hint
        ) from None
    try:  # a lone surrogate escape ("\ud800") loads, but no renderer could write it out
        json.dumps(report, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"report {path} is not valid JSON (an escape of half a surrogate pair)", hint
        ) from None
    except RecursionError:
        raise UsageError(
            f"report {path} is nested too deeply to be a sipdiag report", hint
        ) from None
    if not isinstance(report, dict) or report.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{path} is not a sipdiag report (schema_version {SCHEMA_VERSION})",
            "give a JSON report written by `sipdiag check`",
        )
    missing = [k for k in schema()["required"] if k not in report]
    lists_ok = all(isinstance(report.get(k), list) for k in ("checks", "findings"))
    if missing or not lists_ok:
        raise UsageError(
            f"report {path} is incomplete (missing {', '.join(missing) or 'checks/findings'})",
            "give the report exactly as `sipdiag check` wrote it",
        )
    _validate(path, report)
    return report


def _validate(path: Path, report: dict[str, Any]) -> None:
    """The report as the schema says it must be: a file that is not (a hostile or damaged one)
    is a usage error here, for `report` and `bundle` alike, not a crash half-way through."""
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema()).iter_errors(report)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise UsageError(
            f"report {path} does not match the report schema at {where}: {error.message[:200]}",
            "give the report exactly as `sipdiag check` wrote it",
        )
