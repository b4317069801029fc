"""Backend `musicgen`: text-to-music with MusicGen (small/medium/large/melody) through transformers.

Owns: loading a MusicGen or MusicGen-Melody model (Hub id or local folder), sampling controls (guidance,
temperature, top-k, seed), progress per generated frame, Stop between frames, durations beyond the model's
window (30 s for Meta's models) by continuing from the re-encoded tail of the previous window, and melody
conditioning from an uploaded clip for melody models (chroma by studio.formats.wav, no torchaudio).
Ignores: storage, input validation (the service's) and file formats (studio.formats.wav writes the WAV).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Generator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from studio.backends import (
    AudioOutput,
    Backend,
    BackendError,
    Event,
    Progress,
    Request,
    register,
    release_accelerator_memory,
)
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import MusicParams
from studio.backends.worker import Worker

log = logging.getLogger(__name__)

PROGRESS_PER_SECOND = 25  # the UI shows at most 20 updates a second anyway


class MusicgenOptions(BaseModel):
    """`options:` of a MusicGen model: the window one generate() call covers, and how much is context."""

    model_config = ConfigDict(extra="forbid")

    window_seconds: float = Field(default=30.0, gt=0.0, le=60.0, allow_inf_nan=False)
    # Seconds of the previous window fed back as the start of the next one (audiocraft's "extend stride").
    overlap_seconds: float = Field(default=10.0, ge=0.0, le=30.0, allow_inf_nan=False)


@register
class MusicGen(Backend):
    kind = "musicgen"
    tabs = frozenset({"music"})
    Params = MusicParams
    Options = MusicgenOptions

    model: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer: Any = None
        self.where: Any = None
        self.melody_model = False
        self.chroma_settings: dict[str, int] = {}
        self.device = "cpu"
        self.sample_rate = 0
        self.frame_rate = 0
        self.window_frames = 0
        self.overlap_frames = 0
        # Its own thread and lock: torch's global seed and the model allow one generation at a time.
        self._worker = Worker(f"generate-{self.spec.id}")

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        where = weights_path(self.spec, self.context)
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            MusicgenForConditionalGeneration,
            MusicgenMelodyForConditionalGeneration,
        )

        device, dtype = device_and_dtype(self.spec)
        try:
            config = AutoConfig.from_pretrained(where)
            if config.model_type not in ("musicgen", "musicgen_melody"):
                raise BackendError(f"model {self.spec.id!r} is a {config.model_type!r} model, not MusicGen")
            self.melody_model = config.model_type == "musicgen_melody"
            cls: Any = (
                MusicgenMelodyForConditionalGeneration
                if self.melody_model
                else MusicgenForConditionalGeneration
            )
            self.model = cls.from_pretrained(where, dtype=dtype).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(where)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "MusicGen folder") from None
        self.where = where
        self.device = device
        if self.melody_model:
            self._load_chroma_settings(where)
        audio_config = self.model.config.audio_encoder
        self.sample_rate = int(audio_config.sampling_rate)
        self.frame_rate = int(audio_config.frame_rate)
        options = MusicgenOptions.model_validate(self.spec.options)
        # A window may not outgrow the decoder's positions (start token + the codebook delay included).
        codebooks = self.model.decoder.num_codebooks
        positions = int(self.model.config.decoder.max_position_embeddings) - 2 * codebooks - 1
        self.window_frames = max(2, min(int(options.window_seconds * self.frame_rate), positions))
        self.overlap_frames = min(int(options.overlap_seconds * self.frame_rate), self.window_frames // 2)

    def unload(self) -> None:
        self._worker.shutdown()
        self.model = self.tokenizer = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        return parameter_bytes(self.model)

    @property
    def window_seconds(self) -> float:
        return self.window_frames / self.frame_rate if self.frame_rate else 0.0

    def plan(self, duration: float) -> list[tuple[int, int]]:
        """(context frames, new frames) per window for a clip of `duration` seconds."""
        total = max(1, math.ceil(duration * self.frame_rate))
        windows = [(0, min(total, self.window_frames))]
        done = windows[0][1]
        while done < total:
            context = min(self.overlap_frames, done)
            new = min(total - done, self.window_frames - context)
            windows.append((context, new))
            done += new
        return windows

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: Request) -> Generator[Event, None, None]:
        if self.model is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, MusicParams)
        if request.melody is not None and not self.melody_model:
            raise BackendError(f"model {self.spec.id!r} is not a melody model; remove the melody clip")
        windows = self.plan(params.duration)
        total = sum(new for _, new in windows)
        yield Progress(0, total)
        audio = yield from self._worker.run(
            lambda events, abandoned: self._run(request, params, windows, events, abandoned),
            stop=request.stop,
            what="music generation",
        )
        if request.stop.is_set() or audio is None:
            return
        yield AudioOutput(audio=audio, sample_rate=self.sample_rate, seed=params.seed)

    def _run(
        self,
        request: Request,
        params: MusicParams,
        windows: list[tuple[int, int]],
        events: queue.Queue[Any],
        abandoned: threading.Event,
    ) -> Any:
        """All windows, in the worker thread: returns the clip as float32 samples (channels, n)."""
        import numpy as np
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        stop = request.stop
        total = sum(new for _, new in windows)
        done = [0]  # decoding steps so far, across windows (the delay steps make it end a little above total)

        class Steps(LogitsProcessor):
            """Counts decoding steps for the progress bar. (MusicGen's generate() in transformers 5.24 takes a
            `streamer` but never hands it to the decoding loop; logits processors run once per step.)"""

            def __init__(self) -> None:
                self.sent = 0.0

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                done[0] += 1
                # At most PROGRESS_PER_SECOND events: each wakes the consumer thread, which competes for
                # the GIL with this one (on 2 busy cores every step's hand-off cost about 0.5 ms).
                now = time.monotonic()
                if now - self.sent >= 1 / PROGRESS_PER_SECOND or done[0] >= total:
                    self.sent = now
                    events.put(Progress(min(done[0], total), total))
                return scores

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                halt = stop.is_set() or abandoned.is_set()
                return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

        text = self.tokenizer([request.prompt], padding=True, return_tensors="pt").to(self.device)
        hop = self.sample_rate // self.frame_rate if self.frame_rate else 1
        if params.seed is not None:
            torch.manual_seed(params.seed)
        clip: Any = None
        start_frame = 0
        for context, new in windows:
            kwargs: dict[str, Any] = {
                **text,
                "do_sample": True,
                "temperature": params.temperature,
                "top_k": params.top_k or None,
                "guidance_scale": params.guidance if params.guidance > 1 else None,
                # The codebook delay pattern costs (codebooks - 1) steps before the last frame is complete.
                "max_new_tokens": new + self.model.decoder.num_codebooks - 1,
                "logits_processor": LogitsProcessorList([Steps()]),
                "stopping_criteria": StoppingCriteriaList([Stop()]),
            }
            if context:
                kwargs["decoder_input_ids"] = self._encode_tail(clip[..., -context * hop :])
            if request.melody is not None:
                kwargs |= self._melody_features(request.melody, start_frame / self.frame_rate)
            try:
                with torch.inference_mode():
                    values = self.model.generate(**kwargs)
            except RuntimeError:
                # Halting mid-window leaves codebooks of unequal length, which MusicGen's final reshape
                # rejects; a stopped clip is discarded anyway.
                if stop.is_set() or abandoned.is_set():
                    return None
                raise
            if stop.is_set() or abandoned.is_set():
                return None
            audio = values[0].float().cpu().numpy()  # (channels, samples), the context re-decoded first
            audio = audio[..., context * hop :]
            clip = audio if clip is None else np.concatenate([clip, audio], axis=-1)
            start_frame += new
        wanted = round(params.duration * self.sample_rate)
        return clip[..., :wanted]

    def _encode_tail(self, tail: Any) -> Any:
        """The last seconds of the clip as decoder input codes (codebooks x frames), as audio prompts are."""
        import torch

        values = torch.from_numpy(tail).to(self.device, self.model.dtype)
        values = values[None] if values.ndim == 2 else values[None, None]  # (batch, channels, samples)
        codebooks = self.model.decoder.num_codebooks
        with torch.inference_mode():
            if values.shape[1] == 1:
                codes = self.model.audio_encoder.encode(values[:, :1]).audio_codes[0]
            else:  # stereo models interleave the left and right codebooks
                left = self.model.audio_encoder.encode(values[:, :1]).audio_codes[0]
                right = self.model.audio_encoder.encode(values[:, 1:2]).audio_codes[0]
                codes = torch.stack([left, right], dim=2).flatten(1, 2)
        return codes[:, :codebooks].reshape(-1, codes.shape[-1])

    def _load_chroma_settings(self, where: Any) -> None:
        """The melody extractor's settings (preprocessor_config.json), read as data: transformers'
        MusicgenMelodyFeatureExtractor cannot be built without torchaudio: formats.wav makes the chroma."""
        from transformers.feature_extraction_utils import FeatureExtractionMixin

        try:
            values, _ = FeatureExtractionMixin.get_feature_extractor_dict(where)
        except OSError:  # a folder without it: the extractor's own defaults (Meta's settings)
            log.info("model %s has no preprocessor_config.json; default chroma settings", self.spec.id)
            values = {}
        names = ("sampling_rate", "n_fft", "hop_length", "chunk_length")
        self.chroma_settings = {name: int(values[name]) for name in names if name in values}
        self.chroma_settings["num_chroma"] = int(self.model.config.num_chroma)

    def _melody_features(self, melody: Any, offset_seconds: float) -> dict[str, Any]:
        """Chroma features of the melody from `offset_seconds` on (the whole clip when it is shorter)."""
        import torch
        from transformers.audio_utils import chroma_filter_bank

        from studio.formats.wav import melody_chroma

        samples, rate = melody
        start = int(offset_seconds * rate)
        segment = samples[start:] if start < len(samples) - rate else samples
        chroma = melody_chroma(segment, rate, filter_bank=chroma_filter_bank, **self.chroma_settings)
        chroma = torch.from_numpy(chroma)
        return {"input_features": chroma[None].to(self.device, self.model.dtype)}
