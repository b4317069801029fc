"""The Models tab served for real (fake backends) and the CLI: list with status and memory, load with
progress lines, unload, `studio models list` and `studio serve --preload` refusing unknown ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from studio.cli import main
from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.served import served_studio, write_models


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, Client]]:
    with served_studio(tmp_path_factory.mktemp("models-ui"), FAKE_MODELS) as (studio, url):
        yield studio, Client(url, verbose=False)


def _status(table: dict) -> dict[str, str]:
    return {row[0]: row[3] for row in table["data"]}


def test_models_tab_lists_loads_and_unloads(served) -> None:
    studio, client = served
    studio.manager.unload_all()
    table, summary = client.predict(api_name="/models_list")
    assert table["headers"][:5] == ["Model", "Tabs", "Backend", "Status", "Memory"]
    assert _status(table) == {"fake": "ready", "fake-2": "ready"}
    assert "RAM:" in summary and "used by models" in summary

    progress, table, _ = client.predict("fake", api_name="/load_model")
    assert progress.startswith("fake loaded in") and _status(table)["fake"] == "loaded"
    assert studio.manager.loaded() == ["fake"]

    progress, table, _ = client.predict("fake", api_name="/unload_model")
    assert progress == "fake unloaded" and _status(table)["fake"] == "ready"
    progress, _, _ = client.predict("fake", api_name="/unload_model")
    assert progress == "fake is not loaded"


def test_models_tab_reports_a_failed_load(tmp_path: Path) -> None:
    from studio import Settings

    body = FAKE_MODELS + "  - id: gone\n    tabs: [chat]\n    backend: fake-chat\n    source: fake/missing\n"
    studio = Studio.from_settings(
        Settings.from_env(models_file=write_models(tmp_path, body), data_dir=tmp_path)
    )
    try:
        from studio.ui.models import table

        with pytest.raises(Exception, match="could not load gone: model 'gone' is not downloaded"):
            list(studio.load_model("gone"))
        assert {r[0]: r[3] for r in table(studio)}["gone"] == "not downloaded"
    finally:
        studio.close()


def test_cli_models_list_shows_memory_and_the_budget(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "cpu=3GB")
    body = FAKE_MODELS.replace("source: fake/other\n", "source: fake/other\n    memory_gb: 1.5\n")
    args = ["--models", str(write_models(tmp_path, body)), "--data-dir", str(tmp_path / "d")]
    assert main(["models", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "~1.50 GB" in out and "memory budget for RAM (CPU models): 3.00 GB" in out
    assert main(["models", "list", "--json", *args]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fake-2"]["memory_bytes"] == int(1.5 * 1024**3) and rows["fake"]["status"] == "ready"


def test_serve_preload_refuses_unknown_ids_before_serving(capsys, tmp_path: Path) -> None:
    args = ["--models", str(write_models(tmp_path, FAKE_MODELS)), "--data-dir", str(tmp_path / "d")]
    assert main(["serve", "--preload", "fake", "nope", *args]) == 2
    assert "unknown model(s) for --preload: nope; known: fake, fake-2" in capsys.readouterr().err


def test_preload_loads_in_order_and_warns_on_failure(make_studio, capsys) -> None:
    from studio.cli.models import preload

    body = FAKE_MODELS + "  - id: gone\n    tabs: [chat]\n    backend: fake-chat\n    source: fake/missing\n"
    studio = make_studio(body)
    assert preload(studio, ["fake-2", "gone", "fake"]) == 0
    assert studio.manager.loaded() == ["fake-2", "fake"]
    assert "warning: could not preload gone: model 'gone' is not downloaded" in capsys.readouterr().err


def test_every_tabs_model_picker_shows_the_status_of_now_when_it_opens(fake_studio: Studio) -> None:
    from studio.ui import build_app

    fake_studio.manager.unload_all()
    app = build_app(fake_studio)
    refreshers = [getattr(b.fn, "__qualname__", "") for b in app.fns.values()]
    pickers = [
        b for b in app.fns.values() if getattr(b.fn, "__qualname__", "") == "model_picker.<locals>.current"
    ]
    assert len(pickers) == 2  # the fake models serve Chat and Code; each picker refreshes on focus
    # So do the A/B panels' two pickers in those tabs (variants trained since the page loaded appear).
    assert refreshers.count("compare_panel.<locals>.current") == 4
    picker = pickers[0].fn
    assert ("fake (ready)", "fake") in picker("fake").choices
    fake_studio.manager.preload("fake")  # another tab (or the Models tab) loads it meanwhile
    update = picker("fake")
    assert ("fake (loaded)", "fake") in update.choices and update.value == "fake"
