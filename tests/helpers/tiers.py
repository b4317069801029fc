"""Test tiers checked against what each test really uses, and the skips CI expects.

Owns: `uses_tiny_checkpoint(item)` (does a test, or any fixture it uses, build a tiny random-weight
checkpoint?), `tier_mismatches(items)` (tests whose `tiny` marker says otherwise: `tiny` means real backends
on tiny checkpoints, nothing else), and `EXPECTED_SKIPS` (the skips `.ci/run` accepts, each with its reason).
Ignores: running anything. conftest.py calls these at collection and when the session ends.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

# A call that builds a tiny checkpoint (tests/helpers/tiny_*.py), or the yaml that points at one.
_BUILDS_TINY = re.compile(r"\bbuild_tiny_\w+\(|\btiny_models_yaml\(|\bbuild_wide_chat_model\(")
# Tiers with a marker of their own: they use tiny checkpoints too, but run in their own lane.
OWN_TIERS = ("browser", "bundled", "gpu")


def _source(func: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):  # builtins, C functions, fixtures made on the fly
        return ""


def uses_tiny_checkpoint(item: Any) -> bool:
    """True when the test function, or a fixture in its closure, calls a tiny-checkpoint builder."""
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        for name in item.fixturenames:
            for fixturedef in info.name2fixturedefs.get(name, ()):
                funcs.append(fixturedef.func)
    return any(func is not None and _BUILDS_TINY.search(_source(func)) for func in funcs)


def tier_mismatches(items: Iterable[Any]) -> list[str]:
    """'<test id>: <why>' for each test whose `tiny` marker does not match what it uses."""
    wrong = []
    for item in items:
        marked = {mark.name for mark in item.iter_markers()}
        tiny = uses_tiny_checkpoint(item)
        if "tiny" in marked and not tiny:
            wrong.append(f"{item.nodeid}: marked tiny but builds no tiny checkpoint (fakes only: no marker)")
        elif tiny and "tiny" not in marked and not marked & set(OWN_TIERS):
            wrong.append(f"{item.nodeid}: runs a tiny checkpoint but is not marked tiny")
    return wrong


# The skips CI accepts, by the start of their reason: (reason, who may skip it). "always": CI's machines
# have no CUDA GPU, and the FTS5 search index is SQLite's (its PostgreSQL twin skips). "not root": without
# root `.ci/run` cannot apt-get install Chromium or PostgreSQL, so the browser tests (about 45) and the
# PostgreSQL twins of the storage tests skip, each with its reason. Anything else that skips fails CI.
EXPECTED_SKIPS: list[tuple[str, str]] = [
    ("needs a CUDA GPU", "always"),
    ("the FTS5 table is SQLite's", "always"),
    ("browser tests need Debian's Chromium", "not root"),
    ("PostgreSQL binaries not found", "not root"),
]


def unexpected_skips(skipped: Iterable[tuple[str, str]], *, root: bool) -> list[str]:
    """'<test id>: <reason>' for each (test id, skip reason) that `EXPECTED_SKIPS` does not allow here."""
    allowed = [reason for reason, who in EXPECTED_SKIPS if who == "always" or not root]
    return [f"{nodeid}: {why}" for nodeid, why in skipped if not any(why.startswith(a) for a in allowed)]


def skip_reason(report: Any) -> str:
    """The reason pytest prints for a skipped report ('Skipped: ' taken off)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def main(argv: list[str]) -> int:
    """`python -m tests.helpers.tiers SKIPS_FILE`: exit 1, listing them, when a skip is not expected."""
    import json
    import os

    with open(argv[0], encoding="utf-8") as file:
        skipped = [(str(a), str(b)) for a, b in (json.loads(line) for line in file if line.strip())]
    root = os.geteuid() == 0
    wrong = unexpected_skips(skipped, root=root)
    who = "root" if root else "not root"
    print(f"{len(skipped)} skipped, {len(skipped) - len(wrong)} of them expected ({who})")
    for line in wrong:
        print(f"unexpected skip: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
