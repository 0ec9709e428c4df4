"""No dead links in the documentation: every relative link in the repository's Markdown files
names a file that exists, and every #anchor names a heading of the Markdown file it points at
(GitHub's anchor slugs). External links (http:, mailto:) are not fetched."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "node_modules", "test-artifacts", "__pycache__", ".pytest_cache", ".ci"}

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")


def markdown_files(root: Path = ROOT) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(".md")]
    return sorted(found)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces → -."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)        # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text, flags=re.UNICODE)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(text))
    for _level, heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    text = CODE_SPAN.sub("", text)
    return INLINE_LINK.findall(text) + REFERENCE.findall(text)


def dead_links(files: list[Path], root: Path = ROOT) -> list[str]:
    dead = []
    for md in files:
        for target in links(md):
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:|^//", target, re.I):
                continue               # external: http:, https:, mailto: …
            path_part, _, anchor = target.partition("#")
            dest = (md.parent / unquote(path_part)).resolve() if path_part else md
            where = f"{md.relative_to(root)}: {target}"
            if not dest.exists():
                dead.append(f"{where} (no such file)")
            elif root.resolve() not in dest.parents and dest != root.resolve():
                dead.append(f"{where} (outside the repository)")
            elif anchor and dest.suffix.lower() == ".md" and unquote(anchor).lower() not in anchors(dest):
                dead.append(f"{where} (no heading #{anchor})")
    return dead


def test_every_relative_link_in_the_markdown_resolves():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "design.md" in files
    assert dead_links(files) == []


def test_readme_links_the_design_guide_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/design.md)" in readme
    outside = str(Path("..") / "shared")      # the team's folder beside the clone: never named
    for md in markdown_files():
        assert outside not in md.read_text(), md


def test_request_ids_in_the_docs_are_uuids():
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    for md in markdown_files():
        text = md.read_text()
        for rid in re.findall(r'"(?:request_id|ringing)"\s*:\s*"([^"]*)"', text):
            assert re.fullmatch(uuid, rid), (md.name, rid)


def test_slugs_follow_github():
    assert slug("How it is built") == "how-it-is-built"
    assert slug("Check the door: `entry-buzzer selftest`") == "check-the-door-entry-buzzer-selftest"
    assert slug("1. The job, as data flowing through one Pi") == "1-the-job-as-data-flowing-through-one-pi"
    assert slug("Tests (part of done)") == "tests-part-of-done"


def test_the_checker_finds_dead_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Set up\n\n## Set up\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/guide.md) [ok2](docs/guide.md#set-up-1) [self](#top) [web](https://example.com/x)\n"
        "[gone](docs/README-deploy.md) [bad anchor](docs/guide.md#nope) ![pic](docs/missing.png)\n"
        "[out](../elsewhere.md) `[code](not-a-link.md)`\n\n# Top\n\n```\n[fenced](nowhere.md)\n```\n"
        "[ref]: docs/gone-too.md\n")
    dead = dead_links(markdown_files(tmp_path), tmp_path)
    assert [d.split(" (")[0] for d in dead] == [
        "README.md: docs/README-deploy.md", "README.md: docs/guide.md#nope", "README.md: docs/missing.png",
        "README.md: ../elsewhere.md", "README.md: docs/gone-too.md"]


def test_docs_named_in_comments_and_code_exist():
    """Unit files, scripts and code that send a reader to docs/….md (e.g. the service's comment
    that once named a missing docs/README-deploy.md) name a file that exists."""
    missing = []
    for folder in ("systemd", "deploy", "scripts", "controller", "web", "bench"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".pyc", ".png", ".jpg"):
                for name in re.findall(r"\bdocs/[\w.-]+\.md\b", path.read_text(errors="ignore")):
                    if not (ROOT / name).exists():
                        missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert missing == []
