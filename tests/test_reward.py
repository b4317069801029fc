"""Reward models and Best of n, end to end on tiny checkpoints through the service.

A reward model trained from the studio's votes (TRL's RewardTrainer, LoRA on a sequence-classification
head) becomes a scorer: listed with kind `reward`, kept across a restart, usable for Best of n, deletable.
A Hub-style scorer (a tiny random sequence-classification checkpoint built here) picks the best of n Chat
and Code answers: every candidate is stored as an alternative of the turn with its seed and score, the
best is the active answer, the CLI's JSON lists the candidates, and a vote for a candidate the scorer did
not choose is stored as a preference. Bad input: a scorer from the wrong tab, n out of range, no scorer,
a scorer that fails (the first candidate is shown, with a notice), too few pairs to train.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from studio import Settings, storage
from studio.errors import StudioError
from studio.service import ChatUpdate, Studio

pytestmark = pytest.mark.tiny

BEST = {"do_sample": True, "max_new_tokens": 6}


def _models(tiny: Path, scorer: Path, two_labels: Path) -> str:
    return f"""
models:
  - id: tiny
    tabs: [chat, code]
    backend: transformers-chat
    source: {tiny}
    defaults: {{do_sample: true, max_new_tokens: 8}}
  - id: judge
    tabs: [scorer]
    backend: transformers-reward
    source: {scorer}
  - id: two-labels
    tabs: [scorer]
    backend: transformers-reward
    source: {two_labels}
