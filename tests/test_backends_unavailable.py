"""Real backends asked for weights that are not there: ModelNotAvailable at once, naming the fix.

Fast tier: no checkpoint is built (moved from the tiny files, whose `tiny` marker means a tiny checkpoint
runs, tests/helpers/tiers.py). Heavy libraries load only as far as each backend's load() goes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.backends import BackendContext, ModelNotAvailable, backend_class, check_models
from studio.backends.diffusers_image import DiffusersImage
from studio.backends.params import ImageParams
from studio.backends.transformers_chat import TransformersChat
from studio.config import ModelSpec, StudioConfig
from studio.service import StudioError


def make_backend(source: str, base_dir: Path) -> DiffusersImage:
    spec = ModelSpec(id="tiny-sd", tabs=["image"], backend="diffusers", source=source)
    return DiffusersImage(spec, BackendContext(model_cache=base_dir / "cache", base_dir=base_dir))


def test_diffusers_kind_is_the_real_backend() -> None:
    assert backend_class("diffusers") is DiffusersImage
    assert DiffusersImage.Params is ImageParams
    check_models(StudioConfig(models=[ModelSpec(id="m", tabs=["image"], backend="diffusers", source="a/b")]))


def test_a_missing_model_folder_is_not_available(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        make_backend(str(tmp_path / "absent"), tmp_path).load()


def test_a_folder_that_is_not_a_pipeline_is_not_available(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="not a diffusers pipeline folder"):
        make_backend(str(tmp_path / "empty"), tmp_path).load()


def test_an_uncached_hub_model_fails_fast_with_the_fix(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailable, match="studio models pull tiny-sd"):
        make_backend("nobody/absent-image-model", tmp_path).load()
    assert time.perf_counter() - started < 15


def test_a_hub_model_that_is_not_downloaded_fails_fast_with_the_fix(make_studio) -> None:
    studio = make_studio(
        "models:\n  - {id: remote, tabs: [chat], backend: transformers-chat, source: nobody/absent-model}\n"
    )
    started = time.perf_counter()
    # The service refuses it before any row (issue 14); the backend itself still fails fast if asked.
    with pytest.raises(StudioError, match="run `studio models pull remote`"):
        list(studio.chat(model_id="remote", message="hi"))
    assert time.perf_counter() - started < 1
    with pytest.raises(ModelNotAvailable):
        TransformersChat(
            studio.config.model("remote"), BackendContext(Path("/nonexistent"), Path("."))
        ).load()
