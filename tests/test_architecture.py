"""Import rules from ARCHITECTURE.md, checked by scanning imports, and a light `import studio`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parent.parent / "studio"
HEAVY = {"torch", "transformers", "diffusers", "gradio", "accelerate"}


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(folder: str = "") -> list[Path]:
    return sorted((STUDIO / folder).rglob("*.py")) if folder else sorted(STUDIO.rglob("*.py"))


@pytest.mark.parametrize("path", modules("ui"), ids=lambda p: p.name)
def test_ui_only_talks_to_the_service(path: Path) -> None:
    bad = {
        m
        for m in imports(path)
        if m.split(".")[0] in {"torch", "sqlmodel", "sqlalchemy"}
        or m in {"studio.storage", "studio.manager"}
        or m.startswith("studio.backends")
    }
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", [*modules("storage"), STUDIO / "config.py"], ids=lambda p: p.name)
def test_storage_and_config_stay_light(path: Path) -> None:
    found = imports(path)
    assert not {m for m in found if m.split(".")[0] in HEAVY}, path.name
    # storage modules may import each other, nothing else of the studio; config imports none of it
    allowed = "studio.storage" if path.parent.name == "storage" else "studio.config-imports-nothing"
    assert all(m.startswith(allowed) for m in found if m.startswith("studio")), path.name


@pytest.mark.parametrize("path", modules("backends"), ids=lambda p: p.name)
def test_backends_import_heavy_libraries_lazily_and_never_storage(path: Path) -> None:
    top = imports(path, top_level_only=True)
    assert not {m for m in top if m.split(".")[0] in HEAVY}, f"{path.name} imports heavy modules at top level"
    assert not {m for m in imports(path) if m in {"studio.storage", "studio.service", "studio.ui"}}


def test_import_studio_and_cli_do_not_load_torch_or_gradio() -> None:
    code = (
        "import sys, studio, studio.cli, studio.service; "
        "print(sorted(m for m in ('torch', 'gradio', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
