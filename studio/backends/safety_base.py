"""What every safety checker model is: a `Backend` of the `safety` tab that scores text or pictures.

Owns: `Score` (one category's score from one checker), `CheckParams` (a check takes no parameters) and
`SafetyChecker`, the contract the safety stage (studio/service/safety.py) calls: `media` ("text" or
"image"), `check_texts(texts)` and `check_image(picture)`. `generate` runs a check too (the prompt, or the
request's picture), so `studio generate` and the Models panel treat a checker like any model.
Ignores: thresholds and policies (the service's), and each kind's model (safety_bundled.py, safety_hub.py).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from studio.backends import Backend, BackendError, Event, Request, TextDelta
from studio.backends.params import Params
from studio.config import SAFETY_CATEGORIES


@dataclass(frozen=True)
class Score:
    """How strongly one checker finds one category in one input (0 to 1); `label` is the model's own word."""

    category: str
    score: float
    label: str = ""


class CheckParams(Params):
    """A check has no knobs: thresholds are the policy's (models.yaml `safety.thresholds`)."""


class LabelMap(BaseModel):
    """`options:` of a classifier: which of the model's labels means which studio category (labels left out
    are ignored: a "safe" or "benign" label, say)."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _known_categories(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = sorted({c for c in labels.values() if c not in SAFETY_CATEGORIES})
        if bad:
            raise ValueError(
                f"unknown categor{'y' if len(bad) == 1 else 'ies'} {', '.join(map(repr, bad))}; "
                f"known: {', '.join(SAFETY_CATEGORIES)}"
            )
        return labels


class SafetyChecker(Backend):
    """A checker model. `media` says what it reads; the other method raises."""

    tabs = frozenset({"safety"})
    Params = CheckParams
    media: ClassVar[str] = "text"

    def check_texts(self, texts: list[str]) -> list[list[Score]]:
        """One list of scores per text."""
        raise BackendError(f"checker {self.spec.id!r} ({self.kind}) reads pictures, not text")

    def check_image(self, image: Any) -> list[Score]:
        """The scores of one picture (a PIL image)."""
        raise BackendError(f"checker {self.spec.id!r} ({self.kind}) reads text, not pictures")

    @abstractmethod
    def load(self) -> None: ...

    def generate(self, request: Request) -> Generator[Event, None, None]:
        """A check as a generation: the scores as one JSON line ({category: score})."""
        if self.media == "image":
            if request.init_image is None:
                raise BackendError(f"checker {self.spec.id!r} needs a picture")
            scores = self.check_image(request.init_image)
        else:
            scores = self.check_texts([request.prompt])[0]
        yield TextDelta(json.dumps({s.category: round(s.score, 4) for s in scores}))
