"""Diffusion-DPO (Wallace et al. 2023): a LoRA on a Stable Diffusion UNet from pairs of pictures of a prompt.

Owns: loading the parts training needs (tokenizers, text encoders (SDXL: both, with its size
conditioning), VAE, UNet, the noise scheduler's config; float32 on the CPU, bf16 under autocast on a GPU
that has it), the pictures of each pair (diffusion_files.py reads them; a file gone or unreadable: the
pair is skipped and counted) encoded once by the VAE, a
peft LoRA added to the UNet with diffusers' `add_adapter` (the reference is the same UNet with the adapter
disabled: no second copy), the training loop with the Diffusion-DPO loss of diffusers'
`train_diffusion_dpo.py` (the preferred picture's denoising error must fall against the reference's more
than the other's), a `Step` per optimizer step (loss, implicit-reward accuracy and margin, grad norm),
stopping between micro-batches when the stop flag is set and on a loss or gradient that is not finite,
held-out metrics at the end, and the LoRA saved atomically in diffusers' format
(`pytorch_lora_weights.safetensors`, what `pipe.load_lora_weights` reads) into `<out>.partial`, renamed
when complete.
Ignores: where the pairs come from and where results are stored (the service), the device line.
torch, diffusers, transformers, peft and PIL are imported inside the functions that use them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.errors import StudioError
from studio.train.diffusion_files import family_of, load_picture, save_lora
from studio.train.diffusion_params import DiffusionHyperparams
from studio.train.runner import Outcome, Phase, Step, TrainEvent

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # the attention projections, as the scripts target


class _Parts:
    """The pipeline's parts a run needs, frozen, with a LoRA on the UNet."""

    def __init__(self, base: str | Path, params: DiffusionHyperparams, device: str, family: str) -> None:
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

        self.device, self.family = device, family
        self.autocast = device == "cuda" and torch.cuda.is_bf16_supported()
        frozen = torch.bfloat16 if self.autocast else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(base, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=frozen)
        self.vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=frozen)
        self.unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=frozen)
        self.scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
        parts: list[Any] = [self.text_encoder, self.vae, self.unet]
        if family == "sdxl":  # a second text encoder, whose pooled output joins SDXL's size conditioning
            self.tokenizer_2 = AutoTokenizer.from_pretrained(base, subfolder="tokenizer_2")
            self.text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
                base, subfolder="text_encoder_2", dtype=frozen
            )
            parts.append(self.text_encoder_2)
        for part in parts:
            part.requires_grad_(False)
            part.to(device)
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.native = int(self.unet.config.sample_size) * self.vae_factor
        self.unet.add_adapter(
            LoraConfig(
                r=params.lora_r,
                lora_alpha=params.lora_alpha or params.lora_r,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGETS,
            )
        )
        self.trainable = [p for p in self.unet.parameters() if p.requires_grad]
        for p in self.trainable:  # the LoRA learns in float32 even when the frozen weights are bf16
            p.data = p.data.float()

    def context(self) -> Any:
        import contextlib

        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def embed(self, captions: list[str]) -> tuple[Any, Any]:
        """The prompts' hidden states the UNet attends to, and (SDXL) the pooled text embedding."""
        import torch

        def ids(tokenizer: Any) -> Any:
            return tokenizer(
                captions,
                truncation=True,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                return_tensors="pt",
            ).input_ids.to(self.device)

        with torch.no_grad():
            if self.family != "sdxl":
                return self.text_encoder(ids(self.tokenizer))[0], None
            # As StableDiffusionXLPipeline.encode_prompt: both encoders' penultimate layers side by side.
            first = self.text_encoder(ids(self.tokenizer), output_hidden_states=True)
            second = self.text_encoder_2(ids(self.tokenizer_2), output_hidden_states=True)
            hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            return hidden, second.text_embeds

    def encode(self, pictures: Any) -> tuple[Any, Any]:
        """The VAE's latent distribution (mean, std) of a batch of pictures, scaled as the UNet sees it."""
        import torch

        with torch.no_grad(), self.context():
            dist = self.vae.encode(pictures.to(self.device, self.vae.dtype)).latent_dist
        scale = float(self.vae.config.scaling_factor)
        return dist.mean.float() * scale, dist.std.float() * scale


