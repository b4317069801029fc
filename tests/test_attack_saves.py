"""Attack (issue 15, item 8): a read-only media folder. Writing the clip fails, and so does the clean-up
inside the error handler; the row must still be finished (never left "running") with the reason worded for
the user, and the clean-up failure only logged. Speech, and Image for the same shape of handler."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlmodel import Session

from studio import storage
from studio.formats import png, wav
from studio.service import Studio
from tests.test_audio import MODELS as AUDIO_MODELS

READ_ONLY = OSError(30, "Read-only file system")


def _read_only_disk(monkeypatch: pytest.MonkeyPatch, module: object, writer: str) -> None:
    """Every write and every unlink fails as on a read-only mount (the tests run as root, so chmod
    alone would not stop them)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise READ_ONLY

    monkeypatch.setattr(module, writer, refuse)
    monkeypatch.setattr(Path, "unlink", refuse)


def _statuses(studio: Studio) -> list[tuple[str, str | None]]:
    with Session(studio.engine) as session:
        rows = storage.list_generations(session, limit=100)
        return [(r.status, r.error) for r in rows]


def test_speech_on_a_read_only_media_folder_finishes_the_row(
    make_studio, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    studio = make_studio(AUDIO_MODELS)
    _read_only_disk(monkeypatch, wav, "write_wav")
    with caplog.at_level(logging.WARNING):
        final = list(studio.speech(model_id="voice", text="hello there", params={"seed": 1}))[-1]
    assert final.status == "error" and final.file is None
    assert final.error == "the clip could not be saved: Read-only file system"
    assert _statuses(studio) == [("error", "the clip could not be saved: Read-only file system")]
    assert "could not remove" in caplog.text, "the failed clean-up is logged"


def test_an_empty_reason_is_never_shown(make_studio, monkeypatch: pytest.MonkeyPatch) -> None:
    studio = make_studio(AUDIO_MODELS)

    def silent(*args: object, **kwargs: object) -> None:
        raise OSError()  # no message at all

    monkeypatch.setattr(wav, "write_wav", silent)
    final = list(studio.music(model_id="band", prompt="drums", params={"seed": 1}))[-1]
    assert final.error == "the clip could not be saved: OSError"
    assert [s for s, _ in _statuses(studio)] == ["error"]


IMAGE_MODELS = """
models:
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/p
"""


def test_image_on_a_read_only_media_folder_finishes_the_row(
    make_studio, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    studio = make_studio(IMAGE_MODELS)
    real = png.save_png
    calls = {"n": 0}

    def second_fails(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the first picture is on disk: its clean-up meets the read-only folder
            monkeypatch.setattr(Path, "unlink", _raise_read_only)
            raise READ_ONLY
        real(*args, **kwargs)

    monkeypatch.setattr(png, "save_png", second_fails)
    with caplog.at_level(logging.WARNING):
        final = list(studio.image(model_id="painter", prompt="x", params={"num_images": 2}))[-1]
    assert final.status == "error" and final.files == []
    assert final.error == "the pictures could not be saved: Read-only file system"
    assert [s for s, _ in _statuses(studio)] == ["error"]
    assert "could not remove" in caplog.text


def _raise_read_only(*args: object, **kwargs: object) -> None:
    raise READ_ONLY
