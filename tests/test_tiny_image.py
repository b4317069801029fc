"""The real `diffusers` backend on a tiny random-weight Stable Diffusion pipeline loaded with from_pretrained.

Random weights draw noise, so these tests check structure: sizes, seeds, reproducibility, progress,
stopping, image-to-image sharing the text-to-image components, LoRAs changing (or not) the pixels, and
the errors a user sees. 64x64 pictures in 2-4 steps keep the whole file to a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from studio.backends import (
    BackendContext,
    BackendError,
    ImageOutput,
    Progress,
    Request,
)
from studio.backends.diffusers_image import DiffusersImage
from studio.backends.params import SCHEDULERS, ImageParams
from studio.config import LoraSpec, ModelSpec

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.helpers.tiny_chat import build_tiny_sd_pipeline

    torch.set_num_threads(1)
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_sd_dir: Path) -> Path:
    from tests.helpers.tiny_chat import build_tiny_lora

    return build_tiny_lora(tiny_sd_dir.parent / "lora", tiny_sd_dir)


def make_backend(source: str, base_dir: Path, loras: list[LoraSpec] | None = None) -> DiffusersImage:
    spec = ModelSpec(id="tiny-sd", tabs=["image"], backend="diffusers", source=source, loras=loras or [])
    return DiffusersImage(spec, BackendContext(model_cache=base_dir / "cache", base_dir=base_dir))


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path, tiny_lora_dir: Path):
    # The LoRA is given relative to the models.yaml folder, as a user would write it.
    loras = [LoraSpec(id="style", source=f"./{tiny_lora_dir.name}")]
    b = make_backend(str(tiny_sd_dir), tiny_sd_dir.parent, loras)
    b.load()
    yield b
    b.unload()


def params(**overrides: object) -> ImageParams:
    values: dict[str, object] = {"width": 64, "height": 64, "steps": 2, "seed": 7, "guidance": 5.0}
    values.update(overrides)
    return ImageParams.model_validate(values)


def run(backend: DiffusersImage, init_image=None, prompt: str = "a red cat", **overrides: object):
    events = list(backend.generate(Request(prompt=prompt, params=params(**overrides), init_image=init_image)))
    progress = [e for e in events if isinstance(e, Progress)]
    images = [e for e in events if isinstance(e, ImageOutput)]
    return progress, images, events


def pixels(image_output: ImageOutput) -> np.ndarray:
    return np.asarray(image_output.image, dtype=np.int16)


def max_diff(a: ImageOutput, b: ImageOutput) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


# -- registry and loading ----------------------------------------------------------------------------


def test_memory_is_counted_and_returned_on_unload(tiny_sd_dir: Path) -> None:
    b = make_backend(str(tiny_sd_dir), tiny_sd_dir.parent)
    b.load()
    assert b.memory_bytes() > 1_000_000
    b.unload()
    assert b.memory_bytes() == 0
    with pytest.raises(BackendError, match="before load"):
        list(b.generate(Request(prompt="x", params=params())))


# -- text to image -----------------------------------------------------------------------------------


def test_text_to_image_returns_each_picture_with_its_own_seed(backend: DiffusersImage) -> None:
    _, images, events = run(backend, num_images=3, seed=40)
    assert [e.index for e in images] == [0, 1, 2]
    assert [e.seed for e in images] == [40, 41, 42]
    assert all(e.image.size == (64, 64) and e.image.mode == "RGB" for e in images)
    assert events[-3:] == images, "pictures come last"
    # Picture 1 of the batch is picture 0 of a batch of one with its seed (up to batched-float noise).
    _, [alone], _ = run(backend, num_images=1, seed=41)
    assert max_diff(images[1], alone) <= 2


def test_same_seed_same_pixels_and_another_seed_other_pixels(backend: DiffusersImage) -> None:
    _, [a], _ = run(backend, seed=3)
    _, [b], _ = run(backend, seed=3)
    _, [c], _ = run(backend, seed=4)
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_a_missing_seed_is_drawn_and_reported(backend: DiffusersImage) -> None:
    _, [image], _ = run(backend, seed=None)
    assert 0 <= image.seed < 2**32
    _, [again], _ = run(backend, seed=image.seed)
    assert np.array_equal(pixels(image), pixels(again)), "the reported seed reproduces the picture"


def test_seeds_wrap_around_to_stay_valid(backend: DiffusersImage) -> None:
    _, images, _ = run(backend, num_images=2, seed=2**32 - 1)
    assert [e.seed for e in images] == [2**32 - 1, 0]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_runs_with_one_progress_event_per_step(
    backend: DiffusersImage, scheduler: str
) -> None:
    progress, images, _ = run(backend, scheduler=scheduler, steps=3)
    assert [(p.step, p.total) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert len(images) == 1 and images[0].image.size == (64, 64)


def test_default_scheduler_is_restored_after_another_one(backend: DiffusersImage) -> None:
    _, [before], _ = run(backend, seed=9)
    _, [euler], _ = run(backend, seed=9, scheduler="euler_a")
    _, [after], _ = run(backend, seed=9, scheduler="default")
    assert np.array_equal(pixels(before), pixels(after))
    assert not np.array_equal(pixels(before), pixels(euler))


def test_non_square_sizes(backend: DiffusersImage) -> None:
    _, [image], _ = run(backend, width=96, height=64)
    assert image.image.size == (96, 64)


def test_sizes_the_vae_cannot_divide_are_refused(backend: DiffusersImage) -> None:
    bad = ImageParams.model_construct(**{**params().model_dump(), "width": 65})  # past Params' multiple_of=8
    with pytest.raises(BackendError, match="multiples of 2"):
        list(backend.generate(Request(prompt="x", params=bad)))


# -- stopping ----------------------------------------------------------------------------------------


def test_stop_after_the_first_step_returns_no_pictures(backend: DiffusersImage) -> None:
    request = Request(prompt="a cat", params=params(steps=40))
    seen: list[Progress] = []
    images = []
    for event in backend.generate(request):
        if isinstance(event, Progress):
            seen.append(event)
            request.stop.set()
        else:
            images.append(event)
    assert not images
    assert 1 <= len(seen) <= 20, f"stopped after {len(seen)} of 40 steps"
    # The interrupt flag does not leak into the next request.
    progress, [image], _ = run(backend, steps=2)
    assert len(progress) == 2 and image.image.size == (64, 64)


def test_stop_before_the_start_runs_nothing(backend: DiffusersImage) -> None:
    request = Request(prompt="a cat", params=params(steps=40))
    request.stop.set()
    assert list(backend.generate(request)) == []


def test_closing_the_stream_ends_the_job(backend: DiffusersImage) -> None:
    stream = backend.generate(Request(prompt="a cat", params=params(steps=40)))
    assert isinstance(next(stream), Progress)
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 10
    assert backend._worker.lock.acquire(blocking=False), "the job let go of the pipeline"
    backend._worker.lock.release()
    _, images, _ = run(backend, steps=2)
    assert len(images) == 1, "the worker takes the next job at once"
    pool = backend._worker._pool
    assert pool is not None and len(pool._threads) == 1, "one worker, reused"


# -- image to image ----------------------------------------------------------------------------------


def test_image_to_image_starts_from_the_init_image(backend: DiffusersImage) -> None:
    from PIL import Image

    init = Image.new("RGB", (100, 80), (200, 30, 30))
    progress, [image], _ = run(backend, init_image=init, steps=4, strength=0.5, seed=5)
    assert image.image.size == (64, 64) and image.seed == 5
    assert [(p.step, p.total) for p in progress] == [(1, 2), (2, 2)], "steps x strength steps run"
    _, [text_only], _ = run(backend, steps=4, seed=5)
    assert not np.array_equal(pixels(image), pixels(text_only))
    _, [again], _ = run(backend, init_image=init, steps=4, strength=0.5, seed=5)
    assert np.array_equal(pixels(image), pixels(again))


def test_image_to_image_shares_the_text_to_image_components(backend: DiffusersImage) -> None:
    img2img = backend.img2img_pipeline()
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert img2img is backend.img2img_pipeline(), "built once"
    assert img2img.unet is backend.pipe.unet
    assert img2img.vae is backend.pipe.vae and img2img.text_encoder is backend.pipe.text_encoder


def test_image_to_image_with_less_than_one_step_is_refused(backend: DiffusersImage) -> None:
    from PIL import Image

    with pytest.raises(BackendError, match="less than one"):
        run(backend, init_image=Image.new("RGB", (64, 64)), steps=2, strength=0.3)


# -- LoRA --------------------------------------------------------------------------------------------


def test_an_unknown_lora_is_refused_naming_the_known_ones(backend: DiffusersImage) -> None:
    with pytest.raises(BackendError, match=r"no LoRA 'nope'.*'style'"):
        run(backend, lora="nope")


def test_lora_changes_the_picture_and_scale_zero_or_no_lora_does_not(backend: DiffusersImage) -> None:
    _, [plain], _ = run(backend, seed=11)
    _, [styled], _ = run(backend, seed=11, lora="style", lora_scale=1.0)
    _, [zero], _ = run(backend, seed=11, lora="style", lora_scale=0.0)
    _, [plain_again], _ = run(backend, seed=11)
    _, [styled_again], _ = run(backend, seed=11, lora="style", lora_scale=1.0)
    assert max_diff(plain, styled) > 10
    assert max_diff(plain, zero) <= 1
    assert np.array_equal(pixels(plain), pixels(plain_again)), "no LoRA restores the original output"
    assert np.array_equal(pixels(styled), pixels(styled_again)), "re-enabling it after disable works"
    assert backend._loaded_loras == {"style"}, "weights are loaded once"


def test_lora_applies_to_image_to_image_too(backend: DiffusersImage) -> None:
    from PIL import Image

    init = Image.new("RGB", (64, 64), (20, 120, 200))
    _, [plain], _ = run(backend, init_image=init, steps=4, strength=0.5, seed=2)
    _, [styled], _ = run(backend, init_image=init, steps=4, strength=0.5, seed=2, lora="style")
    assert max_diff(plain, styled) > 10


def test_a_lora_whose_files_are_missing_is_an_error(tiny_sd_dir: Path, tmp_path: Path) -> None:
    b = make_backend(str(tiny_sd_dir), tmp_path, [LoraSpec(id="gone", source="./gone")])
    b.load()
    with pytest.raises(BackendError, match=r"LoRA 'gone'.*does not exist"):
        run(b, lora="gone")
    b.unload()


def test_a_lora_on_the_hub_that_is_not_downloaded_fails_fast(tiny_sd_dir: Path, tmp_path: Path) -> None:
    b = make_backend(str(tiny_sd_dir), tmp_path, [LoraSpec(id="hub", source="nobody/absent-lora")])
    b.load()
    with pytest.raises(BackendError, match=r"LoRA 'hub' \(nobody/absent-lora\) is not downloaded"):
        run(b, lora="hub")
    b.unload()


def test_a_folder_that_is_not_a_lora_is_refused_and_the_model_still_works(tiny_sd_dir: Path) -> None:
    b = make_backend(str(tiny_sd_dir), tiny_sd_dir.parent, [LoraSpec(id="unet", source="./pipeline/unet")])
    b.load()
    for _ in range(2):  # a failed load leaves nothing half-registered behind
        with pytest.raises(BackendError, match=r"LoRA 'unet' does not fit model 'tiny-sd'"):
            run(b, lora="unet")
    _, [image], _ = run(b)
    assert image.image.size == (64, 64)
    b.unload()


def test_memory_options_load_and_generate(tiny_sd_dir: Path) -> None:
    """attention_slicing trades speed for memory without changing the picture; vae_tiling decodes in tiles
    (blended seams may shift a few pixel values, so only the size is checked for it)."""
    context = BackendContext(model_cache=tiny_sd_dir.parent, base_dir=tiny_sd_dir.parent)

    def with_options(**options: object) -> DiffusersImage:
        spec = ModelSpec(
            id="lowmem", tabs=["image"], backend="diffusers", source=str(tiny_sd_dir), options=options
        )
        backend = DiffusersImage(spec, context)
        backend.load()
        return backend

    plain = make_backend(str(tiny_sd_dir), tiny_sd_dir.parent)
    plain.load()
    _, [reference], _ = run(plain, seed=3)
    slicing = with_options(attention_slicing=True)
    _, [sliced], _ = run(slicing, seed=3)
    slicing.unload()
    assert max_diff(sliced, reference) <= 1
    tiling = with_options(vae_tiling=True)
    _, [tiled], _ = run(tiling, seed=3, width=128, height=64)
    assert tiled.image.size == (128, 64)
    for extra in (plain, tiling):
        extra.unload()


def test_cpu_offload_needs_a_gpu(tiny_sd_dir: Path) -> None:
    spec = ModelSpec(
        id="x", tabs=["image"], backend="diffusers", source=str(tiny_sd_dir), options={"cpu_offload": "model"}
    )
    with pytest.raises(BackendError, match="cpu_offload needs"):
        DiffusersImage(spec, BackendContext(model_cache=tiny_sd_dir, base_dir=tiny_sd_dir)).load()
