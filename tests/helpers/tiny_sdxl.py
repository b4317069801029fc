"""A tiny random-weight Stable Diffusion XL pipeline built in code (the shipped models.yaml has SDXL-Turbo).

Owns: `build_tiny_sdxl_pipeline(folder)`: SDXL's layout at diffusers' test sizes (its `get_dummy_components`
for StableDiffusionXLPipeline): a UNet with the added text-and-time embedding, two CLIP text encoders (the
second with a projection), two tokenizers, an Euler scheduler, `save_pretrained` to `folder`, so that
`AutoPipelineForText2Image.from_pretrained(folder)` picks StableDiffusionXLPipeline as for the real model.
Ignores: what the pictures look like (random weights draw noise).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tests.helpers.tiny_chat import _write_tiny_clip_tokenizer


def build_tiny_sdxl_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Save the pipeline into `folder` (created) and return it; 64x64 in 2 steps is well under a second."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = _write_tiny_clip_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    torch.manual_seed(seed)
    time_dim, projection = 8, 32
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",  # SDXL's micro-conditioning: sizes and crop, plus the pooled text
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_dim + projection,
        cross_attention_dim=64,  # both encoders' hidden states side by side: 32 + 32
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=vocab_size,
        hidden_act="gelu",
        projection_dim=projection,
        max_position_embeddings=77,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    pipe: Any = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder
