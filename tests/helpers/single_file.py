"""A tiny single-file Stable Diffusion checkpoint, as the original (CompVis/LDM) code and civitai lay it out.

Owns: `write_single_file(pipeline_folder, path)`: the UNet, VAE and CLIP text encoder of a diffusers
pipeline folder (`tiny_chat.build_tiny_sd_pipeline`) renamed to the original checkpoint's key names and
saved as one `.safetensors` file, so a test can load it through diffusers' `from_single_file`.
Ignores: SDXL and SD 2 layouts (their text encoders are named differently) and EMA weights.
The renaming follows the layout of the original code: per resolution level of the UNet, `layers` resnets
(each maybe followed by its attention) and a downsampler in `input_blocks`, `layers + 1` in `output_blocks`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}  # fmt: skip


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET[part]}.{tail}"


def _unet_key(key: str, layers: int) -> str:
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip
    for diffusers_name, original in fixed.items():
        if key.startswith(diffusers_name + "."):
            return original + key[len(diffusers_name) :]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "downsamplers":  # "downsamplers.0.conv.weight" -> "input_blocks.N.0.op.weight"
            return f"input_blocks.{(level + 1) * (layers + 1)}.0.op.{rest.removeprefix('conv.')}"
        block = level * (layers + 1) + index + 1
        return (
            f"input_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"input_blocks.{block}.1.{rest}"
        )
    if parts[0] == "up_blocks":
        level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "upsamplers":  # after the resnet (and the attention, when the level has one)
            return f"output_blocks.{level * (layers + 1) + layers}.{{up}}.{rest}"
        block = level * (layers + 1) + index
        return (
            f"output_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{block}.1.{rest}"
        )
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        return f"middle_block.{2 * index}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    raise ValueError(f"unexpected UNet key {key}")


def _unet(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    layers = config["layers_per_block"]
    out = {}
    for key, value in state.items():
        name = _unet_key(key, layers)
        if "{up}" in name:
            level = int(key.split(".")[1])
            has_attention = any(k.startswith(f"up_blocks.{level}.attentions.") for k in state)
            name = name.replace("{up}", "2" if has_attention else "1")
        out["model.diffusion_model." + name] = value
    return out


def _vae_key(key: str, levels: int) -> str:
    parts = key.split(".")
    where = parts[0]  # encoder | decoder | quant_conv | post_quant_conv
    if where in ("encoder", "decoder") and parts[1] in ("down_blocks", "up_blocks"):
        level, kind, rest = int(parts[2]), parts[3], parts[4:]
        level = level if parts[1] == "down_blocks" else levels - 1 - level  # the original counts up from 0
        top = "down" if parts[1] == "down_blocks" else "up"
        if kind == "resnets":
            return f"{where}.{top}.{level}.block.{rest[0]}.{_vae_resnet('.'.join(rest[1:]))}"
        sampler = "downsample" if top == "down" else "upsample"
        return f"{where}.{top}.{level}.{sampler}.{'.'.join(rest[1:])}"
    if where in ("encoder", "decoder") and parts[1] == "mid_block":
        kind, index, rest = parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"{where}.mid.block_{index + 1}.{_vae_resnet(rest)}"
        attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
        for diffusers_name, original in attention.items():
            if rest.startswith(diffusers_name + "."):
                return f"{where}.mid.attn_1.{original}{rest[len(diffusers_name) :]}"
    if where in ("encoder", "decoder") and parts[1] == "conv_norm_out":
        return f"{where}.norm_out.{'.'.join(parts[2:])}"
    return key


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def _vae(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        name = _vae_key(key, levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)  # the original's attention projections are 1x1 convs
        out["first_stage_model." + name] = value
    return out


def write_single_file(pipeline_folder: Path, path: Path) -> Path:
    """Save the pipeline's UNet, VAE and text encoder as one original-layout `.safetensors` file."""
    from safetensors.torch import load_file, save_file

    folder = Path(pipeline_folder)

    def part(name: str, file: str) -> tuple[dict[str, Any], dict[str, Any]]:
        config = json.loads((folder / name / "config.json").read_text())
        return load_file(folder / name / file), config

    unet, unet_config = part("unet", "diffusion_pytorch_model.safetensors")
    vae, vae_config = part("vae", "diffusion_pytorch_model.safetensors")
    text, _ = part("text_encoder", "model.safetensors")
    state = {**_unet(unet, unet_config), **_vae(vae, vae_config)}
    # Original checkpoints hold the whole CLIPTextModel, "text_model." included (transformers 5 drops it).
    text = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in text.items()}
    state |= {"cond_stage_model.transformer." + key: value for key, value in text.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return Path(path)
