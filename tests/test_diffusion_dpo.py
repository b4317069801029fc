"""Diffusion-DPO end to end on a tiny random-weight Stable Diffusion pipeline: A/B votes on pictures made
through the service, a run of a few steps (own loop, LoRA on the UNet), the variant drawing through the
real diffusers backend on its base's pipeline (PNG parameters naming it), the blind comparison with its
base feeding the leaderboard, a restart, the CLI, Stop, a full disk, and every refusal.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from studio import Settings
from studio.errors import StudioError
from studio.service import Studio, TrainUpdate

pytestmark = pytest.mark.tiny

FAST = {"max_steps": 2, "learning_rate": 1e-3}
DRAW = {"steps": 2, "width": 64, "height": 64}


def _models(sd: Path, xl: Path, flux: Path, single: Path) -> str:
    return f"""
models:
  - id: tiny-sd
    tabs: [image]
    backend: diffusers
    source: {sd}
    defaults: {{steps: 2, width: 64, height: 64}}
  - id: tiny-xl
    tabs: [image]
    backend: diffusers
    source: {xl}
    defaults: {{steps: 2, width: 64, height: 64}}
  - id: flux
    tabs: [image]
    backend: diffusers
    source: {flux}
  - id: single
    tabs: [image]
    backend: diffusers
    source: {single}
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/painter
"""


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Studio, dict[str, int]]]:
    """Six A/B votes on tiny-sd's pictures (one with its winner's file deleted afterwards), a tie and a
    'both bad'; a tiny SDXL pipeline; a Flux-typed folder and a single-file checkpoint for the refusals."""
    import torch

    from tests.conftest import write_models
    from tests.helpers.tiny_chat import build_tiny_sd_pipeline
    from tests.helpers.tiny_sdxl import build_tiny_sdxl_pipeline

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ddpo")
    sd = build_tiny_sd_pipeline(folder / "sd")
    xl = build_tiny_sdxl_pipeline(folder / "xl")
    flux = folder / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    single = folder / "single.safetensors"
    single.write_bytes(b"\0" * 16)
    settings = Settings.from_env(
        models_file=write_models(folder, _models(sd, xl, flux, single)), data_dir=folder / "data"
    )
    studio = Studio.from_settings(settings)
    ids: dict[str, int] = {}
    for i, choice in enumerate(["a", "b", "a", "b", "a", "a", "tie", "both_bad"]):
        a, b = studio.compare(
            tab="image",
            prompt=f"a lighthouse at dusk, number {i}",
            a={"model": "tiny-sd", "params": {**DRAW, "seed": i}},
            b={"model": "tiny-sd", "params": {**DRAW, "seed": 100 + i}},
        )
        assert a.status == "ok" and b.status == "ok", (a.error, b.error)
        studio.prefer(a.generation_id, b.generation_id, choice)
        ids[f"a{i}"] = a.generation_id or 0
    deleted = studio.generation_file(ids["a5"])
    deleted.unlink()  # its pair is skipped and counted
    yield settings, studio, ids
    studio.close()


def _finish(updates: Iterator[TrainUpdate]) -> tuple[TrainUpdate, list[TrainUpdate]]:
    seen = list(updates)
    assert seen[-1].done and all(not u.done for u in seen[:-1])
    return seen[-1], seen


@pytest.fixture(scope="module")
def trained(place: tuple[Settings, Studio, dict]) -> tuple[TrainUpdate, list[TrainUpdate]]:
    _, studio, _ = place
    return _finish(studio.train(method="diffusion-dpo", model_id="tiny-sd", params=FAST))


def _pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.int16)


def test_a_run_trains_a_lora_variant_from_the_image_votes(trained: tuple[TrainUpdate, list]) -> None:
    final, seen = trained
    assert final.status == "ok" and final.error is None, final.error
    assert final.variant == f"tiny-sd+diffusion-dpo-{final.run_id}" and final.method == "diffusion-dpo"
    adapter = Path(final.adapter or "")
    assert (adapter / "pytorch_lora_weights.safetensors").is_file()
    assert not list(adapter.parent.glob("*.partial"))
    # 6 winners: one pair's picture deleted, the tie dropped, 'both bad' never a pair.
    assert final.skipped == {"media file deleted": 1, "tie": 1}
    assert final.train_records + final.eval_records == 5 and final.metrics["skipped_pairs"] == 2
    phases = [u.phase for u in seen]
    assert phases.index("loading") < phases.index("training") < phases.index("saving")
    assert [int(h["step"]) for h in final.history] == [1, 2] and final.step == final.total == 2
    for h in final.history:
        assert {"loss", "rewards/accuracies", "rewards/margins", "grad_norm"} <= h.keys()
        assert 0.0 <= h["rewards/accuracies"] <= 1.0
    assert final.metrics["beta_dpo"] == 2500 and final.metrics["resolution"] == 64  # SD 1.x; 32 x VAE's 2


def test_the_variant_draws_on_its_base_through_the_real_backend(
    place: tuple[Settings, Studio, dict], trained: tuple[TrainUpdate, list]
) -> None:
    from studio.formats import png

    _, studio, _ = place
    variant = trained[0].variant
    assert variant in [m.id for m in studio.models("image")]
    before = studio.generate_image_result(
        model_id="tiny-sd", prompt="a red boat", params={**DRAW, "seed": 7}, user=None
    )
    mine = studio.generate_image_result(
        model_id=variant, prompt="a red boat", params={**DRAW, "seed": 7}, user=None
    )
    after = studio.generate_image_result(
        model_id="tiny-sd", prompt="a red boat", params={**DRAW, "seed": 7}, user=None
    )
    assert mine.status == "ok", mine.error
    # The base is untouched with the variant loaded (its adapter off), and the LoRA changes the picture.
    assert np.array_equal(_pixels(before.files[0]), _pixels(after.files[0]))
    assert not np.array_equal(_pixels(before.files[0]), _pixels(mine.files[0]))
    assert set(studio.manager.loaded()) >= {"tiny-sd", variant}
    info = png.png_info(Path(mine.files[0]))
    assert info["model"] == variant
    assert info["extra"]["Base model"] == "tiny-sd"  # type: ignore[index]
    assert info["extra"]["Variant LoRA"].startswith(f"adapters/{variant} (diffusion-dpo")  # type: ignore[index]


def test_the_blind_comparison_with_the_base_draws_pictures_and_feeds_the_leaderboard(
    place: tuple[Settings, Studio, dict], trained: tuple[TrainUpdate, list]
) -> None:
    _, studio, _ = place
    variant = trained[0].variant
    a, b = studio.compare_with_base(variant, prompt="a quiet harbour", seed=3)
    assert {a.model, b.model} == {variant, "tiny-sd"} and a.tab == b.tab == "image"
    assert a.files and b.files
    studio.prefer(a.generation_id, b.generation_id, "a" if a.model == variant else "b")
    board = {(r["tab"], r["model"]) for r in studio.leaderboard()}
    assert ("image", variant) in board


def test_the_variant_survives_a_restart_and_the_cli_trains_and_draws(
    place: tuple[Settings, Studio, dict],
    trained: tuple[TrainUpdate, list],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from studio.cli import main

    settings, _, _ = place
    again = Studio.from_settings(settings)
    try:
        assert trained[0].variant in {m.id for m in again.models("image")}
    finally:
        again.close()
    args = ["--models", str(settings.models_file), "--data-dir", str(settings.data_dir)]
    code = main(
        ["train", "--method", "diffusion-dpo", "--model", "tiny-sd", "--max-steps", "1", "--resolution", "80",
         "--json", *args]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert set(result) >= {"run_id", "variant", "adapter", "base", "method", "status", "metrics"}
    assert result["status"] == "ok" and result["metrics"]["resolution"] == 80
    assert "step 1/1" in out.err
    drawn = ["generate", "image", "a kite", "--model", result["variant"], "--param", "steps=2"]
    assert main([*drawn, "--param", "width=64", "--param", "height=64", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == result["variant"]
    assert (
        main(["train", "--method", "diffusion-dpo", "--model", "tiny-sd", "--resolution", "100", *args]) == 2
    )
    assert "resolution=100: must be a multiple of 8" in capsys.readouterr().err


def test_stop_ends_the_run_between_steps_without_a_variant(place: tuple[Settings, Studio, dict]) -> None:
    _, studio, _ = place
    updates = studio.train(
        method="diffusion-dpo", model_id="tiny-sd", params={"max_steps": 500, "grad_accum": 2}, run_key="ddpo"
    )
    at = None
    for update in updates:
        if at is None and update.phase == "training" and update.step >= 1:
            at = update.step
            assert studio.cancel("ddpo")
        final = update
    assert at is not None and final.status == "stopped" and final.variant is None
    assert final.step <= at + 1 < 500
    assert studio.train_run(final.run_id)["status"] == "stopped"
    assert not list(studio.adapters_dir.glob(f"*-{final.run_id}*"))


def test_a_full_disk_while_saving_leaves_no_half_lora(
    place: tuple[Settings, Studio, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import StableDiffusionPipeline

    _, studio, _ = place

    def full_disk(folder: str, **kwargs: Any) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "pytorch_lora_weights.safetensors").write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StableDiffusionPipeline, "save_lora_weights", full_disk)
    final, _ = _finish(studio.train(method="diffusion-dpo", model_id="tiny-sd", params={"max_steps": 1}))
    assert final.status == "error" and "No space left on device" in (final.error or "")
    assert final.variant is None and not list(studio.adapters_dir.glob(f"*-{final.run_id}*"))


def test_bad_requests_are_refused_before_anything_is_stored(place: tuple[Settings, Studio, dict]) -> None:
    _, studio, _ = place
    runs = len(studio.train_runs())
    refusals = {
        "fake-image); diffusion-dpo trains a diffusers image model": {"model_id": "painter"},
        "1.x/2.x and SDXL pipelines; this model is a FluxPipeline": {"model_id": "flux"},
        "is the single file single.safetensors: training needs a diffusers pipeline folder": {
            "model_id": "single"
        },
        "reads the image tab's votes, not the chat tab's": {"model_id": "tiny-sd", "tab": "chat"},
        "resolution=100: must be a multiple of 8": {"model_id": "tiny-sd", "params": {"resolution": 100}},
        "lora_r=0 is out of range": {"model_id": "tiny-sd", "params": {"lora_r": 0}},
        "unknown hyperparameter 'max_length'": {"model_id": "tiny-sd", "params": {"max_length": 64}},
        "not enough data to train diffusion-dpo (tab image, since 2099-01-01): 0 picture pairs, at least 4": {
            "model_id": "tiny-sd", "since": "2099-01-01"
        },
    }  # fmt: skip
    for message, request in refusals.items():
        with pytest.raises(StudioError, match=_escaped(message)):
            next(iter(studio.train(method="diffusion-dpo", **request)))
    with pytest.raises(StudioError, match="training takes a chat model"):
        next(iter(studio.train(method="dpo", model_id="tiny-sd")))
    assert len(studio.train_runs()) == runs


def test_the_loop_stops_on_a_nan_loss_and_counts_pictures_gone_since_the_check(
    place: tuple[Settings, Studio, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from studio.train import diffusion_dpo
    from studio.train.diffusion_params import diffusion_hyperparams

    _, studio, _ = place
    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    Image.fromarray(np.full((64, 64, 3), 40, dtype=np.uint8)).save(dark)
    Image.fromarray(np.full((96, 48, 3), 200, dtype=np.uint8)).save(light)  # another size: resized
    records = [
        {"prompt": "a lamp", "chosen": str(light), "rejected": str(dark)},
        {"prompt": "a lamp", "chosen": str(tmp_path / "gone.png"), "rejected": str(dark)},
    ]
    real = diffusion_dpo.dpo_loss

    def broken(*args: Any, **kwargs: Any) -> Any:
        loss, metrics = real(*args, **kwargs)
        return loss * float("nan"), {**metrics, "loss": float("nan")}

    monkeypatch.setattr(diffusion_dpo, "dpo_loss", broken)
    out = diffusion_dpo.run(
        base=studio.config.model("tiny-sd").source,
        train_records=records,
        eval_records=[],
        out=tmp_path / "lora",
        params=diffusion_hyperparams({"max_steps": 3}),
        stop=threading.Event(),
    )
    assert out.status == "stopped" and out.steps == 0 and out.adapter is None
    assert "the loss became nan at step 1" in (out.error or "") and "lower the learning rate" in (
        out.error or ""
    )
    assert out.metrics["skipped_pairs"] == 1 and not (tmp_path / "lora").exists()


def _served_file(output: Any) -> str:
    """A picture output through gradio_client: a path, or a component update whose value holds one."""
    while isinstance(output, dict):
        output = output.get("value") if "value" in output else output.get("path")
    return str(output)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_the_train_tab_trains_an_image_variant_and_compares_pictures(
    place: tuple[Settings, Studio, dict],
) -> None:
    from gradio_client import Client

    from tests.helpers.served import serving

    _, studio, _ = place
    # lr, beta, rank, alpha, epochs, max steps, batch, max length, held out, resolution, beta_dpo
    settings = [0, 0.1, 4, 0, 1, 1, 2, 512, 0.15, 0, 0]  # beta and max length are not sent for images
    with serving(studio) as server:
        client = Client(server.url, verbose=False)
        out = client.predict("diffusion-dpo", "tiny-sd", "", "", False, *settings, api_name="/train")
        progress, *_, image_models = out
        assert "is ready in the Image tab" in progress and "2 pair(s) left out" in progress, progress
        name = progress.split("**")[3]
        assert name.startswith("tiny-sd+diffusion-dpo-") and name in [v for _, v in image_models["choices"]]
        asked, text_a, text_b, reveal, picture_a, picture_b = client.predict(
            name, "a windmill", api_name="/train_compare"
        )
        assert asked == "**Prompt:** a windmill" and text_a == text_b == "" == reveal
        assert all(Path(_served_file(p)).is_file() for p in (picture_a, picture_b)), (picture_a, picture_b)
        note, *_ = client.predict(name, api_name="/promote_variant")
        assert "is now the image tab's default" in note and studio.models("image")[0].id == name
        client.predict(name, api_name="/discard_variant")
    assert name not in {m.id for m in studio.models("image")}


def test_deleting_the_variant_takes_it_out_of_the_image_tab(
    place: tuple[Settings, Studio, dict], trained: tuple[TrainUpdate, list]
) -> None:
    _, studio, _ = place
    variant = trained[0].variant
    assert variant is not None
    folder = Path(trained[0].adapter or "")
    studio.delete_variant(variant)
    assert variant not in {m.id for m in studio.models("image")} and not folder.exists()
    assert studio.generate_image_result(model_id="tiny-sd", prompt="x", params=DRAW, user=None).status == "ok"
    shutil.rmtree(folder, ignore_errors=True)


def test_an_sdxl_base_trains_with_its_beta_and_its_variant_draws(
    place: tuple[Settings, Studio, dict],
) -> None:
    from studio.formats import png

    _, studio, _ = place
    for i in range(4):
        a, b = studio.compare(
            tab="image",
            prompt=f"a windmill, number {i}",
            a={"model": "tiny-xl", "params": {**DRAW, "seed": i}},
            b={"model": "tiny-xl", "params": {**DRAW, "seed": 50 + i}},
        )
        studio.prefer(a.generation_id, b.generation_id, "a")
    final, _ = _finish(studio.train(method="diffusion-dpo", model_id="tiny-xl", params={"max_steps": 1}))
    assert final.status == "ok" and final.variant == f"tiny-xl+diffusion-dpo-{final.run_id}", final.error
    assert final.metrics["beta_dpo"] == 5000  # SDXL's default, as train_diffusion_dpo_sdxl.py
    drawn = studio.generate_image_result(
        model_id=final.variant, prompt="a windmill", params={**DRAW, "seed": 1}, user=None
    )
    assert drawn.status == "ok", drawn.error
    assert png.png_info(Path(drawn.files[0]))["extra"]["Base model"] == "tiny-xl"  # type: ignore[index]
