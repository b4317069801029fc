"""Backends: one class per pipeline kind, a registry keyed by `kind`, and the start-up check of models.yaml.

Owns: the `Backend` contract (cheap `__init__`, heavy `load()`, `unload()`, one generator `generate()`),
the `Request` and event types a backend yields, `register`/`backend_class`, and `check_models`.
Ignores: storage, the UI and other backends. Heavy libraries (torch, transformers) are imported
inside `load()` so that `import studio` stays fast.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from studio.backends.params import Params, explain_validation_error
from studio.config import ConfigError, ModelSpec, StudioConfig


class BackendError(RuntimeError):
    """A failure worth showing to the user as it is (model missing, prompt too long, ...)."""


class ModelNotAvailable(BackendError):
    """The model's weights are not on this machine; the message says how to get them."""


@dataclass
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class Request:
    """Everything a backend needs for one generation; `stop` is polled between steps."""

    prompt: str
    params: Params
    history: list[Message] = field(default_factory=list)
    # Text of an assistant message to extend ("continue"); the backend returns only the new text.
    continue_from: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # Cut an over-long prompt to fit the context (with a Notice) instead of refusing it.
    truncate_prompt: bool = False
    # Image-to-image: the starting picture (a PIL image, already validated and converted to RGB).
    init_image: Any = None
    # Music with a melody model: (float32 mono samples, sample rate) of the uploaded clip, already validated.
    melody: Any = None


@dataclass
class TextDelta:
    text: str


@dataclass
class Notice:
    """Something the user should see next to the answer (e.g. turns dropped to fit the context)."""

    text: str


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Progress:
    """One step of a multi-step generation (a denoising step), for progress bars."""

    step: int
    total: int


@dataclass
class ImageOutput:
    """One finished picture (a PIL image) and the seed that reproduces it on its own."""

    image: Any
    seed: int
    index: int


@dataclass
class AudioOutput:
    """A finished clip: float32 samples (mono: shape (n,); several channels: (channels, n)) and their rate."""

    audio: Any
    sample_rate: int
    seed: int | None = None


Event = TextDelta | Notice | Usage | Progress | ImageOutput | AudioOutput


@dataclass(frozen=True)
class BackendContext:
    """Paths a backend may use: the model cache and the folder models.yaml lives in."""

    model_cache: Path
    base_dir: Path


class NoOptions(BaseModel):
    """A backend without load options: any `options:` in models.yaml is a mistake."""

    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    kind: ClassVar[str]
    tabs: ClassVar[frozenset[str]]
    Params: ClassVar[type[Params]]
    Options: ClassVar[type[BaseModel]] = NoOptions  # how models.yaml's `options:` are checked
    remote: ClassVar[bool] = False  # runs on another machine: no local memory, no GPU queue needed

    def __init__(self, spec: ModelSpec, context: BackendContext) -> None:
        self.spec = spec
        self.context = context

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> list[str]:
        """Start-up problems with a models.yaml entry beyond its defaults and options ("field 'x': ...")."""
        return [
            f"field {name!r}: only remote backends (openai-chat) use it"
            for name in ("base_url", "api_key_env")
            if getattr(spec, name) and not cls.remote
        ]

    @abstractmethod
    def load(self) -> None:
        """Load weights; raise ModelNotAvailable with the fix when they are not here."""

    def unload(self) -> None:  # noqa: B027 - optional hook; most backends only drop references
        """Drop references to weights so memory can be returned."""

    @abstractmethod
    def generate(self, request: Request) -> Generator[Event, None, None]:
        """Yield events for one request; stop soon after `request.stop` is set."""

    def memory_bytes(self) -> int:
        return 0

    @classmethod
    def available(cls) -> bool:
        """Whether this kind's library is installed (an optional extra such as llama.cpp may not be)."""
        return True

    def share_base(self, base: Backend) -> None:
        """Serve this model, a trained variant (a `VariantSpec`: its base plus the LoRA adapter folder in
        `spec.source`), on `base`, the loaded backend of its base model, instead of loading weights of its
        own. The manager calls it before `load()`; a kind that cannot serve adapters refuses."""
        raise BackendError(f"backend {self.kind!r} cannot serve trained (LoRA) variants")