"""


@pytest.fixture(scope="module")
def place(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[Settings, Studio]]:
    from tests.conftest import write_models
    from tests.helpers.tiny_chat import build_tiny_reward_model

    folder = tmp_path_factory.mktemp("reward")
    scorer = build_tiny_reward_model(folder / "judge", tiny_model_dir)
    two = build_tiny_reward_model(folder / "two", tiny_model_dir, labels=2)
    settings = Settings.from_env(
        models_file=write_models(folder, _models(tiny_model_dir, scorer, two)), data_dir=folder / "data"
    )
    studio = Studio.from_settings(settings)
    for i in range(8):
        a, b = studio.compare(
            tab="chat",
            prompt=f"Tell me about the number {i}.",
            a={"model": "tiny", "params": {"seed": i}},
            b={"model": "tiny", "params": {"seed": 100 + i}},
        )
        studio.prefer(a.generation_id, b.generation_id, "a")
    yield settings, studio
    studio.close()


def _run(updates: Iterator[ChatUpdate]) -> tuple[ChatUpdate, list[ChatUpdate]]:
    seen = list(updates)
    assert seen[-1].done and all(not u.done for u in seen[:-1])
    return seen[-1], seen


def _rows(studio: Studio, ids: list[int]) -> list[storage.Generation]:
    with Session(studio.engine) as session:
        return [storage.get_generation(session, generation_id=i) for i in ids]  # type: ignore[misc]


def test_best_of_n_stores_every_candidate_and_shows_the_best(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    asked = {**BEST, "best_of": 3, "scorer": "judge", "seed": 40}
    final, seen = _run(studio.chat(model_id="tiny", message="Hello there", params=asked))
    assert final.status == "ok" and final.generation_id is not None
    shown = [n for u in seen for n in u.notices]
    assert {"candidate 1 of 3", "candidate 2 of 3", "candidate 3 of 3"} <= set(shown)
    assert any(n.startswith("scoring 3 candidate(s) with judge") for n in shown)
    [row] = _rows(studio, [final.generation_id])
    round_ = row.params["best_of_round"]
    candidates = round_["candidates"]
    assert [c["seed"] for c in candidates] == [40, 41, 42] and round_["chosen"] == final.generation_id
    scores = {c["generation_id"]: c["score"] for c in candidates}
    assert all(isinstance(s, float) for s in scores.values())
    assert scores[final.generation_id] == max(scores.values()) == row.score
    assert final.notices[0].startswith("best of 3 by judge: candidate") and "tokens in" in final.notices[0]
    # The candidates are alternatives of one turn: the shown one active, the answer browser pages them.
    [turn] = studio.conversation(final.conversation_id or 0)
    assert turn.generation_id == final.generation_id and turn.answers == 3
    assert [r.turn_index for r in _rows(studio, list(scores))] == [0, 0, 0]
    # A thumbs up on a candidate the scorer ranked lower is a preference over the scorer's choice.
    other = next(i for i in scores if i != final.generation_id)
    studio.rate(other, "up")
    studio.rate(final.generation_id, "up")  # agreeing with the scorer adds nothing
    with Session(studio.engine) as session:
        votes = session.exec(
            select(storage.Preference).where(storage.Preference.generation_a_id == other)
        ).all()
    assert [(v.generation_b_id, v.choice) for v in votes] == [(final.generation_id, "a")]


def test_best_of_n_in_the_code_tab_and_the_cli(place: tuple[Settings, Studio], capsys) -> None:
    settings, studio = place
    asked = {**BEST, "best_of": 2, "scorer": "judge"}
    final, _ = _run(studio.code(model_id="tiny", text="add two numbers", params=asked))
    [row] = _rows(studio, [final.generation_id or 0])
    assert row.tab == "code" and len(row.params["best_of_round"]["candidates"]) == 2

    from studio.cli import main

    args = ["--models", str(settings.models_file), "--data-dir", str(settings.data_dir)]
    params = ["--param", "best_of=2", "--param", "scorer=judge", "--param", "max_new_tokens=4"]
    assert main(["generate", "chat", "Hi", "--model", "tiny", *params, "--json", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] == out["generation_id"]
    assert [set(c) for c in out["candidates"]] == [{"generation_id", "score", "seed"}] * 2
    assert len({c["seed"] for c in out["candidates"]}) == 2


def test_best_of_n_refuses_bad_input_and_survives_a_failing_scorer(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    for params, message in [
        ({"best_of": 2, "scorer": "tiny"}, "serves the chat, code tab, it is not a scorer"),
        ({"best_of": 0, "scorer": "judge"}, "best_of is a whole number from 1 to 8"),
        ({"best_of": 9, "scorer": "judge"}, "from 1 to 8, not 9"),
        ({"best_of": "many", "scorer": "judge"}, "from 1 to 8"),
        ({"best_of": 2}, "best of n needs a scorer"),
        ({"best_of": 2, "scorer": "nobody"}, "nobody"),
    ]:
        with pytest.raises(StudioError, match=message):
            list(studio.chat(model_id="tiny", message="x", params=params))
    with pytest.raises(StudioError, match=r"tiny.*does not serve the scorer"):
        # the scorer's own tab takes no chat model either
        from studio.service.checks import model_for

        model_for(studio.config, "tiny", "scorer")
    # A scorer that fails to load (two labels): the first candidate stays, with a notice; nothing is lost.
    asked = {**BEST, "best_of": 2, "scorer": "two-labels"}
    final, _ = _run(studio.chat(model_id="tiny", message="Fail me", params=asked))
    assert final.status == "ok"
    assert any("the scorer two-labels failed" in n and "2 labels" in n for n in final.notices)
    [row] = _rows(studio, [final.generation_id or 0])
    candidates = row.params["best_of_round"]["candidates"]
    assert candidates[0]["generation_id"] == final.generation_id and all(
        c["score"] is None for c in candidates
    )


def test_a_reward_model_trained_from_votes_is_a_scorer(place: tuple[Settings, Studio]) -> None:
    settings, studio = place
    *_, final = studio.train(method="reward", model_id="tiny", params={"max_steps": 2, "eval_fraction": 0.5})
    assert final.status == "ok", final.error
    assert final.variant == f"tiny+reward-{final.run_id}" and final.eval_records > 0
    assert 0.0 <= final.eval_metrics["eval_accuracy"] <= 1.0  # held-out pairwise accuracy
    adapter = Path(final.adapter or "")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as saved:
        names = list(saved.keys())
        assert any(".score." in k for k in names)  # the trained head is saved with the adapter
    # A scorer, not a chat model: listed for the scorer tab only, with its lineage (kind reward).
    assert final.variant in [m.id for m in studio.models("scorer")]
    assert final.variant not in [m.id for m in studio.models("chat")]
    from studio.cli.models import model_rows

    rows, _ = model_rows(studio.config, settings)
    row = next(r for r in rows if r["id"] == final.variant)
    lineage = (row["method"], row["backend"], row["tabs"], row["base"])
    assert lineage == ("reward", "transformers-reward", ["scorer"], "tiny")
    with pytest.raises(StudioError, match="is a scorer"):
        studio.compare_with_base(final.variant or "")
    # It scores: Best of n with the trained scorer (its base's weights + the saved head and adapter).
    asked = {**BEST, "best_of": 2, "scorer": final.variant}
    best, _ = _run(studio.chat(model_id="tiny", message="Hello", params=asked))
    [scored] = _rows(studio, [best.generation_id or 0])
    assert isinstance(scored.score, float)
    # Kept across a restart, then deleted.
    again = Studio.from_settings(settings)
    try:
        assert final.variant in [m.id for m in again.models("scorer")]
    finally:
        again.close()
    studio.delete_variant(final.variant or "")
    assert final.variant not in [m.id for m in studio.models("scorer")]
    with pytest.raises(StudioError, match="unknown model"):
        list(studio.chat(model_id="tiny", message="x", params={"best_of": 2, "scorer": final.variant}))


def test_too_few_pairs_to_train_a_reward_model(make_studio, tiny_model_dir: Path) -> None:
    from tests.conftest import tiny_models_yaml

    studio = make_studio(tiny_models_yaml(tiny_model_dir))
    a, b = studio.compare(
        tab="chat", prompt="p", a={"model": "tiny"}, b={"model": "tiny", "params": {"seed": 9}}
    )
    studio.prefer(a.generation_id, b.generation_id, "a")
    with pytest.raises(
        StudioError, match=r"not enough data to train reward: [01] preference pairs, at least 4 needed"
    ):
        list(studio.train(method="reward", model_id="tiny"))


def test_the_chat_tab_runs_best_of_n_and_lists_scorers(place: tuple[Settings, Studio]) -> None:
    from gradio_client import Client

    from tests.helpers.served import serving

    _, studio = place
    from tests.helpers.sampling import sampling as panel

    sampling = panel(do_sample=True, top_p=0.95, max_new_tokens=6, seed=7)  # min-p etc. at their defaults
    with serving(studio) as server:
        client = Client(server.url, verbose=False)
        _chat, conversation, _box, notice = client.predict(
            "Hi tab", None, "tiny", "", *sampling, 2, "judge", api_name="/chat"
        )
        assert notice.startswith("best of 2 by judge: candidate")
        [turn] = studio.conversation(
            conversation["value"] if isinstance(conversation, dict) else conversation
        )
        assert turn.answers == 2 and turn.seed in (7, 8)
        with pytest.raises(Exception, match="it is not a scorer"):
            client.predict("Hi tab", None, "tiny", "", *sampling, 2, "tiny", api_name="/chat")
    from studio.ui.best_of import NO_SCORER, with_best_of

    assert with_best_of({"seed": 1}, 1, "judge") == {"seed": 1}  # one candidate: an ordinary turn
    assert with_best_of({}, 3, NO_SCORER) == {"best_of": 3, "scorer": None}  # the service then refuses


def test_the_image_tab_puts_the_picture_an_image_scorer_rates_best_first(make_studio, tmp_path: Path) -> None:
    from tests.helpers.tiny_chat import build_tiny_clip

    clip = build_tiny_clip(tmp_path / "clip")
    studio = make_studio(
        "models:\n"
        "  - {id: painter, tabs: [image], backend: fake-image, source: fake/painter}\n"
        "  - {id: fake, tabs: [chat], backend: fake-chat, source: fake/fake-model}\n"
        f"  - {{id: clip, tabs: [scorer], backend: transformers-clip, source: '{clip}'}}\n"
        f"  - {{id: not-clip, tabs: [scorer], backend: transformers-clip, source: '{tmp_path}'}}\n"
    )
    *_, final = studio.image(
        model_id="painter", prompt="a red dog", params={"num_images": 3, "scorer": "clip"}
    )
    assert final.status == "ok" and len(final.generation_ids) == 3
    assert final.notices[0].startswith("best of 3 by clip: picture")
    rows = {r.id: r for r in _rows(studio, final.generation_ids)}
    scores = [rows[i].score for i in final.generation_ids]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)  # best first
    assert rows[final.generation_ids[0]].params["best_of_round"]["chosen"] == final.generation_ids[0]
    # Each scorer on its own kind of output; a broken one keeps the pictures, with a notice.
    with pytest.raises(StudioError, match="scores pictures"):
        list(studio.chat(model_id="fake", message="x", params={"best_of": 2, "scorer": "clip"}))
    with pytest.raises(StudioError, match="needs an image scorer"):
        list(studio.image(model_id="painter", prompt="x", params={"scorer": "fake"}))
    *_, failed = studio.image(
        model_id="painter", prompt="a dog", params={"num_images": 2, "scorer": "not-clip"}
    )
    assert failed.status == "ok" and len(failed.files) == 2
    assert "the scorer not-clip failed" in failed.notices[0]
