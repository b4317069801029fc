"""The floor plan, enforced: which layer may import which (docs/design.md), light imports, no test code in
the package.

Each folder of studio/ (and each top-level module) is a layer with the layers it may import; nothing
imports upward. The checker is a plain function, so a test can show that it catches a planted violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parent.parent / "studio"
HEAVY = {"torch", "transformers", "diffusers", "gradio", "accelerate", "peft", "trl"}
BELOW_SERVICE = {
    "config",
    "settings",
    "errors",
    "sources",
    "formats",
    "storage",
    "backends",
    "manager",
    "export",
    "train",
}

# layer -> the other layers it may import (its own folder always may)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"settings"},  # settings.py: the environment's half, re-exported by config
    "settings": set(),
    "sources": {"config", "settings", "errors"},
    "formats": set(),
    "storage": set(),
    "backends": {"config", "settings", "errors", "sources", "formats"},
    "manager": {"config", "settings", "errors", "sources", "backends"},
    "export": {"errors", "formats"},
    "train": {"errors", "formats", "export"},  # torch, trl and peft only inside functions
    "service": BELOW_SERVICE,
    "security": {"config", "settings", "errors"},
    "ui": {"service"},
    "cli": BELOW_SERVICE | {"service", "security", "ui"},
    "__init__": {"config", "errors", "service"},  # studio/__init__.py: the public names, the service lazily
}
# The one deliberate exception (docs/design.md): serving the web app puts the guard middleware in front.
EXCEPTIONS = {("ui/__init__.py", "security")}
LIGHT = {"formats", "storage", "config", "settings", "errors", "sources", "export", "security"}


def imported(source: str, *, top_level_only: bool = False) -> set[str]:
    """Dotted names a module imports; `from studio import x` counts as `studio.x`."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "studio":
                found |= {f"studio.{a.name}" for a in node.names}
    return found


def layer_of(relative: str) -> str:
    """'service/chat.py' -> 'service'; 'config.py' -> 'config'; '__init__.py' -> '__init__'."""
    head = relative.split("/")[0]
    return head.removesuffix(".py")


# Modules of backends/ that are helpers, not kinds: any backend kind may import them (kinds never import
# each other). tests/test_backends_loading.py checks the same rule with this set.
SHARED_BACKEND_HELPERS = frozenset(
    {
        "studio.backends",
        "studio.backends.params",
        "studio.backends.worker",
        "studio.backends.loading",
        "studio.backends.adapters",
        "studio.backends.safety_base",  # the checkers' shared contract, like params
        "studio.backends.diffusers_loras",  # LoRA handling of the diffusers kind, not a kind
        "studio.backends.chat_prompt",  # a transformers chat prompt fitted to the context
        "studio.backends.prefix_cache",  # conversations' KV caches kept between turns
    }
)


def violations(relative: str, source: str) -> list[str]:
    """What a module at studio/<relative> imports that its layer may not."""
    layer = layer_of(relative)
    bad = []
    for name in sorted(imported(source)):
        parts = name.split(".")
        if parts[0] in HEAVY and layer in LIGHT:
            bad.append(f"{name} (a heavy library in a light layer)")
        if parts[0] != "studio" or len(parts) < 2:
            continue
        target = parts[1]
        if target in (layer, "__version__") or (relative, target) in EXCEPTIONS:
            continue
        if target not in ALLOWED[layer]:
            bad.append(f"{name} ({layer} may import {sorted(ALLOWED[layer]) or 'nothing of the studio'})")
    if layer == "backends" and relative not in ("backends/__init__.py",):
        backend_modules = {n for n in imported(source) if n.startswith("studio.backends.")}
        kinds = backend_modules - SHARED_BACKEND_HELPERS
        bad += [f"{n} (backend kinds never import each other)" for n in sorted(kinds)]
    return bad


def modules() -> list[Path]:
    return sorted(STUDIO.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(STUDIO)))
def test_each_module_imports_only_what_its_layer_may(path: Path) -> None:
    relative = path.relative_to(STUDIO).as_posix()
    assert layer_of(relative) in ALLOWED, (
        f"{relative}: a new layer needs a row in ALLOWED (and docs/design.md)"
    )
    assert violations(relative, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("storage/records.py", "from studio.service import Studio"),  # upward
        ("formats/png.py", "import torch"),  # heavy in a pure layer
        ("formats/png.py", "from studio import storage"),  # sideways into another layer
        ("backends/musicgen.py", "from studio.backends.transformers_chat import resolve_device"),
        ("ui/chat.py", "from studio.storage import Generation"),  # the UI talks to the service only
        ("ui/chat.py", "from studio import manager"),
        ("manager/queue.py", "from studio.service.runs import Run"),
        ("config.py", "from studio.errors import StudioError\nfrom studio.backends import backend_class"),
    ],
)
def test_the_checker_catches_a_planted_violation(relative: str, source: str) -> None:
    assert violations(relative, source), f"{source!r} in {relative} was not caught"


def test_the_checker_lets_the_allowed_imports_through() -> None:
    assert (
        violations("service/chat.py", "from studio import storage\nfrom studio.manager import faults") == []
    )
    assert violations("ui/__init__.py", "from studio.security import guard") == []
    assert violations("backends/musicgen.py", "from studio.backends.loading import resolve_device") == []


@pytest.mark.parametrize(
    "path",
    sorted((STUDIO / "backends").glob("*.py")) + sorted((STUDIO / "train").glob("*.py")),
    ids=lambda p: str(p.relative_to(STUDIO)),
)
def test_backends_and_train_import_heavy_libraries_lazily(path: Path) -> None:
    top = imported(path.read_text(encoding="utf-8"), top_level_only=True)
    assert not {m for m in top if m.split(".")[0] in HEAVY}, f"{path.name} imports heavy modules at top level"


def test_every_folder_says_what_it_owns_and_ignores() -> None:
    folders = [p for p in STUDIO.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert all((folder / "__init__.py").is_file() for folder in folders), folders
    for init in sorted(STUDIO.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "Owns" in doc and "Ignores" in doc, (
            f"{init.relative_to(STUDIO)} needs an Owns/Ignores docstring"
        )


def test_the_top_level_stays_small() -> None:
    top = sorted(p.name for p in STUDIO.glob("*.py"))
    assert len(top) <= 8, top


def test_no_test_code_in_the_package() -> None:
    names = [p.relative_to(STUDIO).as_posix() for p in modules()]
    assert not [n for n in names if "test" in n.split("/")[-1]], names


def test_import_studio_and_cli_do_not_load_torch_or_gradio() -> None:
    code = (
        "import sys, studio, studio.cli, studio.service; "
        "print(sorted(m for m in ('torch', 'gradio', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
