"""The one output layer: every human- or machine-readable text sipdiag shows is made here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diag.render.html import render_html
from diag.render.markdown import render_markdown
from diag.render.text import Marks, progress_line, render_checks_table, render_text
from diag.report import to_json

EXTENSIONS = {
    ".json": "json",
    ".txt": "text",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
}


def render(
    report: Mapping[str, Any], fmt: str, marks: Marks | None = None, color: bool = False
) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    return render_text(report, marks or Marks.for_encoding("utf-8"), color)


def format_for_path(path: str, default: str) -> str:
    for ext, fmt in EXTENSIONS.items():
        if path.lower().endswith(ext):
            return fmt
    return default


__all__ = ["Marks", "format_for_path", "progress_line", "render", "render_checks_table"]
