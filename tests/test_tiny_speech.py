"""Audio tab, tiny tier: Bark (voice presets) and SpeechT5 (vocoder + speaker embeddings) through the real
`transformers-tts` backend, on random-weight checkpoints built by tests.helpers.tiny_speech.

Bark loads through its processor and `BarkModel.from_pretrained`; SpeechT5 through transformers'
text-to-speech pipeline with the vocoder and the speaker-embedding file named in `options:`. Random weights
make noise, so the tests check sample rates, lengths, that presets and speakers change the sound, seeds,
and the errors users see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlmodel import Session

from studio import storage
from studio.service import Studio

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="session")
def tiny_speech_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    from tests.helpers.tiny_speech import build_tiny_bark, build_tiny_speecht5

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-speech")
    return build_tiny_bark(root / "bark"), build_tiny_speecht5(root / "speecht5")


@pytest.fixture
def studio(make_studio, tiny_speech_dirs: tuple[Path, Path]) -> Studio:
    bark, t5 = tiny_speech_dirs
    np.save(t5.parent / "short.npy", np.zeros(3, dtype=np.float32))
    lines = [
        "models:",
        f"  - {{id: tiny-bark, tabs: [speech], backend: transformers-tts, source: '{bark}',"
        " options: {max_piece_chars: 24}}",
    ]
    speecht5 = {
        "t5-a": (t5 / "vocoder", t5 / "speaker_a.npy"),
        "t5-b": (t5 / "vocoder", t5 / "speaker_b.npy"),
        "t5-short": (t5 / "vocoder", t5.parent / "short.npy"),
        "t5-no-vocoder": (t5.parent / "gone", t5 / "speaker_a.npy"),
    }
    common = f"backend: transformers-tts, source: '{t5}'"
    for name, (vocoder, speaker) in speecht5.items():
        options = f"{{vocoder: '{vocoder}', speaker_embeddings: '{speaker}'}}"
        lines.append(f"  - {{id: {name}, tabs: [speech], {common}, options: {options}}}")
    lines.append(f"  - {{id: t5-bare, tabs: [speech], {common}}}")
    return make_studio("\n".join(lines) + "\n")


def _speak(studio: Studio, model: str, text: str, **params: object) -> tuple[np.ndarray, int, object]:
    final = list(studio.speech(model_id=model, text=text, params=params))[-1]
    assert final.status == "ok", final.error
    data, rate = sf.read(final.file, dtype="float32")
    assert rate == final.sample_rate and final.duration_s == pytest.approx(len(data) / rate, abs=1e-3)
    return data, rate, final


def _last_row(studio: Studio) -> storage.Generation:
    with Session(studio.engine) as session:
        return max(storage.list_generations(session, limit=100), key=lambda r: r.id or 0)


def test_bark_speaks_each_piece_at_its_codec_rate(studio: Studio) -> None:
    updates = list(
        studio.speech(model_id="tiny-bark", text="hello world. the quick brown fox!", params={"seed": 1})
    )
    final = updates[-1]
    assert final.status == "ok", final.error
    assert [(u.step, u.total) for u in updates if u.total][-1] == (
        2,
        2,
    )  # two pieces of at most 24 characters
    data, rate = sf.read(final.file)
    # 8 kHz is the tiny checkpoint's own rate (Bark's default is 24 kHz): the backend reads it from the model.
    assert rate == 8000 == final.sample_rate
    # Two pieces of whole codec frames (100 samples each; a piece's length depends on when its semantic
    # tokens end), joined with a 0.12 s pause of 960 samples.
    assert len(data) > 960 and (len(data) - 960) % 100 == 0
    assert _last_row(studio).params["sample_rate"] == 8000


def test_bark_voice_preset_changes_the_voice_and_seeds_reproduce(studio: Studio) -> None:
    plain = _speak(studio, "tiny-bark", "hello world.", seed=5)[0]
    voiced = _speak(studio, "tiny-bark", "hello world.", seed=5, voice="v2/tiny_speaker")[0]
    again = _speak(studio, "tiny-bark", "hello world.", seed=5, voice="v2/tiny_speaker")[0]
    assert np.array_equal(voiced, again)
    assert len(voiced) == len(plain) and not np.array_equal(
        voiced, plain
    )  # the preset's history prompt is used
    with studio.manager.use("tiny-bark") as backend:
        assert backend.voices() == ["v2/tiny_speaker"]


def test_bark_refuses_presets_it_does_not_list_and_never_reads_paths(studio: Studio, tmp_path: Path) -> None:
    final = list(studio.speech(model_id="tiny-bark", text="hi", params={"voice": "v2/en_speaker_6"}))[-1]
    assert final.status == "error"
    assert "no voice preset 'v2/en_speaker_6'" in (final.error or "") and "v2/tiny_speaker" in (
        final.error or ""
    )
    # BarkProcessor np.load()s any other name as a file: a preset file on the server must not be reachable.
    np.savez(tmp_path / "planted.npz", semantic_prompt=np.zeros(4), coarse_prompt=np.zeros((2, 4)))
    path = str(tmp_path / "planted")
    final = list(studio.speech(model_id="tiny-bark", text="hi", params={"voice": path}))[-1]
    assert final.status == "error" and "no voice preset" in (final.error or "")
    assert _last_row(studio).status == "error"


def test_speecht5_speaks_with_the_vocoder_rate_and_the_speaker_embedding(
    studio: Studio, tiny_speech_dirs: tuple[Path, Path]
) -> None:
    from transformers import SpeechT5Tokenizer

    a, rate, _ = _speak(studio, "t5-a", "hello world.", seed=3)
    assert rate == 16_000  # the vocoder's rate
    # The stop head is biased off, so SpeechT5 runs to its limit: 20 mel frames a text token, 16 samples each.
    tokens = len(SpeechT5Tokenizer.from_pretrained(tiny_speech_dirs[1])("hello world.").input_ids)
    assert len(a) == tokens * 20 * 16 and np.abs(a).max() > 0.01  # audible, not rounded away to 16-bit zeros
    assert np.array_equal(a, _speak(studio, "t5-a", "hello world.", seed=3)[0])
    b = _speak(studio, "t5-b", "hello world.", seed=3)[0]
    assert len(b) == len(a) and not np.array_equal(a, b)  # another speaker embedding, another voice


def test_speecht5_configuration_errors_are_clear(studio: Studio) -> None:
    cases = {
        "t5-bare": "set `options: {vocoder:",
        "t5-short": "must hold 8 finite numbers",
        "t5-no-vocoder": "its vocoder",
    }
    for model, message in cases.items():
        final = list(studio.speech(model_id=model, text="hello"))[-1]
        assert final.status == "error" and message in (final.error or ""), (model, final.error)
        assert _last_row(studio).error == final.error
    final = list(studio.speech(model_id="t5-a", text="hello", params={"speed": 1.5}))[-1]
    assert final.status == "error" and "no speaking-rate control" in (final.error or "")
