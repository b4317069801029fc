"""Backend kinds that models.yaml already lists but this release does not run yet.

Owns: the parameter schemas of the speech and music backends (so their `defaults:` in models.yaml are
validated at start-up today) and a `load()` that says plainly that the kind is not implemented yet. Each
is replaced by a real module when its tab lands (issue: audio).
"""

from __future__ import annotations

from collections.abc import Generator

from pydantic import Field

from studio.backends import Backend, BackendError, Event, Request, register
from studio.backends.params import Params

__all__ = ["MusicParams", "SpeechParams"]


class SpeechParams(Params):
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    voice: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class MusicParams(Params):
    duration: float = Field(default=8.0, gt=0.0, le=300.0)
    guidance: float = Field(default=3.0, ge=0.0, le=20.0)
    temperature: float = Field(default=1.0, gt=0.0, le=2.0)
    top_k: int = Field(default=250, ge=0, le=2048)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class _Planned(Backend):
    """Refuses to load with a message that names what is missing; never pretends to generate."""

    def load(self) -> None:
        raise BackendError(
            f"model {self.spec.id!r} uses backend {self.kind!r}, which this version of Studio lists "
            f"but does not run yet; the {', '.join(sorted(self.tabs))} tab arrives in a later release"
        )

    def generate(self, request: Request) -> Generator[Event, None, None]:
        raise BackendError(f"backend {self.kind!r} is not implemented yet")


@register
class TransformersTTSPlanned(_Planned):
    kind = "transformers-tts"
    tabs = frozenset({"speech"})
    Params = SpeechParams


@register
class HibariTTSPlanned(_Planned):
    kind = "hibari-tts"
    tabs = frozenset({"speech"})
    Params = SpeechParams


@register
class MusicGenPlanned(_Planned):
    kind = "musicgen"
    tabs = frozenset({"music"})
    Params = MusicParams
