"""Audio tab, tiny tier: random-weight VITS and MusicGen checkpoints built in code, run by the real backends.

Both are saved with `save_pretrained` and loaded by `transformers-tts` / `musicgen` through `from_pretrained`
(VITS through transformers' text-to-speech pipeline). Random weights make noise, so the tests check
structure: WAV files, sample rates, durations, pieces and windows, seeds, Stop, and the errors users see.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlmodel import Session

from studio import storage
from studio.service import Studio, StudioError

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="session")
def tiny_audio_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    from tests.helpers.tiny_audio import build_tiny_musicgen, build_tiny_vits

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-audio")
    return build_tiny_vits(root / "vits"), build_tiny_musicgen(root / "musicgen")


def models_yaml(vits: Path, musicgen: Path) -> str:
    return f"""
models:
  - id: tiny-vits
    tabs: [speech]
    backend: transformers-tts
    source: {vits}
    options: {{max_piece_chars: 40}}
  - id: tiny-musicgen
    tabs: [music]
    backend: musicgen
    source: {musicgen}
    defaults: {{duration: 2.0, guidance: 3.0, top_k: 50}}
  - id: offline-musicgen
    tabs: [music]
    backend: musicgen
    source: facebook/musicgen-small
  - id: offline-tts
    tabs: [speech]
    backend: transformers-tts
    source: facebook/mms-tts-eng
