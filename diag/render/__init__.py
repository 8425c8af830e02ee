"""The one output layer: every human- or machine-readable text sipdiag shows is made here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# Submodules load on first use: `sipdiag match`, `fleet` and `explain` import only their own
# renderer, and importing the package should not cost them the report renderers (~0.1 s).
if TYPE_CHECKING:
    from diag.render.text import Marks, progress_line, render_checks_table

_FROM_TEXT = ("Marks", "progress_line", "render_checks_table")

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
        from diag.report import to_json

        return to_json(report)
    if fmt == "md":
        from diag.render.markdown import render_markdown

        return render_markdown(report)
    if fmt == "html":
        from diag.render.html import render_html

        return render_html(report)
    from diag.render.text import Marks, render_text

    return render_text(report, marks or Marks.for_encoding("utf-8"), color)


def format_for_path(path: str, default: str) -> str:
    for ext, fmt in EXTENSIONS.items():
        if path.lower().endswith(ext):
            return fmt
    return default


def __getattr__(name: str) -> Any:
    if name in _FROM_TEXT:
        from diag.render import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Marks", "format_for_path", "progress_line", "render", "render_checks_table"]
