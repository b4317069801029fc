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
