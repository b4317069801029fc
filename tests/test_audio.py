"""Audio tab, fast tier: formats.wav's pieces, files and checks, and the AudioTab service over fake backends.

The fakes here make tones whose pitch depends on the seed, so the service's rows, files, votes, failures and
stops are checked quickly; the real backends are proved in test_tiny_audio.py and test_audio_bundled.py.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from sqlmodel import Session

from studio import storage
from studio.backends import AudioOutput, Backend, BackendError, Progress, Request, register
from studio.backends.params import MusicParams, SpeechParams
from studio.formats import wav
from studio.service import Studio, StudioError
from tests.helpers.fakes import fake_weights

RATE = 8000


def _tone(seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + seed % 500) * t)).astype(np.float32)


@register
class FakeSpeech(Backend):
    """0.1 s of tone per word; 'FAIL' raises; 'SLOW' waits for Stop between words."""

    kind = "fake-speech"
    tabs = frozenset({"speech"})
    Params = SpeechParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        if "missing" in self.spec.source:
            raise BackendError(
                f"model {self.spec.id!r} is not downloaded; run `studio models pull {self.spec.id}`"
            )

    def generate(self, request: Request) -> Generator[Progress | AudioOutput, None, None]:
        params = request.params
        assert isinstance(params, SpeechParams) and params.seed is not None
        if "FAIL" in request.prompt:
            raise BackendError("the fake voice failed on purpose")
        words = request.prompt.split() * (1000 if "SLOW" in request.prompt else 1)
        for i in range(len(words)):
            if request.stop.wait(0.002 if "SLOW" in request.prompt else 0):
                return
            yield Progress(i + 1, len(words))
        yield AudioOutput(_tone(0.1 * len(words) / params.speed, params.seed), RATE, params.seed)


@register
class FakeMusic(Backend):
    """`duration` seconds of a stereo tone, so (channels, n) clips are covered too."""

    kind = "fake-music"
    tabs = frozenset({"music"})
    Params = MusicParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[Progress | AudioOutput, None, None]:
        params = request.params
        assert isinstance(params, MusicParams) and params.seed is not None
        yield Progress(1, 1)
        tone = _tone(params.duration, params.seed)
        yield AudioOutput(np.stack([tone, tone * 0.5]), RATE, params.seed)


MODELS = """
models:
  - id: voice
    tabs: [speech]
    backend: fake-speech
    source: fake/voice
  - id: gone
    tabs: [speech]
    backend: fake-speech
    source: fake/missing
  - id: band
    tabs: [music]
    backend: fake-music
    source: fake/band
    defaults: {duration: 1.5}
