"""The docs stand alone: every relative link resolves (file and anchor), and nothing points
to a reference outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_EXPLICIT = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']|\{#([^}\s]+)\}""")
_OUTSIDE = re.compile(r"the reference's section|language section \d|shared/", re.I)


def without_code(text: str) -> str:
    """The text with fenced code blocks removed (links there are not links)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lowercase, spaces to
    hyphens (one hyphen per space, so ` / ` gives `--`)."""
    text = re.sub(r"\{#[^}]*\}", "", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = without_code(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    for a, b in _EXPLICIT.findall(text):
        found.add(a or b)
    return found


def relative_links(path: Path) -> list[str]:
    links = _LINK.findall(without_code(path.read_text(encoding="utf-8")))
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link, re.I)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in relative_links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_pointer_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    assert [m.group(0) for m in _OUTSIDE.finditer(text)] == []


def test_slugs_follow_github():
    assert slug("6. The JSON report") == "6-the-json-report"
    assert slug("Extras and `constraints.txt`") == "extras-and-constraintstxt"
    assert slug("10. A (`X`) / the `y`, z") == "10-a-x--the-y-z"


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "a.md").write_text('# Top\n\n## Second part\n<a id="e001"></a>\n', encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#second-part) [ok](a.md#e001) [ok](#here)\n# Here\n"
        "[bad](a.md#third) [bad](c.md)\n```\n[code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["a.md#third: no heading #third in a.md", "c.md: no file c.md"]
