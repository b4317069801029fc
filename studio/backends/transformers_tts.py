"""Backend `transformers-tts`: text-to-speech that transformers runs (VITS/MMS-TTS, Bark, SpeechT5, ...).

Owns: loading a model from a Hub id or a local folder (Bark through its processor and voice presets, every
other kind through transformers' `text-to-speech` pipeline; SpeechT5 with the vocoder and speaker
embeddings named in `options:`), speaking long text piece by piece (sentence boundaries) with progress,
the speaking rate where the model has one (VITS), and seeding so a clip can be redone.
Ignores: storage, input validation (the service's) and other backends.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from studio.backends import (
    AudioOutput,
    Backend,
    BackendError,
    Event,
    ModelNotAvailable,
    Progress,
    Request,
    register,
    release_accelerator_memory,
    short_error,
)
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import SpeechParams
from studio.formats.wav import as_mono_float, join_pieces, split_sentences

log = logging.getLogger(__name__)

# Characters per piece: Bark reads at most 256 tokens (about 13 s of speech) at once; VITS and SpeechT5
# are happy with a few sentences.
PIECE_CHARS = {"bark": 200, "speecht5": 300}
DEFAULT_PIECE_CHARS = 400


class TTSOptions(BaseModel):
    """`options:` of a transformers-tts model (SpeechT5 needs the first two; others need none)."""

    model_config = ConfigDict(extra="forbid")

    vocoder: str | None = None  # Hub id or folder of a vocoder (SpeechT5: microsoft/speecht5_hifigan)
    speaker_embeddings: str | None = None  # a .npy file with one x-vector (SpeechT5), relative to models.yaml
    max_piece_chars: int | None = None  # override the characters spoken per model call


@register
class TransformersTTS(Backend):
    kind = "transformers-tts"
    tabs = frozenset({"speech"})
    Params = SpeechParams
    Options = TTSOptions

    model: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_type = ""
        self.pipe: Any = None
        self.processor: Any = None
        self.sample_rate = 0
        self.forward_params: dict[str, Any] = {}
        self.device = "cpu"

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        where = weights_path(self.spec, self.context)
        from transformers import AutoConfig

        options = TTSOptions.model_validate(self.spec.options)
        device, dtype = device_and_dtype(self.spec)
        try:
            config = AutoConfig.from_pretrained(where)
            self.model_type = str(config.model_type)
            if self.model_type == "bark":
                self._load_bark(where, device, dtype)
            else:
                self._load_pipeline(where, device, dtype, options)
        except ImportError as exc:  # SpeechT5's tokenizer needs sentencepiece, which Studio does not require
            raise BackendError(
                f"model {self.spec.id!r} needs a package that is not installed: {short_error(exc)}"
            ) from None
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "model folder") from None
        except (ValueError, KeyError) as exc:
            why = short_error(exc)
            raise BackendError(
                f"model {self.spec.id!r} is not a text-to-speech model transformers can run: {why}"
            ) from None
        self.device = device

    def _load_bark(self, where: Path | str, device: str, dtype: Any) -> None:
        from transformers import AutoProcessor, BarkModel

        self.processor = AutoProcessor.from_pretrained(where)
        model: Any = BarkModel.from_pretrained(where, dtype=dtype)
        self.model = model.to(device).eval()
        self.sample_rate = int(self.model.generation_config.sample_rate)

    def _load_pipeline(self, where: Path | str, device: str, dtype: Any, options: TTSOptions) -> None:
        from transformers import AutoConfig, pipeline

        kwargs: dict[str, Any] = {}
        if self.model_type == "speecht5":
            if not options.vocoder or not options.speaker_embeddings:
                raise BackendError(
                    f"model {self.spec.id!r} is SpeechT5: set `options: {{vocoder: "
                    "microsoft/speecht5_hifigan, speaker_embeddings: <file.npy>}}` in models.yaml"
                )
            kwargs["vocoder"] = self._vocoder(options.vocoder).to(device)
            size = int(AutoConfig.from_pretrained(where).speaker_embedding_dim)
            vector = self._speaker_embeddings(options.speaker_embeddings, size)
            self.forward_params = {"speaker_embeddings": vector.to(device, dtype)}
        make: Any = pipeline
        self.pipe = make("text-to-speech", model=str(where), device=device, dtype=dtype, **kwargs)
        self.model = self.pipe.model
        self.sample_rate = int(self.pipe.sampling_rate)

    def _resolve(self, location: str) -> str:
        path = Path(location).expanduser()
        if not path.is_absolute() and (self.context.base_dir / path).exists():
            path = self.context.base_dir / path
        return str(path) if path.exists() else location

    def _vocoder(self, location: str) -> Any:
        from transformers import SpeechT5HifiGan

        where = self._resolve(location)
        try:
            return SpeechT5HifiGan.from_pretrained(where)
        except OSError as exc:  # raised here, it must not read as "the model is not downloaded"
            what = (
                "is not downloaded (load it once with the internet)" if where == location else "is unreadable"
            )
            raise ModelNotAvailable(
                f"model {self.spec.id!r}: its vocoder {location!r} {what}: {short_error(exc)}"
            ) from None

    def _speaker_embeddings(self, location: str, size: int) -> Any:
        """One x-vector of `size` numbers from a .npy file (never a pickle), as a (1, size) tensor."""
        import numpy as np
        import torch

        path = Path(self._resolve(location))
        try:
            vector = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"model {self.spec.id!r}: speaker embeddings {path} unreadable: {short_error(exc)}"
            ) from None
        if vector.size != size or not np.all(np.isfinite(vector)):
            raise BackendError(
                f"model {self.spec.id!r}: speaker embeddings {path} must hold {size} finite numbers "
                f"(found shape {vector.shape})"
            )
        return torch.from_numpy(vector.reshape(1, size))

    def voices(self) -> list[str]:
        """The voice presets the model lists (Bark's `speaker_embeddings_path.json`); none for others."""
        if self.processor is None:
            return []
        return sorted(self.processor.available_voice_presets)

    def unload(self) -> None:
        self.model = self.pipe = self.processor = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        return parameter_bytes(self.model)

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: Request) -> Generator[Event, None, None]:
        if self.model is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, SpeechParams)
        has_rate = hasattr(self.model, "speaking_rate")  # VITS / MMS-TTS
        if params.speed != 1.0 and not has_rate:
            raise BackendError(f"model {self.spec.id!r} has no speaking-rate control; leave speed at 1")
        if params.voice and self.model_type != "bark":
            raise BackendError(f"model {self.spec.id!r} has no voice presets; leave voice empty")
        if params.voice and params.voice not in self.voices():
            # Only the model's own presets: BarkProcessor would otherwise np.load() any other name as a path.
            known = ", ".join(self.voices()[:12]) or "none"
            raise BackendError(
                f"model {self.spec.id!r} has no voice preset {params.voice!r}; it has: {known}"
            )
        import torch

        options = TTSOptions.model_validate(self.spec.options)
        limit = options.max_piece_chars or PIECE_CHARS.get(self.model_type, DEFAULT_PIECE_CHARS)
        pieces = split_sentences(request.prompt, limit)
        if params.seed is not None:
            torch.manual_seed(params.seed)  # VITS's duration/noise sampling and Bark's sampling both use it
        if has_rate:
            self.model.speaking_rate = params.speed
        spoken: list[Any] = []
        yield Progress(0, len(pieces))
        for i, piece in enumerate(pieces):
            if request.stop.is_set():
                return
            try:
                with torch.inference_mode():
                    spoken.append(self._speak(piece, params))
            except BackendError:
                raise
            except Exception as exc:
                raise BackendError(f"speech generation failed on piece {i + 1}: {short_error(exc)}") from exc
            yield Progress(i + 1, len(pieces))
        audio = join_pieces(spoken, self.sample_rate)
        if not audio.size:
            raise BackendError("the model produced no audio for this text")
        yield AudioOutput(audio=audio, sample_rate=self.sample_rate, seed=params.seed)

    def _speak(self, text: str, params: SpeechParams) -> Any:
        if self.model_type == "bark":
            try:
                inputs = self.processor(text, voice_preset=params.voice or None, return_tensors="pt")
            except (OSError, ValueError, TypeError) as exc:  # preset files missing (offline) or malformed
                raise BackendError(
                    f"Bark voice preset {params.voice!r} is not available: {short_error(exc)}"
                ) from None
            inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
            out = self.model.generate(**inputs, do_sample=True)
            return as_mono_float(out.detach().float().cpu().numpy())
        result = self.pipe(text, forward_params=dict(self.forward_params))
        return as_mono_float(result["audio"])
