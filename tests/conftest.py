"""Shared test set-up: offline, one thread, temp data dirs, a fake backend and a tiny real checkpoint."""

from __future__ import annotations

import os

from tests.helpers.tiny_chat import OFFLINE_ENV  # light: imports no heavy library

os.environ.update(OFFLINE_ENV)  # before anything imports torch, transformers or gradio

from collections.abc import Iterator
from pathlib import Path

import pytest

from studio import Settings
from studio.service import Studio
from tests.helpers import fakes  # noqa: F401  (registers the fake backend kinds)
from tests.helpers.pg import database_url, postgres_server, postgres_url  # noqa: F401  (database fixtures)
from tests.helpers.served import write_models

FAKE_MODELS = """
models:
  - id: fake
    tabs: [chat, code]
    backend: fake-chat
    source: fake/fake-model
    defaults: {max_new_tokens: 64}
  - id: fake-2
    tabs: [chat]
    backend: fake-chat
    source: fake/other
"""


@pytest.fixture
def make_studio(tmp_path: Path) -> Iterator:
    """Build a Studio over a models.yaml body, with its own temp data dir; closed at the end."""
    made: list[Studio] = []

    def make(body: str = FAKE_MODELS, **kwargs: object) -> Studio:
        folder = tmp_path / f"s{len(made)}"
        folder.mkdir()
        settings = Settings.from_env(models_file=write_models(folder, body), data_dir=folder / "data")
        studio = Studio.from_settings(settings, **kwargs)
        made.append(studio)
        return studio

    yield make
    for studio in made:
        studio.close()


@pytest.fixture
def fake_studio(make_studio) -> Studio:
    return make_studio()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight chat checkpoint (context 256), saved once per test session."""
    import torch

    from tests.helpers.tiny_chat import build_tiny_chat_model

    torch.set_num_threads(1)
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def tiny_models_yaml(model_dir: Path, defaults: str = "{do_sample: false, max_new_tokens: 16}") -> str:
    return f"""
models:
  - id: tiny
    tabs: [chat, code]
    backend: transformers-chat
    source: {model_dir}
    defaults: {defaults}
"""


@pytest.fixture
def tiny_studio(make_studio, tiny_model_dir: Path) -> Studio:
    return make_studio(tiny_models_yaml(tiny_model_dir))


# -- tiers and skips (tests/helpers/tiers.py) -----------------------------------------------------------
TIER_MISMATCHES = pytest.StashKey[list[str]]()
SKIPPED = pytest.StashKey[list[tuple[str, str]]]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the check sees every collected test
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.helpers.tiers import tier_mismatches

    config.stash[TIER_MISMATCHES] = tier_mismatches(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.helpers.tiers import skip_reason

    if report.skipped and not hasattr(report, "wasxfail"):
        _CONFIG[-1].stash.setdefault(SKIPPED, []).append((report.nodeid, skip_reason(report)))


_CONFIG: list[pytest.Config] = []  # the session's config: pytest_runtest_logreport is not given it


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG.append(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With STUDIO_SKIPS_FILE set (`.ci/run` sets it), write each skip as a JSON line [test id, reason]."""
    import json

    path = os.environ.get("STUDIO_SKIPS_FILE")
    if path:
        skipped = session.config.stash.get(SKIPPED, [])
        Path(path).write_text("".join(json.dumps(list(s)) + "\n" for s in skipped), encoding="utf-8")
