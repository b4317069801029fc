"""Training hyperparameters: one validated set per run, with defaults that work on each device.

Owns: `Hyperparams` (learning rate, beta, LoRA rank/alpha/dropout/targets, epochs or max steps, batch,
gradient accumulation, max length, seed, held-out fraction), `hyperparams(method, values)` (the method's
defaults overlaid with the caller's values; a wrong value is a StudioError that names the valid range) and
`trainer_kwargs` (the TRL config arguments for a device: float32, no gradient checkpointing and no bf16 on
the CPU; bf16 on a CUDA GPU that supports it).
Ignores: records (data.py) and running the trainer (runner.py). Imports no torch: the caller says whether
the GPU supports bf16.
"""

from __future__ import annotations

import re
from typing import Any

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from studio.errors import StudioError

METHODS: tuple[str, ...] = (
    "sft",
    "dpo",
    "kto",
    "reward",
    "diffusion-dpo",
)  # diffusion-dpo: diffusion_params.py

# Learning rates that move a LoRA adapter of a small model in one epoch (PLATFORM_NOTES: DPO at 5e-4 on
# SmolLM2-135M reached a reward accuracy of 1.0 on 16 pairs).
# A reward model's fresh score head needs a bolder rate than an adapter nudging a language model.
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-4, "kto": 5e-4, "reward": 1e-3}
_MODULE = re.compile(r"^[A-Za-z0-9_.]+$")


class Hyperparams(BaseModel):
    """What a run trains with; every number has a range (see `describe_error`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    learning_rate: float = Field(default=2e-4, ge=1e-7, le=1e-2)
    beta: float = Field(default=0.1, ge=0.001, le=10.0)  # DPO and KTO: how far from the base it may move
    lora_r: int = Field(default=8, ge=1, le=256)
    lora_alpha: int = Field(default=16, ge=1, le=1024)
    lora_dropout: float = Field(default=0.05, ge=0.0, le=0.5)
    target_modules: str = Field(default="all-linear", max_length=500)  # "all-linear" or "q_proj,v_proj"
    epochs: int = Field(default=1, ge=1, le=100)
    max_steps: int | None = Field(default=None, ge=1, le=100_000)  # wins over epochs when set
    batch_size: int = Field(default=2, ge=1, le=64)
    grad_accum: int = Field(default=1, ge=1, le=64)
    max_length: int = Field(default=512, ge=16, le=32_768)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    eval_fraction: float = Field(default=0.15, ge=0.0, le=0.5)  # held out by the export's hash split

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names or not all(_MODULE.match(name) for name in names):
            raise ValueError("must be all-linear or module names separated by commas, like q_proj,v_proj")
        return ",".join(names)

    def targets(self) -> str | list[str]:
        return "all-linear" if self.target_modules == "all-linear" else self.target_modules.split(",")


def _range(name: str, model: type[BaseModel] = Hyperparams) -> str | None:
    info = model.model_fields.get(name)
    if info is None:
        return None
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
    return f"from {low} to {high}" if low is not None and high is not None else None


def describe_error(exc: ValidationError, model: type[BaseModel] = Hyperparams) -> str:
    """'learning_rate=5.0 is out of range: it must be from 1e-07 to 0.01' (each problem, joined)."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(hyperparameters)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown hyperparameter {name!r}; known: {', '.join(model.model_fields)}")
            continue
        span = _range(name, model)
        value = err.get("input")
        if span and err["type"] in ("greater_than_equal", "less_than_equal", "finite_number"):
            parts.append(f"{name}={value!r} is out of range: it must be from {span.removeprefix('from ')}")
        else:
            detail = err["msg"].removeprefix("Value error, ")
            parts.append(
                f"{name}={value!r}: {detail[0].lower() + detail[1:]}" + (f" ({span})" if span else "")
            )
    return "; ".join(parts)


def hyperparams(method: str, values: dict[str, Any] | None = None) -> Any:
    """The method's defaults overlaid with `values` (None values mean "the default"), validated: a
    `Hyperparams`, or for diffusion-dpo a `DiffusionHyperparams`."""
    if method not in METHODS:
        raise StudioError(f"unknown training method {method!r}; methods: {', '.join(METHODS)}")
    if method == "diffusion-dpo":
        from studio.train.diffusion_params import diffusion_hyperparams

        return diffusion_hyperparams(values)
    if values is not None and not isinstance(values, dict):
        raise StudioError("hyperparameters must be a mapping of names to values")
    given = {k: v for k, v in (values or {}).items() if v is not None and v != ""}
    merged: dict[str, Any] = {"learning_rate": DEFAULT_LR[method], **given}
    if "lora_alpha" not in given and isinstance(given.get("lora_r"), int):
        merged["lora_alpha"] = 2 * given["lora_r"]  # the usual alpha = 2 r
    try:
        params = Hyperparams.model_validate(merged)
    except ValidationError as exc:
        raise StudioError(f"invalid training settings: {describe_error(exc)}") from None
    if method == "kto" and params.batch_size < 2:
        raise StudioError(
            "invalid training settings: batch_size=1: KTO needs a batch of at least 2 "
            "(its KL term compares answers within a batch)"
        )
    return params


def trainer_kwargs(method: str, params: Hyperparams, *, device: str, bf16: bool = False) -> dict[str, Any]:
    """Arguments for TRL's SFTConfig / DPOConfig / KTOConfig on `device` ("cpu" or "cuda").

    On the CPU: float32 (no bf16, no fp16) and no gradient checkpointing, which only trades speed for
    memory a small model does not need; on CUDA: bf16 when the GPU supports it (`bf16`)."""
    cpu = device == "cpu"
    kwargs: dict[str, Any] = {
        "learning_rate": params.learning_rate,
        "num_train_epochs": params.epochs,
        "max_steps": params.max_steps or -1,
        "per_device_train_batch_size": params.batch_size,
        "per_device_eval_batch_size": params.batch_size,
        "gradient_accumulation_steps": params.grad_accum,
        "max_length": params.max_length,
        "seed": params.seed,
        "use_cpu": cpu,
        "bf16": bool(bf16) and not cpu,
        "fp16": False,
        # TRL defaults to gradient checkpointing and bf16; both are off unless asked for (the new name of
        # gradient_checkpointing in transformers 5: the old one warns).
        "activation_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "eval_strategy": "no",  # held-out metrics are computed once, at the end
        "logging_strategy": "steps",
        "logging_steps": 1,  # every optimizer step: the curve, the ETA and the NaN check
        "logging_nan_inf_filter": False,  # the Trainer would log a NaN loss as the earlier mean
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "lr_scheduler_type": "linear",
    }
    if method in ("dpo", "kto"):
        kwargs["beta"] = params.beta
    return kwargs