"""


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio(MODELS)


def _rows(studio: Studio) -> list[storage.Generation]:
    with Session(studio.engine) as session:
        return sorted(storage.list_generations(session, limit=100), key=lambda r: r.id or 0)


# -- studio.formats.wav -------------------------------------------------------------------------------------
def test_split_sentences_packs_sentences_and_cuts_long_ones_at_boundaries() -> None:
    text = "Hello there. How are you? I am fine!\nNew line here. " + "word " * 100
    pieces = wav.split_sentences(text, 60)
    assert pieces[0] == "Hello there. How are you? I am fine! New line here."  # short sentences packed
    assert pieces[1] == " ".join(["word"] * 12)
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == text.split()  # nothing lost, nothing added
    clauses = wav.split_sentences("one two three, four five six; seven eight nine", 20)
    assert clauses == ["one two three,", "four five six;", "seven eight nine"]
    assert wav.split_sentences("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert wav.split_sentences("   \n ") == []


def test_save_wav_round_trips_mono_and_stereo_and_refuses_nan(tmp_path: Path) -> None:
    mono = _tone(0.5, 1)
    path = wav.save_wav(mono, RATE, tmp_path / "a" / "mono.wav")
    data, rate = sf.read(path)
    assert rate == RATE and data.shape == (4000,) and np.allclose(data, mono, atol=1e-4)
    stereo = np.stack([mono, -mono])
    data, _ = sf.read(wav.save_wav(stereo, RATE, tmp_path / "stereo.wav"))
    assert data.shape == (4000, 2)
    with pytest.raises(ValueError, match="not finite"):
        wav.save_wav(np.array([0.0, math.nan], dtype=np.float32), RATE, tmp_path / "bad.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "stereo.wav"]  # no temp file left behind


def test_waveform_png_is_a_picture(tmp_path: Path) -> None:
    path = wav.waveform_png(_tone(1.0, 3), tmp_path / "w.png", width=200, height=50)
    with Image.open(path) as picture:
        assert picture.size == (200, 50)
        assert len(set(picture.getdata())) > 1  # something was drawn
    wav.waveform_png(np.zeros(0), tmp_path / "empty.png")  # an empty clip still gets a picture


def _wav_bytes(seconds: float, rate: int = RATE, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _tone(seconds, 0) if rate == RATE else np.zeros(int(seconds * rate)), rate, format=fmt)
    return buffer.getvalue()


def test_load_melody_accepts_audio_and_refuses_bad_uploads(tmp_path: Path) -> None:
    samples, rate = wav.load_melody(_wav_bytes(0.25))
    assert rate == RATE and samples.shape == (2000,) and samples.dtype == np.float32
    flac = tmp_path / "m.flac"
    flac.write_bytes(_wav_bytes(0.25, fmt="FLAC"))
    assert wav.load_melody(flac)[0].shape == (2000,)
    with pytest.raises(ValueError, match="could not be read"):
        wav.load_melody(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match="could not be read"):
        wav.load_melody(_wav_bytes(0.25)[:30])  # truncated
    with pytest.raises(ValueError, match="empty"):
        wav.load_melody(b"")
    with pytest.raises(ValueError, match="the limit is 60 s"):
        wav.load_melody(_wav_bytes(61, rate=1000))
    with pytest.raises(ValueError, match="could not be read"):
        wav.load_melody(tmp_path / "nope.wav")


# -- the service ----------------------------------------------------------------------------------------
def test_speech_saves_a_wav_and_a_picture_with_duration_and_rate_in_the_row(studio: Studio) -> None:
    updates = list(studio.speech(model_id="voice", text="one two three four", params={"seed": 9, "speed": 2}))
    assert [u.step for u in updates if not u.done and u.total] == [1, 2, 3, 4]
    final = updates[-1]
    assert final.done and final.status == "ok" and final.seed == 9
    assert final.duration_s == pytest.approx(0.2) and final.sample_rate == RATE
    data, rate = sf.read(final.file)
    assert rate == RATE and len(data) == 1600
    assert final.picture is not None and final.picture.suffix == ".png" and final.picture.exists()
    (row,) = _rows(studio)
    assert (row.tab, row.model_id, row.prompt, row.status, row.seed) == (
        "speech",
        "voice",
        "one two three four",
        "ok",
        9,
    )
    assert row.params["duration_s"] == pytest.approx(0.2) and row.params["sample_rate"] == RATE
    assert row.params["speed"] == 2 and row.params["melody"] is False
    assert [studio.media_path(f) for f in row.files] == [final.file, final.picture]
    assert row.duration_ms is not None and row.duration_ms > 0


def test_music_clip_votes_recent_list_and_reuse(studio: Studio) -> None:
    final = list(studio.music(model_id="band", prompt="calm piano", params={"seed": 4}))[-1]
    assert final.status == "ok" and final.duration_s == pytest.approx(1.5)
    data, _ = sf.read(final.file)
    assert data.shape == (12000, 2)
    gid = final.generation_id
    assert gid is not None
    studio.rate(gid, "up")
    assert studio.rating(gid) == 1
    studio.rate(gid, "down")
    assert studio.rating(gid) == -1
    clips = studio.recent_clips("music")
    assert [c.generation_id for c in clips] == [gid] and clips[0].rating == -1
    assert clips[0].duration_s == pytest.approx(1.5) and clips[0].sample_rate == RATE
    assert studio.recent_clips("speech") == []
    settings = studio.generation_settings(gid)
    assert settings["model"] == "band" and settings["prompt"] == "calm piano"
    assert settings["params"]["seed"] == 4 and settings["params"]["duration"] == 1.5
    redo = {k: v for k, v in settings["params"].items() if k in MusicParams.model_fields}
    again = list(studio.music(model_id="band", prompt="calm piano", params=redo))
    assert np.array_equal(sf.read(again[-1].file)[0], data)  # same settings and seed: the same clip


@pytest.mark.parametrize(
    ("tab", "model", "text", "params", "message"),
    [
        ("speech", "voice", "", {}, "the text to speak is empty"),
        ("speech", "voice", "   \n", {}, "the text to speak is empty"),
        ("speech", "voice", "x" * 5001, {}, "5001 characters long; the limit is 5000"),
        ("speech", "voice", "hi", {"speed": math.nan}, "speed=nan: must be a finite number"),
        ("speech", "voice", "hi", {"speed": 9}, "valid: in [0.25, 4.0]"),
        ("music", "band", "", {}, "the music prompt is empty"),
        ("music", "band", "drums", {"duration": 0}, "duration=0: input should be greater than 0"),
        ("music", "band", "drums", {"duration": -3}, "valid: in (0.0, 300.0]"),
        ("music", "band", "drums", {"duration": 301}, "valid: in (0.0, 300.0]"),
        ("music", "band", "drums", {"duration": math.inf}, "must be a finite number"),
        ("music", "band", "drums", {"guidance": math.nan}, "must be a finite number"),
        ("music", "band", "drums", {"loudness": 3}, "unknown parameter 'loudness'"),
        ("music", "voice", "drums", {}, "does not serve the music tab"),
        ("music", "nope", "drums", {}, "unknown model 'nope'"),
    ],
)
def test_bad_input_is_refused_clearly_and_stores_nothing(
    studio: Studio, tab: str, model: str, text: str, params: dict, message: str
) -> None:
    with pytest.raises(StudioError) as err:
        if tab == "speech":
            list(studio.speech(model_id=model, text=text, params=params))
        else:
            list(studio.music(model_id=model, prompt=text, params=params))
    assert message in str(err.value)
    assert _rows(studio) == []


def test_a_corrupt_melody_is_refused_before_anything_runs(studio: Studio, tmp_path: Path) -> None:
    bad = tmp_path / "melody.wav"
    bad.write_bytes(b"this is not audio at all")
    with pytest.raises(StudioError, match="the melody clip could not be read"):
        studio.music(model_id="band", prompt="drums", melody=str(bad))
    assert _rows(studio) == []


def test_failures_and_missing_models_are_stored_with_their_error(studio: Studio) -> None:
    final = list(studio.speech(model_id="voice", text="please FAIL now"))[-1]
    assert (
        final.status == "error" and final.error == "the fake voice failed on purpose" and final.file is None
    )
    # A model that is not downloaded is refused before a row is begun (issue 14: at once, with the fix).
    with pytest.raises(StudioError, match="run `studio models pull gone`"):
        list(studio.speech(model_id="gone", text="hello"))
    rows = _rows(studio)
    assert [(r.status, r.files) for r in rows] == [("error", [])]
    assert studio.recent_clips("speech") == []


def test_stop_ends_a_clip_and_stores_it_as_stopped(studio: Studio) -> None:
    updates = studio.speech(model_id="voice", text="SLOW words here", run_key="k1")
    seen = []
    for update in updates:
        seen.append(update)
        if update.step == 3:
            assert studio.cancel("k1")
    final = seen[-1]
    assert final.status == "stopped" and final.file is None and final.step < 3000
    (row,) = _rows(studio)
    assert row.status == "stopped" and row.files == []
    assert not studio.cancel("k1")  # the run is over


@pytest.mark.parametrize(
    "step", ["waveform_png", "write_wav"]
)  # the picture (this thread), the WAV (a worker)
def test_a_failed_save_is_recorded_and_leaves_no_file(
    studio: Studio, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    real = getattr(wav, step)

    def full_disk(*args: object, **kwargs: object) -> Path:
        if step == "write_wav":  # it leaves its temporary file to the caller (the picture cleans up itself)
            real(*args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wav, step, full_disk)
    final = list(studio.speech(model_id="voice", text="hello there", params={"seed": 1}))[-1]
    assert final.status == "error" and "could not be saved" in (final.error or "") and final.file is None
    (row,) = _rows(studio)
    assert row.status == "error" and row.files == [] and "No space left" in (row.error or "")
    media = studio.settings.media_dir
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


def test_generate_for_scripts_returns_the_clip(studio: Studio) -> None:
    result = studio.generate(tab="speech", model_id="voice", prompt="hello world", params={"seed": 5})
    assert result.status == "ok" and result.tab == "speech" and result.fields["seed"] == 5
    assert len(result.files) == 1 and result.files[0].endswith(".wav") and Path(result.files[0]).exists()
    assert result.fields["picture"].endswith(".png") and result.fields["sample_rate"] == RATE
    assert result.params["duration_s"] == pytest.approx(0.2)


def test_cli_generate_speech_prints_the_wav_path(make_studio, capsys: pytest.CaptureFixture[str]) -> None:
    from studio import cli

    studio = make_studio(MODELS)
    args = ["--models", str(studio.config.path), "--data-dir", str(studio.settings.data_dir)]
    assert cli.main(["generate", "music", *args, "--model", "band", "--param", "duration=0.5", "drums"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.suffix == ".wav" and sf.info(str(path)).duration == pytest.approx(0.5)
    assert cli.main(["generate", "speech", *args, "--model", "voice", "--json", "hi there"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert (
        result["status"] == "ok"
        and result["sample_rate"] == RATE
        and result["duration_s"] == pytest.approx(0.2)
    )
    assert cli.main(["generate", "music", *args, "--model", "band", "--param", "duration=0", "drums"]) == 2
    assert "duration=0" in capsys.readouterr().err
    assert cli.main(["generate", "speech", *args, "--model", "voice", "FAIL"]) == 1


def test_concurrent_stop_keys_do_not_cross(studio: Studio) -> None:
    done = threading.Event()
    results: list[str] = []

    def slow() -> None:
        results.append(list(studio.speech(model_id="voice", text="SLOW a", run_key="a"))[-1].status)
        done.set()

    worker = threading.Thread(target=slow)
    worker.start()
    assert not studio.cancel("b")
    deadline = time.monotonic() + 30  # a run that never starts fails here instead of hanging the suite
    while not studio.cancel("a"):
        assert time.monotonic() < deadline, "run 'a' never became stoppable"
        threading.Event().wait(0.005)
    worker.join(10)
    assert results == ["stopped"]


def test_a_clip_is_stored_as_running_while_it_is_made_and_interrupted_after_a_crash(studio: Studio) -> None:
    updates = studio.speech(model_id="voice", text="SLOW words here", run_key="k2")
    for update in updates:
        if update.step == 3:
            break  # mid-clip: the job's row is already stored, as running
    with Session(studio.engine) as session:
        (row,) = storage.list_generations(session, include_running=True)
        assert row.status == "running" and row.tab == "speech" and row.files == []
    assert studio.recover_interrupted() == 0, "a live process's leased row is left alone"
    with Session(studio.engine) as session:  # as if its process died and the lease ran out
        row.lease_until = storage.utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    restarted = Studio.from_settings(studio.settings)  # the next start (or another process)
    try:
        assert restarted.recover_interrupted() == 1
    finally:
        restarted.close()
    with Session(studio.engine) as session:
        (row,) = storage.list_generations(session)
        assert row.status == "interrupted"
    updates.close()


def test_an_out_of_memory_error_is_explained_and_stored(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    class OutOfMemoryError(RuntimeError):  # matched by class name, as torch's is, without importing torch
        pass

    def no_memory(self: FakeSpeech, request: Request) -> Generator[Progress, None, None]:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield

    monkeypatch.setattr(FakeSpeech, "generate", no_memory)
    final = list(studio.speech(model_id="voice", text="hello", params={"seed": 1}))[-1]
    assert final.status == "error" and "out of memory" in (final.error or "").lower()
    (row,) = _rows(studio)
    assert row.status == "error" and "out of memory" in (row.error or "").lower()


# -- melody conditioning's chroma (studio.formats.wav.melody_chroma), against transformers' filters and torch
def _pure_tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize(
    ("rate", "freq", "pitch_class"), [(32_000, 440.0, 9), (8000, 261.63, 0), (44_100, 392.0, 7)]
)
def test_melody_chroma_finds_the_pitch_of_a_tone_at_any_rate(
    rate: int, freq: float, pitch_class: int
) -> None:
    from transformers.audio_utils import chroma_filter_bank

    from studio.formats.wav import melody_chroma

    chroma = melody_chroma(
        _pure_tone(freq, 3.0, rate), rate, filter_bank=chroma_filter_bank
    )  # Meta's settings
    assert chroma.shape == (24, 12) and np.all(chroma.sum(axis=1) == 1)  # one-hot frames, as the extractor's
    assert set(chroma.argmax(axis=1)) == {pitch_class}  # C = 0 ... A = 9


def test_melody_chroma_matches_a_torch_stft_spectrogram() -> None:
    """The numpy STFT against torch.stft with torchaudio's Spectrogram settings (centre, reflect, periodic
    Hann, power 2 over the window's energy) and the extractor's steps (filters, one-hot argmax)."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    from studio.formats.wav import melody_chroma

    rng = np.random.default_rng(0)
    clip = (rng.standard_normal(8000 * 2) * 0.1 + _pure_tone(330.0, 2.0, 8000)).astype(np.float32)
    ours = melody_chroma(
        clip, 8000, filter_bank=chroma_filter_bank, sampling_rate=8000, n_fft=1024, hop_length=256
    )
    window = torch.hann_window(1024)
    spec = torch.stft(torch.from_numpy(clip), 1024, 256, window=window, center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2 / window.pow(2).sum()  # fmt: skip
    filters = torch.from_numpy(
        chroma_filter_bank(sampling_rate=8000, num_frequency_bins=1024, tuning=0, num_chroma=12)
    )
    theirs = torch.einsum("cf,ft->tc", filters.float(), spec).argmax(-1).numpy()
    assert ours.shape == (spec.shape[1], 12) and np.array_equal(ours.argmax(axis=1), theirs)
