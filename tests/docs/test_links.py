"""README.md and docs/*.md: every relative link and #anchor resolves, and the README stays short.

Anchors are GitHub's heading ids: the heading's text lower-cased, markup and punctuation dropped, spaces
turned into hyphens, and -1, -2 ... appended to repeats.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

README_MAX_BYTES = 12_000
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's id for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", COMMENT.sub("", FENCE.sub("", page.read_text(encoding="utf-8"))))
    return LINK.findall(text) + HTML_LINK.findall(text)


def broken_links(root: Path = ROOT) -> list[str]:
    """Every relative link or anchor in README.md and docs/*.md that does not resolve, as 'page: target (why)'."""
    problems = []
    for page in pages(root):
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, data: ... not checked here
                continue
            path_part, _, fragment = target.partition("#")
            resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
            where = f"{page.relative_to(root)}: {target}"
            if not resolved.exists():
                problems.append(f"{where} (no such file)")
            elif not resolved.is_relative_to(root.resolve()):
                problems.append(f"{where} (outside the repository)")
            elif fragment and (resolved.suffix != ".md" or unquote(fragment) not in anchors(resolved)):
                problems.append(f"{where} (no heading with that anchor)")
    return problems


def test_readme_is_at_most_12000_bytes() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference into docs/"


def test_every_relative_link_and_anchor_resolves() -> None:
    assert len(pages()) > 1, "docs/ holds no page"
    assert broken_links() == []


def test_every_docs_page_is_linked_from_the_readme_or_another_page() -> None:
    linked = set()
    for page in pages():
        for target in links(page):
            path_part = target.partition("#")[0]
            if path_part and not re.match(r"^[a-z][a-z0-9+.-]*:", path_part, re.I):
                linked.add((page.parent / unquote(path_part)).resolve())
    orphans = [p.name for p in pages()[1:] if p.resolve() not in linked]
    assert orphans == [], f"no page links to {orphans}"


@pytest.mark.parametrize(("heading", "expected"), [
    ("Set-up: two commands", "set-up-two-commands"),
    ("Bulk scoring: files in S3, backlogs of millions", "bulk-scoring-files-in-s3-backlogs-of-millions"),
    ("GET /health", "get-health"),
    ("Trainable embeddings run `fa0130f81abb` (2026-11-26)", "trainable-embeddings-run-fa0130f81abb-2026-11-26"),
    ("What a million reviews cost", "what-a-million-reviews-cost"),
])
def test_slug_is_githubs(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_the_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Top\n\n## Usage\n\n## Usage\n\n[ok](#usage-1) [gone](docs/none.md) "
                                        "[bad anchor](docs/a.md#nope) [ok too](docs/a.md#a-page) `[code](x.md)`\n"
                                        "```\n[fenced](y.md)\n```\n[web](https://example.invalid/x)\n")
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n![img](img/missing.png) [back](../README.md#top)\n")
    assert broken_links(tmp_path) == ["README.md: docs/none.md (no such file)",
                                      "README.md: docs/a.md#nope (no heading with that anchor)",
                                      "docs/a.md: img/missing.png (no such file)"]
