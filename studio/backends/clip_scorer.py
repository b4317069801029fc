"""Backend `transformers-clip`: an image scorer, the CLIP-style image-text similarity Best of n in the Image
tab picks a picture with (PickScore is a CLIP model fine-tuned on people's picks and scores the same way).

Owns: loading a `CLIPModel` and its processor (a Hub id or local folder) and `score_images`: one float per
picture, the model's logit scale times the cosine similarity of the picture and the prompt. Higher is
better; only differences between pictures for one prompt mean anything.
Ignores: which picture is shown (the service) and generation: a scorer does not draw.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, ClassVar

from studio.backends import Backend, BackendError, Event, Request, register, release_accelerator_memory
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import Params


@register
class ClipScorer(Backend):
    kind = "transformers-clip"
    tabs = frozenset({"scorer"})
    Params = Params
    judges: ClassVar[str] = "image"  # what it scores: pictures (the reward backend scores text)

    model: Any = None
    processor: Any = None
    device: str = "cpu"

    def load(self) -> None:
        from transformers import CLIPModel, CLIPProcessor

        where = weights_path(self.spec, self.context)
        device, dtype = device_and_dtype(self.spec)
        try:
            self.processor = CLIPProcessor.from_pretrained(where)
            model: Any = CLIPModel.from_pretrained(where, dtype=dtype)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "CLIP model folder") from None
        self.model = model.to(device).eval()
        self.device = device

    def unload(self) -> None:
        self.model = None
        self.processor = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        return parameter_bytes(self.model)

    def generate(self, request: Request) -> Generator[Event, None, None]:
        raise BackendError(f"{self.spec.id!r} is a scorer: it scores pictures, it does not draw them")
        yield  # pragma: no cover - makes this a generator

    def score_images(self, prompt: str, images: list[Any]) -> list[float]:
        """One score per picture (PIL images) for `prompt`."""
        import torch

        if self.model is None:
            raise BackendError(f"scorer {self.spec.id!r} is not loaded")
        pictures = [image.convert("RGB") for image in images]
        inputs = self.processor(
            text=[prompt], images=pictures, return_tensors="pt", padding=True, truncation=True
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        # logits_per_image: (pictures, texts) = logit scale x cosine similarity.
        return [float(v) for v in out.logits_per_image[:, 0]]
