"""The Train tab served for real on the tiny checkpoint, through its API endpoints: a run streams to a
registered variant that the Chat and Code model lists get at once; a bad setting is refused with its range;
the blind comparison with the base, Promote (the variant first in the Chat tab, also after a restart) and
Discard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from studio import Settings
from studio.service import Studio
from tests.helpers.served import serving

pytestmark = pytest.mark.tiny

SETTINGS = [0, 0.1, 8, 0, 1, 2, 2, 256, 0.15, 0, 0]  # lr, beta, rank, alpha, epochs, max steps, batch, ...


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Studio, Client]]:
    from tests.conftest import tiny_models_yaml, write_models

    folder = tmp_path_factory.mktemp("train-tab")
    body = tiny_models_yaml(tiny_model_dir, "{do_sample: true, max_new_tokens: 8}")
    settings = Settings.from_env(models_file=write_models(folder, body), data_dir=folder / "data")
    studio = Studio.from_settings(settings)
    for i in range(5):  # liked answers, for SFT
        *_, turn = studio.chat(model_id="tiny", message=f"Say something about {i}.", params={"seed": i})
        studio.rate(turn.generation_id, "up")
    try:
        with serving(studio) as server:
            yield studio, Client(server.url, verbose=False)
    finally:
        studio.close()


def _choices(update: dict) -> list[str]:
    return [value for _label, value in update["choices"]]


def test_a_run_from_the_tab_registers_a_variant_the_chat_tab_lists_at_once(served) -> None:
    studio, client = served
    out = client.predict("sft", "tiny", "", "", False, *SETTINGS, api_name="/train")
    progress, loss, _extra, metrics, runs, variant, _note, chat_models, code_models, *scorers = out
    name = variant["value"]
    assert name.startswith("tiny+sft-") and f"**{name}** is ready" in progress
    assert name in _choices(chat_models) and name in _choices(code_models)
    assert len(scorers) == 2 and all(
        name not in _choices(s) for s in scorers
    )  # an SFT variant scores nothing
    assert [(step, metric) for step, metric, _value in loss["data"]] == [
        (1, "loss"),
        (2, "loss"),
    ]  # the curve
    assert "Latest: loss" in metrics and runs["data"][0][-1] == name
    assert name in {m.id for m in studio.models("chat")}


def test_a_bad_setting_is_refused_with_its_range(served) -> None:
    _, client = served
    settings = [5.0, *SETTINGS[1:]]
    progress, *_ = client.predict("dpo", "tiny", "", "", False, *settings, api_name="/train")
    assert progress.startswith(
        "**Not started:** invalid training settings: learning_rate=5.0 is out of range"
    )


def test_compare_promote_and_discard(served, tiny_model_dir: Path) -> None:
    studio, client = served
    final = list(studio.train(method="sft", model_id="tiny", params={"max_steps": 1}))[-1]
    name = final.variant
    asked, text_a, text_b, reveal, *_pictures = client.predict(
        name, "Hello, how are you?", api_name="/train_compare"
    )
    assert asked == "**Prompt:** Hello, how are you?" and text_a and text_b and reveal == ""
    # Blind: A and B are the variant and its base, in some order, with one seed; a vote is an A/B preference.
    a, b = studio.compare_with_base(name, prompt="Hello, how are you?")
    assert {a.model, b.model} == {name, "tiny"} and a.params["seed"] == b.params["seed"]
    assert studio.prefer(a.generation_id, b.generation_id, "a") == "a"
    note, chat_models, _code, *_scorers = client.predict(name, api_name="/promote_variant")
    assert "is now the chat tab's default" in note and _choices(chat_models)[0] == name
    assert studio.models("chat")[0].id == name and studio.models("code")[0].id == "tiny"
    again = Studio.from_settings(studio.settings)
    try:
        assert again.models("chat")[0].id == name  # promoted for good
    finally:
        again.close()
    note, variants, chat_models, _code, *_scorers = client.predict(name, api_name="/discard_variant")
    assert "deleted" in note and name not in _choices(chat_models) and name not in _choices(variants)
    assert not Path(final.adapter).exists() and studio.models("chat")[0].id == "tiny"
