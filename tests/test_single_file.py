"""Issue 14, item 9: a single-file Stable Diffusion checkpoint (`source: tiny.safetensors` in models.yaml, as
A1111 and civitai share them) loads through diffusers' `from_single_file` and paints, offline.

The checkpoint is the tiny random-weight pipeline renamed to the original layout and written as one file
(tests/helpers/single_file.py); its pipeline configuration comes from `options: {config: ...}`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.service import Studio
from tests.helpers.served import studio_at

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.helpers.single_file import write_single_file
    from tests.helpers.tiny_chat import build_tiny_sd_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("single")
    build_tiny_sd_pipeline(root / "pipeline")
    write_single_file(root / "pipeline", root / "tiny-sd.safetensors")
    (root / "tiny-sd.ckpt").write_bytes(b"not read: a pickle could run code")
    return root


MODELS = """
models:
  - id: single
    tabs: [image]
    backend: diffusers
    source: ./tiny-sd.safetensors
    options: {config: ./pipeline}
    defaults: {steps: 2, width: 64, height: 64, guidance: 5.0}
  - id: folder
    tabs: [image]
    backend: diffusers
    source: ./pipeline
    defaults: {steps: 2, width: 64, height: 64, guidance: 5.0}
  - id: pickle
    tabs: [image]
    backend: diffusers
    source: ./tiny-sd.ckpt
  - id: unconfigured
    tabs: [image]
    backend: diffusers
    source: ./tiny-sd.safetensors
"""


@pytest.fixture(scope="module")
def studio(folder: Path):
    made = studio_at(folder, MODELS)
    yield made
    made.close()


def test_a_single_file_checkpoint_paints_like_its_pipeline_folder(studio: Studio) -> None:
    assert studio.model_status("single") == "ready"
    single = list(studio.image(model_id="single", prompt="a red cat", params={"seed": 5}))[-1]
    assert single.status == "ok", single.error
    folder = list(studio.image(model_id="folder", prompt="a red cat", params={"seed": 5}))[-1]
    assert folder.status == "ok", folder.error
    ours, theirs = (np.asarray(Image.open(f[0])) for f in (single.files, folder.files))
    assert ours.shape == (64, 64, 3) and np.array_equal(ours, theirs)  # same weights, same seed
    # Image-to-image is built over the same components.
    again = list(studio.image(model_id="single", prompt="a cat", init_image=single.files[0]))[-1]
    assert again.status == "ok", again.error


def test_other_single_files_are_refused_with_the_reason(studio: Studio) -> None:
    pickle = list(studio.image(model_id="pickle", prompt="a cat"))[-1]
    assert (
        pickle.status == "error" and "single-file .safetensors checkpoint, not tiny-sd.ckpt" in pickle.error
    )
    # Offline, without `options.config`, diffusers would fetch the configuration: the error says what to set.
    bare = list(studio.image(model_id="unconfigured", prompt="a cat"))[-1]
    assert bare.status == "error" and "set `options: {config:" in bare.error, bare.error
