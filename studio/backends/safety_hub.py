"""Safety checkers built on Hub models, for users who have the Hub: `text-classifier`, `guard-llm` and
`sd-safety-checker`.

Owns: backend `text-classifier` (any transformers sequence-classification model, such as Prompt-Guard or a
toxicity model; `options.labels` maps its labels to studio categories), backend `guard-llm` (a Llama Guard
or ShieldGemma style chat model: its answer "unsafe" plus codes such as "S1,S10" names the violated
categories; `options.categories` maps the codes) and backend `sd-safety-checker` (diffusers'
StableDiffusionSafetyChecker with its CLIP image processor; a picture is "sexual" when it finds a concept).
Ignores: thresholds and policies (the service's) and downloads (`studio models pull`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from studio.backends import BackendError, register
from studio.backends.loading import device_and_dtype, unreadable_weights, weights_path
from studio.backends.safety_base import LabelMap, SafetyChecker, Score
from studio.config import SAFETY_CATEGORIES


def _known(categories: dict[str, str]) -> dict[str, str]:
    LabelMap(labels=categories)  # the same check and message as a classifier's labels
    return categories


@register
class TextClassifierChecker(SafetyChecker):
    """Scores are the softmax over the model's labels (sigmoid for a multi-label model)."""

    kind = "text-classifier"
    media = "text"
    Options = LabelMap
    model: Any = None
    tokenizer: Any = None

    def load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        options = LabelMap.model_validate(self.spec.options)
        where = weights_path(self.spec, self.context)
        device, dtype = device_and_dtype(self.spec)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where)
            model: Any = AutoModelForSequenceClassification.from_pretrained(where, dtype=dtype)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "transformers classifier folder") from None
        names = set(model.config.id2label.values())
        missing = sorted(set(options.labels) - names)
        if missing:
            raise BackendError(
                f"model {self.spec.id!r}: options.labels names {', '.join(missing)}, which the model does "
                f"not have (its labels: {', '.join(sorted(names))})"
            )
        self.model = model.to(device).eval()
        self.device = device
        self.labels = options.labels

    def unload(self) -> None:
        self.model = self.tokenizer = None

    def check_texts(self, texts: list[str]) -> list[list[Score]]:
        import torch

        if self.model is None:
            raise BackendError(f"checker {self.spec.id!r} is not loaded")
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
        with torch.no_grad():
            logits = self.model(**batch.to(self.device)).logits.float()
        multi = self.model.config.problem_type == "multi_label_classification"
        probabilities = logits.sigmoid() if multi else logits.softmax(dim=-1)
        id2label = self.model.config.id2label
        out = []
        for row in probabilities.tolist():
            best: dict[str, Score] = {}
            for index, p in enumerate(row):
                label = id2label[index]
                category = self.labels.get(label)
                if category and (category not in best or p > best[category].score):
                    best[category] = Score(category, float(p), label)
            out.append(list(best.values()))
        return out

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) if self.model else 0


class GuardOptions(BaseModel):
    """`options:` of a guard model: what its codes mean, the word that starts an unsafe verdict, and the
    category of an unsafe verdict that names no known code."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, str] = Field(default_factory=dict)  # "S1" -> "violence", ...
    unsafe_word: str = Field(default="unsafe", min_length=1)  # ShieldGemma answers "Yes"
    default_category: str = "harassment"
    max_new_tokens: int = Field(default=20, ge=1, le=200)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, str]) -> dict[str, str]:
        return _known(value) if value else value

    @field_validator("default_category")
    @classmethod
    def _default(cls, value: str) -> str:
        if value not in SAFETY_CATEGORIES:
            raise ValueError(f"unknown category {value!r}; known: {', '.join(SAFETY_CATEGORIES)}")
        return value


def parse_guard_answer(answer: str, options: GuardOptions) -> list[Score]:
    """'unsafe\\nS1,S10' -> violence and the category of S10 at 1.0; 'safe' -> nothing."""
    words = answer.strip().split()
    if not words or words[0].strip(".,:").lower() != options.unsafe_word.lower():
        return []
    codes = re.findall(r"[A-Za-z]+\d+", answer)
    found = {options.categories[c] for c in codes if c in options.categories}
    return [
        Score(category, 1.0, answer.strip()[:80]) for category in sorted(found or {options.default_category})
    ]


@register
class GuardLLMChecker(SafetyChecker):
    """The text is sent as one user message through the model's chat template (Llama Guard's template
    lists its categories itself); the greedy answer is parsed by `parse_guard_answer`."""

    kind = "guard-llm"
    media = "text"
    Options = GuardOptions
    model: Any = None
    tokenizer: Any = None

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.options = GuardOptions.model_validate(self.spec.options)
        where = weights_path(self.spec, self.context)
        device, dtype = device_and_dtype(self.spec, half_on_cpu=True)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where)
            model: Any = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "transformers chat model folder") from None
        if self.tokenizer.chat_template is None:
            raise BackendError(f"model {self.spec.id!r} has no chat template; a guard model needs one")
        self.model, self.device = model.to(device).eval(), device

    def unload(self) -> None:
        self.model = self.tokenizer = None

    def answer(self, text: str) -> str:
        import torch

        if self.model is None:
            raise BackendError(f"checker {self.spec.id!r} is not loaded")
        messages = [{"role": "user", "content": text}]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=self.options.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return str(self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))

    def check_texts(self, texts: list[str]) -> list[list[Score]]:
        return [parse_guard_answer(self.answer(text), self.options) for text in texts]

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) if self.model else 0


class SdCheckerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Inside a whole Stable Diffusion repo the checker and its processor sit in these subfolders.
    subfolder: str | None = "safety_checker"
    processor_subfolder: str | None = "feature_extractor"


@register
class SdSafetyChecker(SafetyChecker):
    """diffusers' checker answers yes or no per picture: the score is 1.0 or 0.0 ("sexual")."""

    kind = "sd-safety-checker"
    media = "image"
    Options = SdCheckerOptions
    model: Any = None
    processor: Any = None

    def load(self) -> None:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        options = SdCheckerOptions.model_validate(self.spec.options)
        where = weights_path(self.spec, self.context)
        device, dtype = device_and_dtype(self.spec)

        def sub(name: str | None) -> dict[str, Any]:
            return {"subfolder": name} if name else {}

        try:
            self.processor = CLIPImageProcessor.from_pretrained(where, **sub(options.processor_subfolder))
            model: Any = StableDiffusionSafetyChecker.from_pretrained(
                where, dtype=dtype, **sub(options.subfolder)
            )
        except OSError as exc:
            raise unreadable_weights(
                self.spec, where, exc, "Stable Diffusion safety checker folder"
            ) from None
        self.model, self.device = model.to(device).eval(), device

    def unload(self) -> None:
        self.model = self.processor = None

    def check_image(self, image: Any) -> list[Score]:
        import numpy as np
        import torch

        if self.model is None:
            raise BackendError(f"checker {self.spec.id!r} is not loaded")
        picture = image.convert("RGB")
        clip_input = self.processor(picture, return_tensors="pt").pixel_values.to(
            self.device, self.model.dtype
        )
        pixels = np.asarray(picture, dtype=np.float32)[None] / 255.0
        with torch.no_grad():
            _, has_nsfw = self.model(clip_input=clip_input, images=pixels)
        return [Score("sexual", 1.0 if has_nsfw[0] else 0.0, "nsfw concept")]

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) if self.model else 0
