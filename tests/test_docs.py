"""The docs stay true: every link resolves, every step kind and bundled scenario is listed."""

import re
from pathlib import Path

from veil.pipeline import bundled, kinds

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _links(page: Path) -> list[str]:
    return [
        target.split("#")[0]
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        if not target.startswith(("http://", "https://", "#", "mailto:"))
    ]


def test_every_relative_link_resolves():
    broken = [
        f"{page.relative_to(REPO)} -> {target}"
        for page in PAGES
        for target in _links(page)
        if target and not (page.parent / target).exists()
    ]
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {Path(t).name for t in _links(REPO / "README.md") if t.startswith("docs/")}
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages <= linked, pages - linked


def test_scenarios_page_lists_every_step_kind_and_bundled_scenario():
    text = (REPO / "docs" / "scenarios.md").read_text()
    table = set(re.findall(r"^\| `([a-z-]+)`", text, flags=re.M))
    assert set(kinds()) <= table, set(kinds()) - table
    assert set(bundled()) <= table, set(bundled()) - table
