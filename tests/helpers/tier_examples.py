"""Example test functions and fixtures for tests/test_tiers.py's check of the tier check (never collected).

Owns: a fake test, tiny tests (through a fixture or built in the body) and their fixtures.
Ignores: running them; only their source is read.
"""

from __future__ import annotations

from typing import Any


def tiny_fixture(tmp_path: Any) -> Any:
    from tests.helpers.tiny_chat import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path)


def fake_fixture(make_studio: Any) -> Any:
    return make_studio()


def test_fake(fake_studio: Any) -> None:
    assert fake_studio


def test_tiny(tiny_dir: Any) -> None:
    assert tiny_dir


def test_builds_its_own(tmp_path: Any) -> None:
    from tests.helpers.tiny_audio import build_tiny_musicgen

    build_tiny_musicgen(tmp_path)
