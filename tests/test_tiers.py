"""The tier markers match what each test uses, and CI's skip check lets through only the expected skips."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import TIER_MISMATCHES
from tests.helpers.tiers import tier_mismatches, unexpected_skips


def test_every_collected_test_carries_the_tiny_marker_exactly_when_it_runs_a_tiny_checkpoint(
    request: pytest.FixtureRequest,
) -> None:
    """Checked over every test this session collected (all of them in CI), before `-m` deselects any."""
    mismatches = request.config.stash[TIER_MISMATCHES]
    assert not mismatches, "\n".join(mismatches)


def _item(func: Any, fixtures: dict[str, Any], marks: list[str]) -> Any:
    defs = {name: [SimpleNamespace(func=fixture)] for name, fixture in fixtures.items()}
    return SimpleNamespace(
        nodeid=func.__name__,
        function=func,
        fixturenames=list(fixtures),
        _fixtureinfo=SimpleNamespace(name2fixturedefs=defs),
        iter_markers=lambda: [SimpleNamespace(name=mark) for mark in marks],
    )


def test_a_fake_test_marked_tiny_and_a_tiny_test_without_the_marker_are_both_caught() -> None:
    from tests.helpers import tier_examples as ex

    tiny, fake = {"tiny_dir": ex.tiny_fixture}, {"fake_studio": ex.fake_fixture}
    wrong = tier_mismatches(
        [
            _item(ex.test_fake, fake, ["tiny"]),
            _item(ex.test_tiny, tiny, []),
            _item(ex.test_builds_its_own, {}, []),
            _item(ex.test_tiny, tiny, ["tiny"]),  # right
            _item(ex.test_tiny, tiny, ["browser"]),  # a tier of its own
            _item(ex.test_fake, fake, []),  # right
        ]
    )
    assert [line.split(":")[0] for line in wrong] == ["test_fake", "test_tiny", "test_builds_its_own"]


def test_only_the_documented_skips_pass_the_ci_check() -> None:
    skipped = [
        ("tests/test_manager_gpu.py::test_a", "needs a CUDA GPU"),
        ("tests/test_library_storage.py::test_b[postgresql]", "the FTS5 table is SQLite's"),
        ("tests/browser/test_chat_browser.py::test_c", "browser tests need Debian's Chromium at /usr/bin/x"),
        ("tests/test_postgres.py::test_d", "PostgreSQL binaries not found in /usr/lib/postgresql/15/bin"),
        ("tests/test_bundled.py::test_e", "bundled weights not in /root/.cache; run `studio models pull`"),
    ]
    assert [line.split(":")[0] for line in unexpected_skips(skipped, root=False)] == ["tests/test_bundled.py"]
    as_root = [line.split("::")[0] for line in unexpected_skips(skipped, root=True)]
    assert as_root == [
        "tests/browser/test_chat_browser.py",
        "tests/test_postgres.py",
        "tests/test_bundled.py",
    ]
