"""Attack (issue 15, item 10): disk use without limit. Before, every export (refused ones too) left a
`studio-export-*` folder in the system temp folder, code downloads piled up in /tmp/studio-code, and
uploads stayed in Gradio's cache forever. Now exports and code files go to the data dir's own temp folder,
a refused export leaves nothing, a served export's zip is removed once Gradio has its copy, and a janitor
sweeps the temp folder and Gradio's upload cache at start and on a schedule, by age and total size."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from gradio_client import Client

from studio.service import Studio, StudioError
from studio.service.tempfiles import Janitor, sweep
from tests.conftest import FAKE_MODELS
from tests.helpers.served import serving


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _system_exports() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("studio-export-*")}


def test_a_refused_export_leaves_nothing(fake_studio: Studio) -> None:
    before = _system_exports()
    for _ in range(3):
        with pytest.raises(StudioError, match="nothing to export"):
            fake_studio.export_archive("kto")
    assert _system_exports() == before, "refused exports left folders in the system temp folder"
    assert _files(fake_studio.settings.temp_dir) == []
    assert not [p for p in fake_studio.settings.temp_dir.rglob("*") if p.is_dir() and p.name != "exports"]


def test_an_export_goes_to_the_data_dirs_temp_folder_and_is_discarded(fake_studio: Studio) -> None:
    *_, final = fake_studio.chat(model_id="fake", message="zip me")
    fake_studio.rate(final.generation_id or 0, "up")
    archive, _ = fake_studio.export_archive("kto")
    assert archive.is_relative_to(fake_studio.settings.temp_dir / "exports")
    fake_studio.discard_export(archive)
    assert not archive.exists() and _files(fake_studio.settings.temp_dir) == []
    fake_studio.discard_export(fake_studio.settings.models_file)  # anything else is left alone
    assert fake_studio.settings.models_file.exists()


def test_sweep_removes_old_files_then_the_oldest_beyond_the_cap(tmp_path: Path) -> None:
    now = time.time()
    ages = {"old.bin": 90_000, "mid.bin": 300, "new.bin": 10}
    for name, age in ages.items():
        path = tmp_path / "up" / name[:3] / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - age, now - age))
    swept = sweep([tmp_path / "up"], max_age_s=86_400, cap_bytes=1500, now=now)
    assert swept.removed == 2 and swept.kept_bytes == 1000  # old by age, mid by the cap
    assert [p.name for p in _files(tmp_path / "up")] == ["new.bin"]


def test_the_janitor_cleans_at_start(tmp_path: Path) -> None:
    stale = tmp_path / "cache" / "abc" / "upload.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    janitor = Janitor([tmp_path / "cache"], max_age_s=3600, cap_bytes=10**9)
    try:
        assert janitor.start().removed == 1 and not stale.exists()
    finally:
        janitor.stop()


def test_the_served_export_leaves_no_copy_in_the_data_dir(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_TEMP_MAX_AGE", "60")
    studio = make_studio(FAKE_MODELS)
    *_, final = studio.chat(model_id="fake", message="zip me")
    studio.rate(final.generation_id or 0, "up")
    stale = studio.settings.temp_dir / "code" / "old" / "studio-1.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("print(1)\n")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with serving(studio) as server:
        assert not stale.exists(), "the start-up sweep removed an old temp file"
        client = Client(server.url, verbose=False)
        note, archive = client.predict("kto", "", "", 0, False, api_name="/export")
        assert note.startswith("Exported kto") and Path(archive).is_file()  # the client's download
        deadline = time.time() + 10
        while _files(studio.settings.temp_dir):
            assert time.time() < deadline, _files(studio.settings.temp_dir)
            time.sleep(0.1)