def _encode_all(parts: _Parts, pictures: list[Any]) -> tuple[Any, Any]:
    import torch

    pieces = [parts.encode(torch.stack(pictures[i : i + 8])) for i in range(0, len(pictures), 8)]
    return torch.cat([m for m, _ in pieces]), torch.cat([s for _, s in pieces])


def _prepare(
    parts: _Parts, records: list[dict[str, Any]], resolution: int, skipped: dict[str, int]
) -> dict[str, Any] | None:
    """Latents (chosen, rejected) and prompt embeddings of the pairs whose pictures can be read."""
    import torch

    kept, chosen, rejected = [], [], []
    for record in records:
        try:
            pair = [load_picture(record["chosen"], resolution), load_picture(record["rejected"], resolution)]
        except OSError:
            why = (
                "picture file missing"
                if not all(os.path.isfile(record[k]) for k in ("chosen", "rejected"))
                else "picture unreadable"
            )
            skipped[why] = skipped.get(why, 0) + 1
            continue
        kept.append(record)
        chosen.append(pair[0])
        rejected.append(pair[1])
    if not kept:
        return None
    mean_w, std_w = _encode_all(parts, chosen)
    mean_l, std_l = _encode_all(parts, rejected)
    embeds, pooled = parts.embed([str(r["prompt"]) for r in kept])
    data = {"mean": (mean_w, mean_l), "std": (std_w, std_l), "embeds": embeds, "count": len(kept)}
    if pooled is not None:  # SDXL: (original size, crop top-left, target size) of square training pictures
        data["pooled"] = pooled
        data["time_ids"] = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]]).float()
    return data


def dpo_loss(
    parts: _Parts, data: dict[str, Any], index: Any, beta: float, generator: Any
) -> tuple[Any, dict[str, float]]:
    """diffusers' Diffusion-DPO loss on the pairs at `index`: one noise and timestep per pair, shared by its
    two pictures; the reference is the UNet with its adapter disabled."""
    import torch
    import torch.nn.functional as F

    device = parts.device
    (mean_w, mean_l), (std_w, std_l) = data["mean"], data["std"]
    draw = torch.randn(mean_w[index].shape, generator=generator).to(device)
    latents = torch.cat(
        [
            mean_w[index] + std_w[index] * draw,
            mean_l[index] + std_l[index] * torch.randn(draw.shape, generator=generator).to(device),
        ]
    )
    noise = torch.randn(draw.shape, generator=generator).to(device).repeat(2, 1, 1, 1)
    steps = int(parts.scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, steps, (len(index),), generator=generator).to(device).repeat(2)
    noisy = parts.scheduler.add_noise(latents, noise, timesteps)
    embeds = data["embeds"][index].repeat(2, 1, 1)
    extra: dict[str, Any] = {}
    if "pooled" in data:
        extra["added_cond_kwargs"] = {
            "text_embeds": data["pooled"][index].repeat(2, 1),
            "time_ids": data["time_ids"].to(device).repeat(2 * len(index), 1),
        }
    kind = parts.scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = parts.scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise StudioError(f"diffusion-dpo cannot train a model that predicts {kind!r}")

    def errors() -> Any:
        with parts.context():
            predicted = parts.unet(noisy, timesteps, embeds, **extra).sample
        per_pixel = F.mse_loss(predicted.float(), target.float(), reduction="none")
        return per_pixel.mean(dim=list(range(1, per_pixel.ndim))).chunk(2)

    model_w, model_l = errors()
    parts.unet.disable_adapters()
    try:
        with torch.no_grad():
            ref_w, ref_l = errors()
    finally:
        parts.unet.enable_adapters()
    logits = (ref_w - ref_l) - (model_w - model_l)  # > 0: the LoRA favours the chosen picture
    loss = -F.logsigmoid(beta * logits).mean()
    accuracy = ((logits > 0).float() + 0.5 * (logits == 0).float()).mean()
    return loss, {
        "loss": float(loss.detach()),
        "rewards/accuracies": float(accuracy),
        "rewards/margins": float((beta * logits).mean().detach()),
        "model_loss": float(0.5 * (model_w.mean() + model_l.mean()).detach()),
        "ref_loss": float(0.5 * (ref_w.mean() + ref_l.mean())),
    }