"""


@pytest.fixture
def studio(make_studio, tiny_audio_dirs: tuple[Path, Path]) -> Studio:
    return make_studio(models_yaml(*tiny_audio_dirs))


def _rows(studio: Studio) -> list[storage.Generation]:
    with Session(studio.engine) as session:
        return sorted(storage.list_generations(session, limit=100), key=lambda r: r.id or 0)


def test_vits_speaks_long_text_piece_by_piece_into_a_wav(studio: Studio) -> None:
    text = "Hello there, how are you? I am a tiny voice. This text has several sentences to speak."
    updates = list(studio.speech(model_id="tiny-vits", text=text, params={"seed": 3}))
    final = updates[-1]
    assert final.status == "ok", final.error
    progress = [(u.step, u.total) for u in updates if not u.done and u.total]
    assert progress[-1][0] == progress[-1][1] >= 3  # three pieces of at most 40 characters
    data, rate = sf.read(final.file)
    assert rate == 16_000 == final.sample_rate
    assert final.duration_s == pytest.approx(len(data) / rate, abs=1e-3) and len(data) > 0
    (row,) = _rows(studio)
    assert row.params["sample_rate"] == 16_000 and row.params["duration_s"] == final.duration_s


def test_vits_seed_reproduces_and_speed_changes_the_length(studio: Studio) -> None:
    def clip(seed: int, speed: float = 1.0) -> np.ndarray:
        final = list(
            studio.speech(model_id="tiny-vits", text="hello world", params={"seed": seed, "speed": speed})
        )
        assert final[-1].status == "ok", final[-1].error
        return sf.read(final[-1].file)[0]

    first, again = clip(7), clip(7)
    assert np.array_equal(first, again)
    fast = clip(7, speed=2.0)
    assert len(fast) < len(first)  # VITS's speaking_rate shortens the predicted durations


def test_vits_refuses_voice_presets_it_does_not_have_and_the_failure_is_stored(studio: Studio) -> None:
    final = list(studio.speech(model_id="tiny-vits", text="hello", params={"voice": "v2/en_speaker_6"}))[-1]
    assert final.status == "error" and "has no voice presets" in (final.error or "")
    assert _rows(studio)[-1].status == "error"


def test_musicgen_continues_past_its_window_to_the_exact_duration(studio: Studio) -> None:
    with studio.manager.use("tiny-musicgen") as backend:
        window = backend.window_seconds
        windows = backend.plan(2.5)
    assert window < 1.0 and len(windows) >= 4  # the tiny model's window is short: continuation is exercised
    assert all(context > 0 for context, _ in windows[1:])  # each later window starts from the previous tail
    updates = list(
        studio.music(model_id="tiny-musicgen", prompt="calm piano", params={"duration": 2.5, "seed": 1})
    )
    final = updates[-1]
    assert final.status == "ok", final.error
    data, rate = sf.read(final.file)
    assert rate == 8000 == final.sample_rate and len(data) == 20_000  # 2.5 s exactly
    assert final.duration_s == pytest.approx(2.5) and np.abs(data).max() > 0
    steps = [u.step for u in updates if not u.done and u.total]
    assert steps[-1] == updates[-2].total == 200  # one progress step per frame, across every window


def test_musicgen_seed_reproduces_and_another_seed_differs(studio: Studio) -> None:
    def clip(seed: int) -> np.ndarray:
        final = list(
            studio.music(model_id="tiny-musicgen", prompt="rock song", params={"duration": 1.2, "seed": seed})
        )
        assert final[-1].status == "ok", final[-1].error
        return sf.read(final[-1].file)[0]

    first = clip(11)
    assert np.array_equal(first, clip(11))
    assert not np.array_equal(first, clip(12))


def test_musicgen_sampling_controls_are_used(studio: Studio) -> None:
    base = {"duration": 0.5, "seed": 2}
    greedyish = list(studio.music(model_id="tiny-musicgen", prompt="drums", params=base | {"top_k": 1}))[-1]
    no_cfg = list(studio.music(model_id="tiny-musicgen", prompt="drums", params=base | {"guidance": 0.0}))[-1]
    hot = list(studio.music(model_id="tiny-musicgen", prompt="drums", params=base | {"temperature": 2.0}))[-1]
    clips = [sf.read(f.file)[0] for f in (greedyish, no_cfg, hot)]
    assert all(len(c) == 4000 for c in clips)
    assert not np.array_equal(clips[0], clips[1]) and not np.array_equal(clips[1], clips[2])


def test_musicgen_stop_ends_the_run_and_keeps_no_clip(studio: Studio) -> None:
    seen = []
    for update in studio.music(model_id="tiny-musicgen", prompt="long", params={"duration": 30}, run_key="m"):
        seen.append(update)
        if update.step >= 5 and not update.done:
            studio.cancel("m")
    final = seen[-1]
    assert final.status == "stopped" and final.file is None
    assert max(u.step for u in seen) < 2400  # it did not run to the end
    assert _rows(studio)[-1].status == "stopped"


def test_melody_on_a_model_without_melody_support_fails_clearly(studio: Studio) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(4000, dtype=np.float32), 8000, format="WAV")
    final = list(studio.music(model_id="tiny-musicgen", prompt="tune", melody=buffer.getvalue()))[-1]
    assert final.status == "error" and "not a melody model" in (final.error or "")
    assert _rows(studio)[-1].params["melody"] is True


def test_models_not_downloaded_say_how_to_get_them(studio: Studio) -> None:
    assert studio.model_status("offline-musicgen") == "not downloaded"
    for tab, model in (("music", "offline-musicgen"), ("speech", "offline-tts")):
        # Refused at once, before anything is stored (issue 14), with the command that fixes it.
        with pytest.raises(StudioError, match=f"run `studio models pull {model}`"):
            studio.generate(tab=tab, model_id=model, prompt="anything")
        assert not [row for row in _rows(studio) if row.model_id == model]
    with pytest.raises(StudioError, match="duration"):
        studio.generate(tab="music", model_id="tiny-musicgen", prompt="x", params={"duration": float("nan")})


# -- melody conditioning (MusicGen-Melody), without torchaudio --------------------------------------------
def _tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_melody_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_audio import build_tiny_musicgen

    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-melody") / "melody", melody=True)


def test_melody_model_follows_the_uploaded_clip_across_windows(make_studio, tiny_melody_dir: Path) -> None:
    studio = make_studio(
        f"models:\n  - {{id: tiny-melody, tabs: [music], backend: musicgen, source: '{tiny_melody_dir}'}}\n"
    )
    params = {"duration": 1.5, "seed": 4, "guidance": 3.0}

    def clip(melody: bytes | None) -> np.ndarray:
        final = list(studio.music(model_id="tiny-melody", prompt="calm piano", params=params, melody=melody))[
            -1
        ]
        assert final.status == "ok", final.error
        data, rate = sf.read(final.file)
        assert rate == 8000 and len(data) == 12_000  # 1.5 s exactly, over several 0.7 s windows
        return data

    a_tone, e_tone = _wav(_tone(440.0, 2.0, 22_050), 22_050), _wav(_tone(329.63, 2.0, 22_050), 22_050)
    with_a = clip(a_tone)
    assert np.array_equal(with_a, clip(a_tone))  # same seed, same melody: same clip
    assert not np.array_equal(with_a, clip(e_tone))  # another melody steers it elsewhere
    assert not np.array_equal(with_a, clip(None))  # and no melody is not the same as a melody
    with studio.manager.use("tiny-melody") as backend:
        assert backend.melody_model and len(backend.plan(1.5)) >= 2
        assert backend.chroma_settings == {
            "sampling_rate": 8000, "n_fft": 1024, "hop_length": 256, "chunk_length": 30, "num_chroma": 12
        }  # fmt: skip
    assert _rows(studio)[-1].params["melody"] is False and _rows(studio)[-2].params["melody"] is True


def test_each_window_is_conditioned_on_its_own_part_of_the_melody(make_studio, tiny_melody_dir: Path) -> None:
    """A clip longer than one window: window n gets the melody's chroma from its own start on, so a tune
    that changes note (A, then E) steers each window with the note under it, not the clip's first bars."""
    studio = make_studio(
        f"models:\n  - {{id: tiny-melody, tabs: [music], backend: musicgen, source: '{tiny_melody_dir}'}}\n"
    )
    rate = 22_050
    with studio.manager.use("tiny-melody") as backend:
        windows = backend.plan(1.5)
        first_new = windows[0][1] / backend.frame_rate  # seconds the first window adds
        seen: list[np.ndarray] = []
        generate = backend.model.generate

        def recording(**kwargs: object) -> object:
            seen.append(kwargs["input_features"][0].float().cpu().numpy())  # type: ignore[index]
            return generate(**kwargs)

        backend.model.generate = recording
    a_then_e = np.concatenate([_tone(440.0, first_new, rate), _tone(329.63, 4.0 - first_new, rate)])
    try:
        final = list(
            studio.music(model_id="tiny-melody", prompt="tune", params={"duration": 1.5, "seed": 1},
                         melody=_wav(a_then_e, rate))
        )[-1]  # fmt: skip
    finally:
        with studio.manager.use("tiny-melody") as backend:
            backend.model.generate = generate
    assert final.status == "ok", final.error
    assert len(seen) == len(windows) >= 2
    notes = [np.bincount(chroma.argmax(axis=1)[:4], minlength=12).argmax() for chroma in seen]
    assert notes[0] == 9, "the first window starts on the A"  # C = 0 ... A = 9
    assert notes[1:] == [4] * (len(windows) - 1), f"later windows start on the E, not the A: {notes}"