def short_error(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters: a library's error as a user reads it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def release_accelerator_memory() -> None:
    """Give cached GPU memory back after an unload (a no-op on the CPU, and cheap when torch is loaded)."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just to free memory it never used
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend kind known. Duplicates are a programming error."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"backend kind {cls.kind!r} is already registered by {_REGISTRY[cls.kind].__name__}")
    _REGISTRY[cls.kind] = cls
    return cls


def unregister(kind: str) -> None:
    """For tests that register throw-away kinds."""
    _REGISTRY.pop(kind, None)


def known_kinds() -> list[str]:
    return sorted(_REGISTRY)


def preferred_kinds(backend: str) -> list[str]:
    """models.yaml's `backend:` as a list: one kind, or several in order of preference
    ("llama-cpp, transformers-chat": llama.cpp when its extra is installed, else transformers)."""
    return [kind.strip() for kind in backend.split(",") if kind.strip()] or [backend]


def backend_class(kind: str) -> type[Backend]:
    """The class of a kind, or of the first installed one of a preference list (else the list's last)."""
    classes: list[type[Backend]] = []
    for name in preferred_kinds(kind):
        try:
            classes.append(_REGISTRY[name])
        except KeyError:
            raise KeyError(f"unknown backend {name!r}; known backends: {', '.join(known_kinds())}") from None
    return next((cls for cls in classes if cls.available()), classes[-1])


def engine(backend: str) -> str:
    """The kind that runs a model whose `backend:` is `backend` on this installation."""
    return backend_class(backend).kind


def validate_params(cls: type[Backend], values: dict[str, Any]) -> Params:
    """Validate user parameters for a backend; raise ValueError with the valid ranges."""
    try:
        return cls.Params.model_validate(values)
    except ValidationError as exc:
        raise ValueError(explain_validation_error(cls.Params, exc)) from None


def check_models(config: StudioConfig) -> None:
    """Start-up check: every backend exists, serves its tabs, and accepts the model's defaults."""
    problems: list[str] = []
    for spec in config.models:
        try:
            chosen = backend_class(spec.backend)
        except KeyError as exc:
            problems.append(f"{config.where(spec, 'backend')}: field 'backend': {exc.args[0]}")
            continue
        # Every kind of a preference list must accept the entry: the one chosen depends on the installation.
        for cls in [backend_class(kind) for kind in preferred_kinds(spec.backend)]:
            problems += _spec_problems(config, spec, cls, options=cls is chosen)
    if problems:
        raise ConfigError("invalid models file:\n  " + "\n  ".join(problems))


def _spec_problems(config: StudioConfig, spec: ModelSpec, cls: type[Backend], *, options: bool) -> list[str]:
    """Problems of one models.yaml entry for one backend kind (its options only when `options`)."""
    problems: list[str] = []
    extra_tabs = sorted(set(spec.tabs) - cls.tabs)
    if extra_tabs:
        problems.append(
            f"{config.where(spec, 'tabs')}: field 'tabs': backend {spec.backend!r} cannot serve "
            f"{', '.join(extra_tabs)} (it serves {', '.join(sorted(cls.tabs))})"
        )
    problems += [f"{config.where(spec)}: {problem}" for problem in cls.check_spec(spec)]
    try:
        validate_params(cls, spec.defaults)
    except ValueError as exc:
        problems.append(f"{config.where(spec, 'defaults')}: field 'defaults': {exc}")
    try:
        if options:
            cls.Options.model_validate(spec.options)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        problems.append(f"{config.where(spec, 'options')}: field 'options': {detail}")
    return problems


# Registering the built-in kinds is importing their modules; each imports torch only in load().
from studio.backends import (  # noqa: E402
    clip_scorer,
    diffusers_image,
    hibari_tts,
    llama_cpp,
    musicgen,
    openai_chat,
    safety_bundled,
    safety_hub,
    transformers_chat,
    transformers_reward,
    transformers_tts,
)

__all__ = [
    "AudioOutput",
    "Backend",
    "BackendContext",
    "BackendError",
    "Event",
    "ImageOutput",
    "Message",
    "ModelNotAvailable",
    "Notice",
    "Params",
    "Progress",
    "Request",
    "TextDelta",
    "Usage",
    "backend_class",
    "check_models",
    "clip_scorer",
    "diffusers_image",
    "engine",
    "hibari_tts",
    "known_kinds",
    "llama_cpp",
    "musicgen",
    "openai_chat",
    "preferred_kinds",
    "register",
    "release_accelerator_memory",
    "safety_bundled",
    "safety_hub",
    "short_error",
    "transformers_chat",
    "transformers_reward",
    "transformers_tts",
    "validate_params",
]
