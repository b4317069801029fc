"""Diffusion-DPO's files: which pipelines it trains, the pictures it reads, the LoRA it writes.

Owns: the pipeline family of a base (`family_of`: Stable Diffusion 1.x/2.x or SDXL, from its
model_index.json; anything else is a StudioError naming it), a picture read, resized (shorter side) and
centre-cropped to the run's resolution as a tensor in [-1, 1] (`load_picture`: OSError when it is gone or
not a picture), and the UNet's LoRA saved in diffusers' format (`pytorch_lora_weights.safetensors`, what
`pipe.load_lora_weights` reads) into `<out>.partial`, renamed when complete (`save_lora`).
Ignores: the loop (diffusion_dpo.py). torch, diffusers, peft and PIL are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.errors import StudioError

_FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}


def family_of(where: str | Path) -> str:
    """ "sd" for a Stable Diffusion 1.x/2.x pipeline, "sdxl" for SDXL (folder or Hub id in the local
    cache); a StudioError naming the pipeline for anything else."""
    index = Path(where) / "model_index.json"
    if not index.is_file() and not Path(where).exists():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(where), "model_index.json")
        index = Path(cached) if isinstance(cached, str) else index
    try:
        name = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError):
        raise StudioError(
            f"{where} is not a diffusers pipeline folder (no readable model_index.json): diffusion-dpo "
            "trains a Stable Diffusion pipeline"
        ) from None
    family = _FAMILIES.get(name)
    if family is None:
        raise StudioError(
            "diffusion-dpo trains the UNet of Stable Diffusion 1.x/2.x and SDXL pipelines; this model is a "
            f"{name or 'pipeline of unknown type'}"
        )
    return family


def load_picture(path: str, resolution: int) -> Any:
    """An RGB picture resized (shorter side) and centre-cropped to resolution x resolution, as a float
    tensor in [-1, 1] of shape (3, H, W). OSError when the file is gone or not a picture."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            picture = ImageOps.fit(opened.convert("RGB"), (resolution, resolution), Image.Resampling.BILINEAR)
    except UnidentifiedImageError as exc:
        raise OSError(str(exc)) from None
    array = np.asarray(picture, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def save_lora(unet: Any, out: Path, family: str = "sd") -> Path:
    """Write the UNet's LoRA to `out` in diffusers' layout (`pipe.load_lora_weights` reads it), atomically."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from studio.train.runner import save_atomically

    def write(folder: Path) -> None:
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
        pipeline: Any = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
        pipeline.save_lora_weights(str(folder), unet_lora_layers=layers, safe_serialization=True)

    return save_atomically(out, write)
