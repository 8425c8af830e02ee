"""Keeps README.md, docs/ and tests/README.md honest: generated tables current, links alive,
every check documented on its family's page, and no citation of a file outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from checks import REGISTRY
from diag import docs

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "tests" / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_docs_diagnosis_md_equals_what_python_m_diag_docs_generates() -> None:
    text = docs.DIAGNOSIS_MD.read_text()
    assert docs.regenerate(text) == text, "docs/diagnosis.md is out of date: python -m diag.docs"


def test_the_generated_tables_are_the_rules_and_overrides_in_order() -> None:
    from diag.diagnosis import OVERRIDES, RULES

    text = docs.DIAGNOSIS_MD.read_text()
    assert docs.rules_table() in text and docs.overrides_table() in text
    assert len(docs.rules_table().splitlines()) == len(RULES) + 2
    assert len(docs.overrides_table().splitlines()) == len(OVERRIDES) + 2


def test_python_m_diag_docs_check_passes_on_the_committed_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "diag.docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_regenerate_refuses_a_page_without_its_markers() -> None:
    import pytest

    with pytest.raises(ValueError, match="rules"):
        docs.regenerate("# Diagnosis rules\n\nno markers here\n")


def test_every_relative_link_in_readme_and_docs_reaches_a_file_and_heading() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in readme, page.name


def test_every_check_is_documented_on_its_familys_page() -> None:
    for check in REGISTRY:
        family = check.id.split(".", 1)[0]
        page = ROOT / "docs" / f"checks-{family}.md"
        assert f"`{check.id}`" in page.read_text(), f"{check.id} missing from {page.name}"


def test_no_code_or_test_cites_a_testbed_file_outside_the_repository() -> None:
    outside = "TEST" + "BED"  # spelled apart so this file does not cite it either
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("tests", "checks", "diag", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside in line
    ]
    assert not hits, f"cite a section of tests/README.md instead: {hits}"


def test_every_tests_readme_section_cited_exists() -> None:
    headings = {
        m[1].split()[0]
        for m in re.finditer(r"^## (.+)$", (ROOT / "tests" / "README.md").read_text(), re.M)
    }
    sources = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "tests").glob("*.md")]
    cited = {
        (path.name, m[1])
        for path in sources
        for m in re.finditer(r"(?:tests/README\.md |(?<![\w/]))§([A-Za-z][\w-]*)", path.read_text())
    }
    assert cited, "no citations found: the pattern is wrong"
    missing = sorted(c for c in cited if c[1] not in headings)
    assert not missing, missing
