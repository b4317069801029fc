"""SDXL (the shipped models.yaml has SDXL-Turbo) through the real `diffusers` backend and the Image service,
on a tiny random-weight SDXL pipeline built in code (tests/helpers/tiny_sdxl.py): AutoPipeline picks the
XL pipeline, text-to-image and image-to-image run with SDXL-Turbo's shipped defaults (guidance 0, Euler
ancestral), seeds reproduce, and the picture is stored with its row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.service import Studio

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.helpers.tiny_sdxl import build_tiny_sdxl_pipeline

    torch.set_num_threads(1)
    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "pipeline")


@pytest.fixture
def studio(make_studio, sdxl_dir: Path) -> Studio:
    # SDXL-Turbo's entry in the shipped models.yaml, at 64x64 and 2 steps, on the tiny pipeline.
    return make_studio(
        "models:\n"
        "  - id: sdxl-turbo\n"
        "    tabs: [image]\n"
        "    backend: diffusers\n"
        f"    source: {sdxl_dir}\n"
        "    defaults: {steps: 2, guidance: 0.0, width: 64, height: 64, scheduler: euler_a}\n"
        "    options: {vae_tiling: true}\n"
    )


def test_an_sdxl_pipeline_runs_text_to_image_and_image_to_image(studio: Studio) -> None:
    final = list(studio.image(model_id="sdxl-turbo", prompt="a lighthouse at dusk", params={"seed": 3}))[-1]
    assert final.status == "ok", final.error
    with studio.manager.use("sdxl-turbo") as backend:  # the model stays loaded after the job
        assert type(backend.pipe).__name__ == "StableDiffusionXLPipeline"  # type: ignore[attr-defined]
    (path,) = final.files
    first = np.asarray(Image.open(path))
    assert first.shape == (64, 64, 3)
    again = list(studio.image(model_id="sdxl-turbo", prompt="a lighthouse at dusk", params={"seed": 3}))[-1]
    assert np.array_equal(first, np.asarray(Image.open(again.files[0]))), "same seed, same picture"

    init = Image.new("RGB", (64, 64), (200, 30, 30))
    init_file = Path(path).with_name("init.png")
    init.save(init_file)
    img2img = list(
        studio.image(
            model_id="sdxl-turbo", prompt="a lighthouse", params={"seed": 3, "steps": 4}, init_image=init_file
        )
    )[-1]
    assert img2img.status == "ok", img2img.error
    assert not np.array_equal(first, np.asarray(Image.open(img2img.files[0])))
    assert [h["status"] for h in studio.history()] == ["ok", "ok", "ok"]
