"""A/B votes that mean something, through the service: only two finished answers can be compared, a
failed side never ranks, a comparison adds nothing to the Chat list; and the "why?" reasons fit the vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from studio import storage
from studio.service import Studio, StudioError

MODELS = """
models:
  - {id: fake, tabs: [chat, code], backend: fake-chat, source: fake/a}
  - {id: fake-broken, tabs: [chat, code], backend: fake-chat, source: fake/broken}
  - {id: fake-2, tabs: [chat], backend: fake-chat, source: fake/b}
"""


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio(MODELS)


def _row(studio: Studio, model: str, prompt: str, status: str) -> int:
    """A stored chat generation outside any conversation, as an A/B side with `status` would be."""
    with Session(studio.engine, expire_on_commit=False) as session:
        row = storage.Generation(
            user_id=studio.user_id(None), tab="chat", model_id=model, prompt=prompt, status=status
        )
        return storage.record_generation(session, generation=row).id or 0


def test_a_vote_needs_two_finished_answers(studio: Studio) -> None:
    a, b = studio.compare(tab="chat", prompt="same prompt", a={"model": "fake"}, b={"model": "fake-broken"})
    assert a.status == "ok" and b.status == "error"
    with pytest.raises(StudioError, match=rf"generation {b.generation_id} failed; an A/B vote compares two"):
        studio.prefer(a.generation_id, b.generation_id, "a")
    for status, why in [("stopped", "was stopped"), ("running", "is still running")]:
        other = _row(studio, "fake-2", "same prompt", status)
        with pytest.raises(StudioError, match=rf"generation {other} {why}"):
            studio.prefer(other, a.generation_id, "b")
    assert studio.leaderboard() == []  # nothing was stored
    with Session(studio.engine) as session:
        assert storage.preference_rows(session) == []


def test_a_failed_side_never_enters_the_leaderboard(studio: Studio) -> None:
    good = _row(studio, "fake", "p", "ok")
    failed = _row(studio, "fake-2", "p", "error")
    other = _row(studio, "fake-2", "p", "ok")
    with Session(studio.engine) as session:  # a vote stored before prefer refused failed sides
        storage.set_preference(
            session, user_id=studio.user_id(None), tab="chat", generation_a_id=good,
            generation_b_id=failed, choice="a",
        )  # fmt: skip
    assert studio.leaderboard() == []
    studio.prefer(good, other, "b")
    board = {row["model"]: row for row in studio.leaderboard()}
    assert (board["fake"]["battles"], board["fake-2"]["wins"]) == (1, 1)


@pytest.mark.parametrize("tab", ["chat", "code"])
def test_a_comparison_adds_no_conversation(studio: Studio, tab: str) -> None:
    *_, kept = studio.chat(model_id="fake", message="a real chat", tab=tab)
    a, b = studio.compare(tab=tab, prompt="which is better?", a={"model": "fake"}, b={"model": "fake"})
    assert [cid for cid, _ in studio.conversations(tab=tab)] == [kept.conversation_id]
    assert a.conversation_id is None and b.conversation_id is None
    assert studio.prefer(a.generation_id, b.generation_id, "tie") == "tie"  # still a valid pair
    assert studio.library_item(a.generation_id)["conversation_id"] is None


def test_reasons_fit_the_vote(studio: Studio) -> None:
    *_, final = studio.chat(model_id="fake", message="hello")
    gid = final.generation_id
    studio.rate(gid, "up", reason="helpful, Well written, creative, accurate, other")
    assert studio.vote_detail(gid)["reasons"] == ["helpful", "well written", "creative", "accurate", "other"]
    with pytest.raises(StudioError, match=r"unknown reason 'unsafe' for a 👍 \(up\) vote; reasons: helpful,"):
        studio.rate(gid, "up", reason="unsafe")
    with pytest.raises(StudioError, match=r"unknown reason 'helpful' for a 👎 \(down\) vote; reasons: inacc"):
        studio.rate(gid, "down", reason="helpful")
    studio.rate(gid, "down", reason="low quality,other")
    assert studio.vote_detail(gid) == {"vote": -1, "reasons": ["low quality", "other"], "comment": ""}


def test_a_library_item_says_how_it_ran(studio: Studio, tmp_path: Path) -> None:
    *_, first = studio.chat(model_id="fake", message="one two three", params={"seed": 7})
    *_, again = studio.chat(
        model_id="fake", conversation_id=first.conversation_id, action="regenerate", params={"seed": 8}
    )
    *_, failed = studio.chat(model_id="fake", message="FAIL now")
    old, new = studio.library_item(first.generation_id), studio.library_item(again.generation_id)
    assert (old["active"], new["active"], old["seed"], new["seed"]) == (False, True, 7, 8)
    assert (new["prompt_tokens"], new["completion_tokens"]) == (3, 4)  # "echo: one two three"
    assert new["duration_s"] is not None and new["tokens_per_s"] and new["tokens_per_s"] > 0
    assert new["params"]["seed"] == 8 and new["params"]["max_new_tokens"] == 256
    assert studio.library_item(failed.generation_id)["status"] == "error"
    listed = {i["generation_id"]: i for i in studio.library().items}
    assert listed[first.generation_id]["active"] is False
    assert listed[failed.generation_id]["status"] == "error"


def test_the_cli_refuses_a_vote_on_a_failed_side(capsys, tmp_path: Path) -> None:
    from studio.cli import main
    from tests.conftest import write_models

    args = ["--models", str(write_models(tmp_path, MODELS)), "--data-dir", str(tmp_path / "d")]
    ids = []
    for model in ("fake", "fake-broken"):
        main(["generate", "chat", "Which sea is saltiest?", "--model", model, "--json", *args])
        ids.append(str(json.loads(capsys.readouterr().out)["generation_id"]))
    assert main(["prefer", *ids, *args]) == 2
    assert f"generation {ids[1]} failed; an A/B vote compares two finished answers" in capsys.readouterr().err
