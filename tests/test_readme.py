"""The README stays short and starts with the two commands; the layout maps match studio/ both ways.

The README's map names studio/'s folders and top-level modules; docs/design.md's module map names every
module and folder.

Also: every relative link in README.md, docs/*.md and benchmarks/README.md points to a file that exists
(and, with a `#fragment`, to a heading in it). Fast, no network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DESIGN = ROOT / "docs" / "design.md"
STUDIO = ROOT / "studio"
MAX_CHARS = 15_000

SETUP_AND_SERVE = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e . && "
    ".venv/bin/studio models pull --bundled && .venv/bin/studio serve"
)
CI = "bash .ci/run"

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def layout_map(doc: Path = README, heading: str = "Layout") -> list[str]:
    """Paths a layout map names, relative to the repository root ('studio/backends/' for folders).

    The map is the first fenced block after the `## <heading>` heading: one entry per line, its name first,
    then its purpose; two spaces of indent per level under the folder above it.
    """
    parts = re.split(rf"^## {heading}[ \t]*$", doc.read_text(encoding="utf-8"), maxsplit=1, flags=re.M)
    assert len(parts) == 2, f"{doc.name} has no '## {heading}' section"
    block = FENCE.search(parts[1])
    assert block, f"the '## {heading}' section of {doc.name} has no fenced block"
    paths: list[str] = []
    folders: list[str] = []
    for number, line in enumerate(block.group(1).splitlines(), start=1):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"layout map line {number}: indent by two spaces per level: {line!r}"
        depth = indent // 2
        assert depth <= len(folders), f"layout map line {number}: indented under a file: {line!r}"
        folders = folders[:depth]
        name = line.split()[0]
        paths.append("".join(folders) + name)
        if name.endswith("/"):
            folders.append(name)
    return paths


def studio_tree() -> set[str]:
    """Every .py module and every folder under studio/ (caches left out), in the map's spelling."""
    found = {"studio/"}
    for path in STUDIO.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
            continue
        if path.is_dir():
            found.add(f"{rel.as_posix()}/")
        elif path.suffix == ".py":
            found.add(rel.as_posix())
    return found


def test_readme_is_short() -> None:
    assert len(readme()) <= MAX_CHARS, f"README.md has {len(readme())} characters; move detail to docs/"


def test_readme_starts_with_the_two_commands() -> None:
    text = readme()
    blocks = FENCE.findall(text)
    assert len(blocks) >= 2
    assert blocks[0].strip() == SETUP_AND_SERVE, "the first code block is the set-up + serve command"
    assert blocks[1].strip() == CI, "the second code block is the command CI runs"
    before = text[: text.index("```")]
    assert before.strip().startswith("# ") and before.strip().count("\n") == 0, (
        "nothing but the title comes before the two commands"
    )
    assert (ROOT / ".ci" / "run").is_file()


MAPS = {"README": (README, "Layout"), "design": (DESIGN, "Module map")}


@pytest.mark.parametrize("which", MAPS)
def test_layout_map_names_only_paths_that_exist(which: str) -> None:
    missing = [
        p
        for p in layout_map(*MAPS[which])
        if not (ROOT / p).exists() or (p.endswith("/") and not (ROOT / p).is_dir())
    ]
    assert not missing, f"the {which} layout map names paths that do not exist: {missing}"


def test_readme_layout_map_names_every_folder_and_top_level_module_of_studio() -> None:
    named = {p for p in layout_map() if p.startswith("studio/")}
    top = {p for p in studio_tree() if p.count("/") == 1 or (p.count("/") == 2 and p.endswith("/"))}
    unnamed = sorted(top - named)
    assert not unnamed, f"add these to the README's layout map (## Layout): {unnamed}"


def test_design_module_map_names_every_module_and_folder_of_studio() -> None:
    named = {p for p in layout_map(DESIGN, "Module map") if p.startswith("studio/")}
    unnamed = sorted(studio_tree() - named)
    assert not unnamed, f"add these to the module map of docs/design.md (## Module map): {unnamed}"


@pytest.mark.parametrize("which", MAPS)
def test_layout_map_names_nothing_twice(which: str) -> None:
    paths = layout_map(*MAPS[which])
    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(prose):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(doc: Path) -> None:
    assert doc.is_file(), f"{doc} is missing"
    prose = FENCE.sub("", doc.read_text(encoding="utf-8"))
    prose = re.sub(r"`[^`\n]*`", "", prose)  # inline code is not a link
    broken: list[str] = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif not linked.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: {broken}"