def _evaluate(parts: _Parts, data: dict[str, Any], beta: float, seed: int) -> dict[str, float]:
    """Held-out loss and implicit-reward accuracy, with fixed noise (the same draw for every run)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, data["count"], 8):
            index = torch.arange(start, min(start + 8, data["count"]))
            _, metrics = dpo_loss(parts, data, index, beta, generator)
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value * len(index)
    return {f"eval_{k}": v / data["count"] for k, v in totals.items()}


def run(
    *,
    base: str | Path,
    train_records: list[dict[str, Any]],
    eval_records: list[dict[str, Any]],
    out: Path,
    params: DiffusionHyperparams,
    stop: threading.Event,
    emit: Callable[[TrainEvent], None] = lambda event: None,
    device: str = "cpu",
) -> Outcome:
    """Train a Diffusion-DPO LoRA of `base` (a pipeline folder or Hub id) on {prompt, chosen, rejected}
    records (picture paths); save it to `out` unless stopped. Outcome.metrics["skipped_pairs"] counts the
    pairs whose pictures could not be read. Exceptions (a failed load, a full disk) propagate."""
    import torch

    emit(Phase("loading"))
    family = family_of(base)
    beta = params.beta_for(family)
    torch.manual_seed(params.seed)
    parts = _Parts(base, params, device, family)
    resolution = params.resolution or parts.native
    if stop.is_set():
        return Outcome("stopped")
    emit(Phase("preparing"))
    skipped: dict[str, int] = {}
    train = _prepare(parts, train_records, resolution, skipped)
    held = _prepare(parts, eval_records, resolution, skipped) if eval_records else None
    if train is None:
        raise StudioError("no pair left to train on: every pair's pictures were deleted or unreadable")
    summary = {"skipped_pairs": float(sum(skipped.values())), "resolution": float(resolution)}
    summary["beta_dpo"] = beta
    per_epoch = math.ceil(math.ceil(train["count"] / params.batch_size) / params.grad_accum)
    total = params.max_steps or params.epochs * per_epoch
    optimizer = torch.optim.AdamW(parts.trainable, lr=params.learning_rate, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(params.seed)
    order: list[int] = []
    history: list[dict[str, float]] = []
    last: dict[str, float] = {}
    bad: str | None = None
    emit(Phase("training"))
    parts.unet.train()
    started = time.perf_counter()
    emit(Step(0, total, 0.0, {}, 0.0, None))
    step = 0
    while step < total and not stop.is_set() and bad is None:
        sums: dict[str, float] = {}
        for _ in range(params.grad_accum):
            if len(order) < params.batch_size:  # a new epoch: the pairs in a fresh order
                order += torch.randperm(train["count"], generator=generator).tolist()
            index, order = torch.tensor(order[: params.batch_size]), order[params.batch_size :]
            loss, metrics = dpo_loss(parts, train, index, beta, generator)
            (loss / params.grad_accum).backward()
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value / params.grad_accum
            if stop.is_set():  # between micro-batches: the step is not applied
                break
        if stop.is_set():
            break
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parts.trainable, 1.0))
        values = {**sums, "grad_norm": grad_norm, "learning_rate": params.learning_rate}
        broken = [k for k in ("loss", "grad_norm") if not math.isfinite(values[k])]
        if broken:
            bad = (
                f"the {broken[0].replace('_', ' ')} became {values[broken[0]]} at step {step + 1}: training "
                f"stopped; lower the learning rate (it was {params.learning_rate:g})"
            )
            break
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.perf_counter() - started
        epoch = step * params.grad_accum * params.batch_size / train["count"]
        last = values
        history.append({"step": float(step), **values})
        emit(Step(step, total, epoch, values, elapsed, elapsed / step * (total - step)))
    done = Outcome("ok", steps=step, total=total, metrics={**last, **summary}, history=history)
    if bad or stop.is_set():
        done.status, done.error = "stopped", bad
        return done
    parts.unet.eval()
    if held is not None:
        emit(Phase("evaluating"))
        done.eval_metrics = _evaluate(parts, held, beta, params.seed)
    emit(Phase("saving"))
    done.adapter = save_lora(parts.unet, out, family)
    return done
