"""Parameter schemas that backends accept, and error messages that state the valid range.

Owns: `Params` (strict, finite numbers only), `ChatParams` (the sampling controls of the chat and
code tabs), `ImageParams`, and the Audio tab's `SpeechParams` and `MusicParams`.
The same names are used by the UI, the API and `studio generate --param key=value`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from studio.errors import quote


class Params(BaseModel):
    """Base for every backend's parameters: unknown names, NaN/Inf and true/false for anything but a
    switch are refused (pydantic's lax mode would read `temperature=True` as 1.0)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _switches_only_take_bools(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and cls.model_fields[info.field_name or ""].annotation is not bool:
            raise ValueError("true/false is not a value for this parameter")
        return value


class ChatParams(Params):
    system_prompt: str = Field(default="", max_length=8000)
    do_sample: bool = True
    temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=50, ge=0, le=1000)
    repetition_penalty: float = Field(default=1.0, ge=0.5, le=2.0)
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    num_beams: int = Field(default=1, ge=1, le=8)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    # Sampling filters beside top-p/top-k: min-p keeps tokens at least this fraction as likely as the best
    # one (0 = off); typical-p keeps the locally typical set (1 = off).
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    typical_p: float = Field(default=1.0, gt=0.0, le=1.0)
    # Prompt-lookup decoding: draft this many tokens by copying from the prompt (0 = off). It pays only
    # where the answer copies the input (Code's fix and translate modes; benchmarks/README.md).
    prompt_lookup_num_tokens: int = Field(default=0, ge=0, le=32)


# Scheduler names the image tab offers; "default" is the one the model was saved with.
Scheduler = Literal["default", "euler", "euler_a", "dpmpp_2m", "ddim", "unipc", "lcm"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)


class ImageParams(Params):
    negative_prompt: str = Field(default="", max_length=4000)
    steps: int = Field(default=25, ge=1, le=150)
    guidance: float = Field(default=7.0, ge=0.0, le=30.0)
    width: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    num_images: int = Field(default=1, ge=1, le=8)
    scheduler: Scheduler = "default"
    strength: float = Field(default=0.75, gt=0.0, le=1.0)  # image-to-image only: how far from the init image
    lora: str | None = None  # id of one of the model's `loras:` in models.yaml
    lora_scale: float = Field(default=1.0, ge=0.0, le=2.0)


class SpeechParams(Params):
    speed: float = Field(default=1.0, ge=0.25, le=4.0)  # speaking rate; each backend states its own range
    voice: str | None = Field(default=None, max_length=200)  # a voice preset (Bark), when the model has them
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


MAX_MUSIC_SECONDS = 300.0  # longer than one model window (30 s): the music backend continues window by window


class MusicParams(Params):
    duration: float = Field(default=8.0, gt=0.0, le=MAX_MUSIC_SECONDS)  # seconds
    guidance: float = Field(default=3.0, ge=0.0, le=20.0)  # classifier-free guidance; <= 1 turns it off
    temperature: float = Field(default=1.0, gt=0.0, le=2.0)
    top_k: int = Field(default=250, ge=0, le=2048)  # 0 = no top-k filter
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


def valid_range(cls: type[Params], name: str) -> str | None:
    """'between 0 and 2' style text from a field's constraints, or None when it has none."""
    info = cls.model_fields.get(name)
    if info is None:
        return None
    low: Any = None
    high: Any = None
    low_open = high_open = False
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low, low_open = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high, high_open = meta.lt, True
        elif isinstance(meta, annotated_types.MaxLen):
            return f"at most {meta.max_length} characters"
    if low is None and high is None:
        return None
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"in {left}{low}, {high}{right}"


def explain_validation_error(cls: type[Params], exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(parameters)"
        value: Any = err.get("input")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {quote(name)}; known: {', '.join(cls.model_fields)}")
            continue
        rng = valid_range(cls, name)
        if err["type"] == "finite_number":
            detail = "must be a finite number"
        elif err["type"] == "value_error":  # a validator's own sentence, already worded for the user
            detail = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            detail = err["msg"][0].lower() + err["msg"][1:]
        parts.append(f"{name}={quote(value)}: {detail}" + (f" (valid: {rng})" if rng else ""))
    return "; ".join(parts)
