"""Backend `hibari-tts`: English speech from the hibari-tts package (ONNX on the CPU, offline).

Owns: loading a hibari voice model (the ONNX file `source:` points at; the shipped models.yaml names the
"heart" voice inside the installed hibari-tts wheel, so it is ready with no download) with hibari's own
G2P and synthesis, speaking text piece by piece with progress, speed and a seed that makes a clip
reproducible. Ignores: storage, input validation (the service's) and other hibari voices' downloads (a
voice file is a `source:` like any other; `options: {voice: emma}` picks the matching pronunciation rules).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from studio.backends import AudioOutput, Backend, BackendError, Event, Progress, Request, register
from studio.backends.loading import weights_path
from studio.backends.params import SpeechParams
from studio.config import ModelSpec
from studio.errors import quote
from studio.formats.wav import join_pieces, split_sentences

log = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.5, 2.0  # hibari's documented pace range
PIECE_CHARS = 300  # hibari splits longer sentences itself; pieces this size give steady progress


class HibariOptions(BaseModel):
    """`options:` of a hibari model: which voice the ONNX file is (it picks US or UK pronunciation)."""

    model_config = ConfigDict(extra="forbid")

    voice: str = Field(default="heart", min_length=1)
    threads: int = Field(default=1, ge=1, le=64)  # onnxruntime threads; one core runs ~130x real time


class HibariParams(SpeechParams):
    """Speech parameters within hibari's own pace range, so a speed it cannot speak is refused before a
    row exists, not stored as a failed job."""

    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)


@register
class HibariTTS(Backend):
    kind = "hibari-tts"
    tabs = frozenset({"speech"})
    Params = HibariParams
    Options = HibariOptions

    @classmethod
    def check_params(cls, spec: ModelSpec, params: Any) -> None:
        """Refuse a voice this model does not have, before a row (the ONNX file is one voice)."""
        own = HibariOptions.model_validate(spec.options).voice
        voice = getattr(params, "voice", None)
        if voice not in (None, "", own):
            raise ValueError(
                f"model {spec.id!r} has one voice, {own!r}, not {quote(voice)}; pick another model for "
                "another voice"
            )

    tts: Any = None

    def load(self) -> None:
        where = weights_path(self.spec, self.context)
        try:
            from hibari import Hibari
            from hibari.voices import VOICES
        except ImportError:
            raise BackendError(
                "the hibari-tts backend needs the `hibari-tts` package; install it with "
                "`pip install hibari-tts==0.2.1`"
            ) from None
        options = HibariOptions.model_validate(self.spec.options)
        if options.voice not in VOICES:
            raise BackendError(
                f"model {self.spec.id!r}: unknown hibari voice {options.voice!r}; known: {', '.join(VOICES)}"
            )
        if isinstance(where, str) or not where.is_file():
            raise BackendError(f"model {self.spec.id!r}: hibari needs an .onnx voice file, not {where}")
        try:
            tts = Hibari(voice=options.voice, model=str(where), threads=options.threads)
        except Exception as exc:  # onnxruntime's errors on a file that is not a hibari model
            raise BackendError(
                f"model {self.spec.id!r}: {where.name} is not a hibari voice model: {exc}"
            ) from None
        self.tts = tts
        self.voice = options.voice

    def unload(self) -> None:
        self.tts = None

    def memory_bytes(self) -> int:
        return 8 * 2**20 if self.tts is not None else 0  # the ONNX file is about 8 MB

    def generate(self, request: Request) -> Generator[Event, None, None]:
        if self.tts is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, SpeechParams)
        if not MIN_SPEED <= params.speed <= MAX_SPEED:
            raise BackendError(f"hibari speaks at speed {MIN_SPEED} to {MAX_SPEED}; got {params.speed}")
        if params.voice not in (None, "", self.voice):
            raise BackendError(
                f"model {self.spec.id!r} has one voice, {self.voice!r}; pick another model for another voice"
            )
        import numpy as np

        pieces = split_sentences(request.prompt, PIECE_CHARS)
        rng = np.random.default_rng(params.seed)  # one stream for the clip: the same seed, the same clip
        spoken: list[Any] = []
        yield Progress(0, len(pieces))
        for i, piece in enumerate(pieces):
            if request.stop.is_set():
                return  # stopped: a clip cut mid-text is not kept
            try:
                phonemes = self.tts.phonemize(piece)
                spoken += [self.tts.from_ids(self.tts.ids(ps), params.speed, rng) for ps in phonemes]
            except Exception as exc:
                raise BackendError(
                    f"hibari could not speak piece {i + 1}: {type(exc).__name__}: {exc}"
                ) from exc
            yield Progress(i + 1, len(pieces))
        audio = join_pieces(spoken, self.tts.sample_rate)
        if not audio.size:
            raise BackendError("there is nothing to say in this text (no pronounceable words)")
        yield AudioOutput(audio=audio, sample_rate=int(self.tts.sample_rate), seed=params.seed)
