"""Diffusion-DPO's settings: one validated set per run, and the defaults of diffusers' training scripts.

Owns: `DiffusionHyperparams` (learning rate, beta_dpo, LoRA rank/alpha, resolution, epochs or max steps,
batch, gradient accumulation, seed, held-out fraction), `diffusion_hyperparams(values)` (defaults overlaid
with the caller's values; a wrong value is a StudioError naming the valid range) and `default_beta`:
2500 for Stable Diffusion 1.x/2.x and 5000 for SDXL, as diffusers' `train_diffusion_dpo.py` and
`train_diffusion_dpo_sdxl.py` use.
Ignores: records, models and the loop (diffusion_dpo.py). Imports no torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from studio.errors import StudioError

METHOD = "diffusion-dpo"
BETA_DPO = {"sd": 2500.0, "sdxl": 5000.0}  # by pipeline family
DEFAULT_LR = 5e-4  # train_diffusion_dpo.py's default learning rate for its LoRA


class DiffusionHyperparams(BaseModel):
    """What a Diffusion-DPO run trains with; None means "from the model" (beta_dpo, resolution, alpha)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    learning_rate: float = Field(default=DEFAULT_LR, ge=1e-7, le=1e-2)
    beta_dpo: float | None = Field(default=None, ge=1.0, le=100_000.0)  # None: 2500 SD, 5000 SDXL
    lora_r: int = Field(default=4, ge=1, le=256)  # the scripts' default rank
    lora_alpha: int | None = Field(default=None, ge=1, le=1024)  # None: = rank, as the scripts do
    resolution: int | None = Field(default=None, ge=64, le=2048)  # None: the model's native size
    epochs: int = Field(default=1, ge=1, le=100)
    max_steps: int | None = Field(default=None, ge=1, le=100_000)  # wins over epochs when set
    batch_size: int = Field(default=1, ge=1, le=64)  # pairs per micro-batch
    grad_accum: int = Field(default=1, ge=1, le=64)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    eval_fraction: float = Field(default=0.15, ge=0.0, le=0.5)

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError("must be a multiple of 8 (the VAE shrinks pictures 8 times), like 512")
        return value

    def beta_for(self, family: str) -> float:
        return self.beta_dpo if self.beta_dpo is not None else BETA_DPO.get(family, BETA_DPO["sd"])


def diffusion_hyperparams(values: dict[str, Any] | None = None) -> DiffusionHyperparams:
    """The defaults overlaid with `values` (None or "" means "the default"), validated."""
    from studio.train.params import describe_error

    if values is not None and not isinstance(values, dict):
        raise StudioError("hyperparameters must be a mapping of names to values")
    given = {k: v for k, v in (values or {}).items() if v is not None and v != ""}
    try:
        return DiffusionHyperparams.model_validate(given)
    except ValidationError as exc:
        raise StudioError(f"invalid training settings: {describe_error(exc, DiffusionHyperparams)}") from None
