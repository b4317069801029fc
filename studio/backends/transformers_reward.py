"""Backend `transformers-reward`: a scorer, a sequence-classification model that gives an answer one number.

Owns: loading a reward model two ways: a ready-made one (a Hub id or local folder of any
`AutoModelForSequenceClassification` with one label, e.g. Skywork-Reward-V2) and a scorer trained in the
studio (a `VariantSpec` of method `reward`: its base's weights, found through the base's loaded backend
(`share_base`), with the head and LoRA adapter TRL's RewardTrainer saved in `spec.source`); and `score`:
one float per answer to a prompt (with its history), formatted with the chat template as TRL's
RewardTrainer formats its training pairs. Higher is better; only differences between answers to one
prompt mean anything.
Ignores: which answer is shown (the service picks the best) and generation: a scorer does not write.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

from studio.backends import (
    Backend,
    BackendError,
    Event,
    Message,
    Request,
    register,
    release_accelerator_memory,
)
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import Params


@register
class TransformersReward(Backend):
    kind = "transformers-reward"
    tabs = frozenset({"scorer"})
    Params = Params
    judges: ClassVar[str] = "text"  # what it scores: answers (the CLIP backend scores pictures)

    model: Any = None
    tokenizer: Any = None
    device: str = "cpu"
    _base_weights: Path | str | None = None  # a trained scorer: where its base's weights are

    def share_base(self, base: Backend) -> None:
        """A trained scorer reads its base's weights folder; the base's loaded chat model is not reused (a
        score head on a causal LM's shared modules would change the chat model's own)."""
        where = getattr(base, "training_weights", None)
        if where is None:
            raise BackendError(f"the scorer {self.spec.id!r} needs a transformers chat model as its base")
        self._base_weights = where()

    def load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device, dtype = device_and_dtype(self.spec)
        if self._base_weights is not None:  # trained in the studio: base + score head and LoRA adapter
            from peft import PeftModel

            adapter = weights_path(self.spec, self.context)
            if isinstance(adapter, str) or not adapter.is_dir():
                raise BackendError(f"the adapter folder of {self.spec.id!r} ({adapter}) is missing")
            self.tokenizer = AutoTokenizer.from_pretrained(self._base_weights)
            base: Any = AutoModelForSequenceClassification.from_pretrained(
                self._base_weights, num_labels=1, dtype=dtype
            )
            model: Any = PeftModel.from_pretrained(base, str(adapter))
        else:
            where = weights_path(self.spec, self.context)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(where)
                model = AutoModelForSequenceClassification.from_pretrained(where, dtype=dtype)
            except OSError as exc:
                raise unreadable_weights(
                    self.spec, where, exc, "sequence-classification model folder"
                ) from None
            if getattr(model.config, "num_labels", 1) != 1:
                raise BackendError(
                    f"model {self.spec.id!r} has {model.config.num_labels} labels; a scorer gives one number "
                    "(a reward model has num_labels=1)"
                )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # as TRL's RewardTrainer sets it
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(device).eval()
        self.device = device

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        return parameter_bytes(self.model)

    def generate(self, request: Request) -> Generator[Event, None, None]:
        raise BackendError(f"{self.spec.id!r} is a scorer: it scores answers, it does not write them")
        yield  # pragma: no cover - makes this a generator

    def _text(self, prompt: str, history: list[Message], answer: str) -> str:
        messages = [{"role": m.role, "content": m.content} for m in history]
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False))
        # A reward model without a chat template: the plain exchange, one turn a line.
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def score(self, prompt: str, answers: list[str], history: list[Message] | None = None) -> list[float]:
        """One score per answer (higher: preferred), each scored on its own (no padding between them)."""
        import torch

        if self.model is None:
            raise BackendError(f"scorer {self.spec.id!r} is not loaded")
        scores = []
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 0) or None
        with torch.inference_mode():
            for answer in answers:
                text = self._text(prompt, history or [], answer)
                ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                if limit and ids.shape[1] > limit:
                    ids = ids[:, -limit:]  # the end holds the answer being judged
                logits = self.model(input_ids=ids.to(self.device)).logits
                scores.append(float(logits[0, 0]))
        return scores
