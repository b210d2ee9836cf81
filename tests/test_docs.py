"""The Markdown docs' relative links: every file they name exists and every ``#anchor`` is a
heading of that file (GitHub's slugs), so a renamed section or a moved figure is caught here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file (repeated headings get GitHub's ``-1``, ``-2`` suffixes)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(files: list[Path]) -> list[str]:
    """``"file: target (why)"`` for each relative link of ``files`` that leads nowhere."""
    bad = []
    for path in files:
        for target in LINK.findall(FENCE.sub("", path.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            name, _, anchor = target.partition("#")
            dest = (path.parent / name).resolve() if name else path
            if not dest.exists():
                bad.append(f"{path.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{path.name}: {target} (no such heading)")
    return bad


def test_slugs_follow_github():
    assert slug("The paper's G at step 1200: the release before") == "the-papers-g-at-step-1200-the-release-before"
    assert slug("Issue #10's gates at a glance") == "issue-10s-gates-at-a-glance"
    assert slug("A second D on relu4_1: the unguided default") == "a-second-d-on-relu4_1-the-unguided-default"
    assert slug("Residual blocks (`model.blocks`)") == "residual-blocks-modelblocks"


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Part two\n\n[ok](#part-two) [ok](b.md#b) [x](#nope) [y](c.md)\n")
    (tmp_path / "b.md").write_text("# B\n\n```\n# not a heading\n```\n[z](a.md#not-a-heading)\n")
    assert sorted(broken_links([tmp_path / "a.md", tmp_path / "b.md"])) == [
        "a.md: #nope (no such heading)", "a.md: c.md (no such file)", "b.md: a.md#not-a-heading (no such heading)"]


def test_every_relative_link_of_the_docs_resolves():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert broken_links(files) == []
