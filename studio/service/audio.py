"""The Audio tab's part of the service: speech and music jobs, WAV files and waveform pictures, rows.

Owns: validating a speech or music request (text, parameters, melody upload), streaming progress, saving
each clip as a 16-bit WAV under the media folder with a waveform PNG beside it, and writing one generation
row per job when it ends (failures and stops included) with the clip's duration and sample rate in the
row's `params`; listing recent clips and the CLI's one-shot result.
Ignores: Gradio types, SQL details (storage) and model internals (backends).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.backends import AudioOutput, Progress, Request
from studio.errors import StudioError, quote, reason
from studio.formats import wav
from studio.service.checks import model_for, params_for, require_weights
from studio.service.core import StudioCore
from studio.service.runs import Loading, Run, Waiting, remove_quietly
from studio.service.types import AudioUpdate, GenerationResult, Status

log = logging.getLogger(__name__)

MAX_SPEECH_CHARS = 5_000  # about five minutes of speech; longer text is better split by the user
MAX_MUSIC_PROMPT_CHARS = 2_000
AUDIO_TABS = ("speech", "music")


@dataclass
class Clip:
    """A stored clip for the recent-clips list."""

    generation_id: int
    tab: str
    model: str
    prompt: str
    file: Path
    picture: Path | None
    duration_s: float
    sample_rate: int
    seed: int | None
    rating: int | None


_writers: list[ThreadPoolExecutor] = []  # one shared, lazily started pool: idle threads cost nothing
_writers_lock = threading.Lock()


def _writer() -> ThreadPoolExecutor:
    with _writers_lock:
        if not _writers:
            _writers.append(ThreadPoolExecutor(max_workers=2, thread_name_prefix="audio-save"))
        return _writers[0]


def audio_text(text: Any, tab: str) -> str:
    """The speech text or music prompt, refused with a clear message when empty or too long."""
    what = "text to speak" if tab == "speech" else "music prompt"
    limit = MAX_SPEECH_CHARS if tab == "speech" else MAX_MUSIC_PROMPT_CHARS
    if not isinstance(text, str):
        raise StudioError(f"the {what} must be text")
    if not text.strip():
        raise StudioError(f"the {what} is empty; type something first")
    if len(text) > limit:
        raise StudioError(f"the {what} is {len(text)} characters long; the limit is {limit}")
    return text


class AudioTab(StudioCore):
    """`Studio.speech` and `Studio.music`: clip jobs, their WAV files, pictures and rows; recent clips."""

    def check_audio(self, tab: str, model_id: str, text: Any, params: dict[str, Any] | None) -> Any:
        """Validate a request without running it (the UI refuses before queueing); returns the params."""
        if tab not in AUDIO_TABS:
            raise StudioError(f"unknown audio tab {quote(tab)}; use speech or music")
        spec = model_for(self.config, model_id, tab)
        require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        audio_text(text, tab)
        return params_for(spec, params, tab)

    def speech(
        self,
        *,
        model_id: str,
        text: str,
        params: dict[str, Any] | None = None,
        user: str | None = None,
        run_key: str | None = None,
    ) -> Iterator[AudioUpdate]:
        """Speak `text`. Bad input raises StudioError before anything runs or is stored."""
        return self._audio_job("speech", model_id, text, params, None, user, run_key)

    def music(
        self,
        *,
        model_id: str,
        prompt: str,
        params: dict[str, Any] | None = None,
        melody: bytes | str | Path | None = None,
        user: str | None = None,
        run_key: str | None = None,
    ) -> Iterator[AudioUpdate]:
        """Make music from `prompt` (and a melody clip for melody models)."""
        return self._audio_job("music", model_id, prompt, params, melody, user, run_key)

    def _audio_job(
        self,
        tab: str,
        model_id: str,
        text: str,
        params: dict[str, Any] | None,
        melody: bytes | str | Path | None,
        user: str | None,
        run_key: str | None,
    ) -> Iterator[AudioUpdate]:
        validated = self.check_audio(tab, model_id, text, params)
        clip_melody = None
        if melody not in (None, ""):
            try:
                clip_melody = wav.load_melody(melody)
            except ValueError as exc:
                raise StudioError(str(exc)) from None
        uid = self.user_id(user)
        return self._run_audio(tab, model_id, text, validated, clip_melody, uid, run_key)

    def _run_audio(
        self, tab: str, model_id: str, text: str, validated: Any, melody: Any, uid: int, run_key: str | None
    ) -> Iterator[AudioUpdate]:
        request = Request(prompt=text, params=validated, melody=melody)
        row = storage.Generation(
            user_id=uid,
            tab=tab,
            model_id=model_id,
            prompt=text,
            params={**validated.model_dump(), "melody": melody is not None},
            seed=getattr(validated, "seed", None),
        )
        outputs: list[AudioOutput] = []

        def save(run: Run[tuple[storage.Generation, list[Path]]]) -> tuple[storage.Generation, list[Path]]:
            if run.status == Status.OK and not outputs:
                run.status, run.error = Status.ERROR, "the model returned no audio"
            row.status, row.error, row.notices = run.status.value, run.error, run.notices
            row.duration_ms = run.seconds * 1000
            return self._save_clip(row, outputs[-1] if run.status == Status.OK else None)

        run = Run(self, model_id=model_id, request=request, row=row, save=save, run_key=run_key)
        with closing(run.events()) as events:
            for event in events:
                if isinstance(event, Waiting):
                    yield AudioUpdate(notices=[*run.notices, event.text])
                elif isinstance(event, Loading):
                    yield AudioUpdate(status=Status.LOADING)
                elif isinstance(event, Progress):
                    yield AudioUpdate(step=event.step, total=event.total, notices=run.notices)
                elif isinstance(event, AudioOutput):
                    outputs.append(event)
        assert run.result is not None
        saved, files = run.result
        yield AudioUpdate(
            status=Status(saved.status),
            done=True,
            file=files[0] if files else None,
            picture=files[1] if len(files) > 1 else None,
            generation_id=saved.id,
            duration_s=saved.params.get("duration_s"),
            sample_rate=saved.params.get("sample_rate"),
            seed=saved.seed,
            error=saved.error,
            notices=run.notices,
        )

    def _save_clip(
        self, row: storage.Generation, output: AudioOutput | None
    ) -> tuple[storage.Generation, list[Path]]:
        """Finish the begun row; the WAV and its picture named after it; all or nothing (a failed save is a
        failed row)."""
        values = dict(row.params)
        if output is None:
            with Session(self.engine, expire_on_commit=False) as session:
                return storage.finish_generation(session, generation=row), []
        folder = self.settings.media_dir / "audio" / datetime.now(UTC).strftime("%Y-%m-%d")
        written: list[Path] = []
        # The WAV's write + fsync (the largest fixed cost, I/O wait) runs in a worker thread while this one
        # draws the picture (drawing in a worker too was slower: both need the GIL).
        # The WAV is renamed into place, and the row naming it committed, only once its bytes are on disk.
        temp = folder / f".{secrets.token_hex(8)}.wav.tmp"
        pending = _writer().submit(wav.write_wav, output.audio, output.sample_rate, temp)
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                name = wav.media_name(row.id or 0, "")
                picture = wav.waveform_png(output.audio, folder / f"{name}.png")
                written.append(picture)
                pending.result()
                wav_path = folder / f"{name}.wav"
                os.replace(temp, wav_path)
                written.insert(0, wav_path)
                row.files = [str(p.relative_to(self.settings.data_dir)) for p in written]
                row.params = {
                    **values,
                    "duration_s": round(wav.duration_seconds(output.audio, output.sample_rate), 4),
                    "sample_rate": int(output.sample_rate),
                }
                storage.finish_generation(session, generation=row)
                return row, written
        except Exception as exc:  # e.g. a full disk: no file without a row, and the job is still recorded
            wait([pending])
            # A read-only or failing disk makes the clean-up fail too: it must never skip finishing the row.
            remove_quietly([temp, *written])
            log.warning("could not save the %s clip: %s", row.tab, reason(exc))
            row.files, row.params = [], values
            row.status, row.error = Status.ERROR.value, f"the clip could not be saved: {reason(exc)}"
            with Session(self.engine, expire_on_commit=False) as session:
                return storage.finish_generation(session, generation=row), []

    def recent_clips(self, tab: str, *, user: str | None = None, limit: int = 20) -> list[Clip]:
        """The user's latest playable clips of a tab, newest first."""
        uid = self.user_id(user)
        with Session(self.engine) as session:
            rows = storage.list_generations(session, user_id=uid, tab=tab, limit=limit * 3)
            rows = [r for r in rows if r.status == Status.OK and r.files][:limit]
            votes = storage.ratings_for(session, generation_ids=[r.id for r in rows if r.id], user_id=uid)
        clips = []
        for row in rows:
            wav = self.media_path(row.files[0])
            if not wav.exists():
                continue
            picture = self.media_path(row.files[1]) if len(row.files) > 1 else None
            clips.append(
                Clip(
                    row.id or 0,
                    row.tab,
                    row.model_id,
                    row.prompt,
                    wav,
                    picture,
                    float(row.params.get("duration_s", 0.0)),
                    int(row.params.get("sample_rate", 0)),
                    row.seed,
                    votes.get(row.id or 0),
                )
            )
        return clips

    def generate_audio_result(
        self, *, tab: str, model_id: str, prompt: str, params: dict[str, Any] | None, user: str | None
    ) -> GenerationResult:
        """One complete speech or music job for scripts (the CLI): the stored result, files absolute."""
        params = dict(params or {})
        melody = params.pop("melody", None)  # a path, for the CLI
        if tab == "speech":
            updates = self.speech(model_id=model_id, text=prompt, params=params, user=user)
        else:
            updates = self.music(model_id=model_id, prompt=prompt, params=params, melody=melody, user=user)
        *_, final = updates
        assert final.generation_id is not None
        return GenerationResult(
            generation_id=final.generation_id,
            tab=tab,
            model=model_id,
            status=final.status,
            error=final.error,
            files=[str(final.file)] if final.file else [],  # the clip; its waveform picture is beside it
            params=self.generation_settings(final.generation_id, user=user)["params"],
            notices=final.notices,
            fields={
                "picture": str(final.picture) if final.picture else None,
                "duration_s": final.duration_s,
                "sample_rate": final.sample_rate,
                "seed": final.seed,
            },
        )
