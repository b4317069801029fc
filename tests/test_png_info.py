"""Issue 14, item 9: PNG Info. The settings inside the studio's PNGs and AUTOMATIC1111/Forge PNGs, read by
`formats.png` (pure), `Studio.image_info`, `studio image-info FILE [--json]` and the Image tab's drop zone,
and applied to the Image controls in one click."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from studio.cli import main
from studio.formats import png
from studio.service import Studio, StudioError
from tests.test_image_tab import MODELS

# As AUTOMATIC1111 1.10 writes it: a LoRA tag in the prompt, a two-line negative prompt, the newer
# "Schedule type" beside the sampler, quoted values that hold commas, and its bookkeeping keys.
A1111 = (
    "masterpiece, a lighthouse at dusk, (oil painting:1.2) <lora:ink:0.6>\n"
    "Negative prompt: blurry, lowres\n"
    "watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, "
    'Lora hashes: "ink: 0123abcd, other: 4567ef01", Hires upscale: 2, Version: v1.10.1'
)
# As Forge writes a Flux picture: no negative prompt, a sampler we have no scheduler for, its own keys.
FORGE = (
    "a red fox in the snow\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7, "
    "Size: 896x1152, Model: flux1-dev-bnb-nf4-v2, Version: f2.0.1v1.10.1-previous-313"
)


def write_png(path: Path, parameters: str | None) -> Path:
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    Image.new("RGB", (8, 8), "blue").save(path, format="PNG", pnginfo=info)
    return path


def test_an_a1111_png_is_read_whole(tmp_path: Path) -> None:
    info = png.png_info(write_png(tmp_path / "a1111.png", A1111))
    assert info["source"] == "a1111" and info["parameters"] == A1111
    assert info["prompt"] == "masterpiece, a lighthouse at dusk, (oil painting:1.2)"
    assert info["negative_prompt"] == "blurry, lowres\nwatermark"
    assert (info["steps"], info["sampler"], info["cfg_scale"], info["seed"]) == (
        28,
        "DPM++ 2M",
        6.5,
        3141592653,
    )
    assert (info["width"], info["height"], info["model"]) == (512, 768, "v1-5-pruned-emaonly")
    assert info["denoising_strength"] == 0.45 and info["loras"] == [{"id": "ink", "scale": 0.6}]
    assert info["extra"] == {
        "Schedule type": "Karras",
        "Model hash": "6ce0161689",
        "Lora hashes": "ink: 0123abcd, other: 4567ef01",
        "Hires upscale": "2",
        "Version": "v1.10.1",
    }
    assert png.image_settings(info) == {
        "negative_prompt": "blurry, lowres\nwatermark",
        "steps": 28,
        "guidance": 6.5,
        "seed": 3141592653,
        "width": 512,
        "height": 768,
        "strength": 0.45,
        "scheduler": "dpmpp_2m",
        "lora": "ink",
        "lora_scale": 0.6,
    }


def test_a_forge_png_and_pictures_without_settings(tmp_path: Path) -> None:
    info = png.png_info(write_png(tmp_path / "forge.png", FORGE))
    assert (
        info["source"] == "a1111"
        and info["prompt"] == "a red fox in the snow"
        and info["negative_prompt"] == ""
    )
    assert info["extra"]["Distilled CFG Scale"] == "3.5" and info["extra"]["Schedule type"] == "Simple"
    settings = png.image_settings(info)
    assert (
        settings["scheduler"] == "euler"
        and settings["guidance"] == 1.0
        and (settings["width"], settings["height"]) == (896, 1152)
    )
    assert "negative_prompt" in settings and "lora" not in settings and "strength" not in settings
    # A sampler we have no scheduler for keeps the model's default; a bare PNG has no settings at all.
    odd = png.png_info(write_png(tmp_path / "odd.png", FORGE.replace("Sampler: Euler", "Sampler: Heun")))
    assert png.image_settings(odd)["scheduler"] == "default"
    bare = png.png_info(write_png(tmp_path / "bare.png", None))
    assert bare == {"source": None, "parameters": "", "extra": {}} and png.image_settings(bare) == {}
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="is not an image"):
        png.png_info(tmp_path / "notes.png")


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio(MODELS)


def test_the_studios_own_png_round_trips_into_the_controls(studio: Studio, tmp_path: Path) -> None:
    params = {"seed": 11, "negative_prompt": "fog, rain", "scheduler": "euler_a", "steps": 4, "guidance": 3.5}
    final = list(studio.image(model_id="painter", prompt="a calm sea", params=params))[-1]
    info = studio.image_info(final.files[0])
    assert info["source"] == "studio" and info["studio_generation_id"] == final.generation_ids[0]
    assert info["prompt"] == "a calm sea" and info["model"] == "painter"
    assert info["settings"] == {
        "negative_prompt": "fog, rain",
        "steps": 4,
        "guidance": 3.5,
        "seed": 11,
        "width": 64,
        "height": 64,
        "scheduler": "euler_a",
    }
    # The settings run as they are: the same picture again.
    again = list(studio.image(model_id="painter", prompt=info["prompt"], params=info["settings"]))[-1]
    assert Image.open(again.files[0]).tobytes() == Image.open(final.files[0]).tobytes()
    with pytest.raises(StudioError, match="the picture could not be read"):
        studio.image_info(tmp_path / "absent.png")


def _handler(app: Any, name: str) -> Any:
    return next(block.fn for block in app.fns.values() if getattr(block.fn, "__name__", "") == name)


def test_the_image_tab_drop_zone_shows_and_applies_the_settings(studio: Studio, tmp_path: Path) -> None:
    from studio.ui import build_app
    from studio.ui.image import IMAGE_PARAMS

    app = build_app(studio)
    picture = str(write_png(tmp_path / "a1111.png", A1111))
    text, button = _handler(app, "read_png")(picture)
    assert "**Made with AUTOMATIC1111 / Forge.**" in text and "Sampler: DPM++ 2M" in text
    assert "Lora hashes: ink: 0123abcd, other: 4567ef01" in text and button.interactive is True
    prompt, *values = _handler(app, "apply_png")(picture, "painter")
    applied = dict(zip([*IMAGE_PARAMS, "strength", "lora", "lora_scale"], values, strict=True))
    assert prompt == "masterpiece, a lighthouse at dusk, (oil painting:1.2)"
    assert applied["steps"] == 28 and applied["guidance"] == 6.5 and applied["seed"] == 3141592653
    assert applied["scheduler"] == "dpmpp_2m" and applied["negative_prompt"] == "blurry, lowres\nwatermark"
    # The picture's LoRA is one the painter model has (models.yaml names `ink`): applied with its scale.
    assert applied["lora"] == "ink" and applied["lora_scale"] == 0.6
    # Nothing stated, nothing changed: Forge's picture gives no strength, so that control is skipped.
    _, *values = _handler(app, "apply_png")(str(write_png(tmp_path / "f.png", FORGE)), "painter")
    applied = dict(zip([*IMAGE_PARAMS, "strength", "lora", "lora_scale"], values, strict=True))
    assert applied["steps"] == 20 and applied["strength"] == {"__type__": "update"}  # gr.skip()
    text, button = _handler(app, "read_png")(str(write_png(tmp_path / "bare.png", None)))
    assert text == "This picture carries no generation settings." and button.interactive is False


def test_cli_image_info_text_and_json(capsys, tmp_path: Path) -> None:
    picture = str(write_png(tmp_path / "a1111.png", A1111))
    assert main(["image-info", picture]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "Source: a1111",
        "Prompt: masterpiece, a lighthouse at dusk, (oil painting:1.2)",
        "Negative prompt: blurry, lowres",
    ]
    for line in (
        "Steps: 28",
        "Sampler: DPM++ 2M",
        "CFG scale: 6.5",
        "Seed: 3141592653",
        "Size: 512x768",
        "LoRA: ink (scale 0.6)",
        "Schedule type: Karras",
        "Version: v1.10.1",
    ):
        assert line in lines
    assert main(["image-info", picture, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seed"] == 3141592653 and data["extra"]["Model hash"] == "6ce0161689"
    assert main(["image-info", str(write_png(tmp_path / "bare.png", None))]) == 1
    assert "no generation settings" in capsys.readouterr().err
    assert main(["image-info", str(tmp_path / "absent.png")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
