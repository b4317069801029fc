"""The Studio service with the fake backend: one row per turn, validation, refinement, stop, votes."""

from __future__ import annotations

import itertools
import math
import threading
import time

import pytest
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio, StudioError


def run(studio: Studio, **kwargs) -> list:
    return list(studio.chat(**{"model_id": "fake", **kwargs}))


def rows(studio: Studio) -> list[storage.Generation]:
    with Session(studio.engine) as s:
        return list(s.exec(select(storage.Generation).order_by(storage.Generation.id)))


def test_a_turn_streams_then_stores_one_row(fake_studio: Studio) -> None:
    updates = run(fake_studio, message="hello big world", params={"do_sample": True})
    texts = [u.text for u in updates if not u.done]
    assert len(texts) >= 4 and texts[-1].strip() == "echo: hello big world"
    assert all(a != b for a, b in itertools.pairwise(texts)), "each update adds text"
    final = updates[-1]
    assert final.done and final.status == "ok" and final.generation_id and final.conversation_id
    [row] = rows(fake_studio)
    assert row.output_text.strip() == "echo: hello big world" and row.status == "ok"
    assert row.params["do_sample"] is True and row.params["max_new_tokens"] == 64  # models.yaml default
    assert row.seed is not None and row.params["seed"] == row.seed  # random seed recorded
    assert row.completion_tokens == 4 and row.duration_ms and row.first_token_ms is not None
    assert row.history == [] and row.turn_index == 0


def test_second_turn_sends_history(fake_studio: Studio) -> None:
    first = run(fake_studio, message="one")[-1]
    run(fake_studio, message="two", conversation_id=first.conversation_id)
    second = rows(fake_studio)[-1]
    assert second.turn_index == 1
    assert second.history == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one "},
    ]
    assert [t.prompt for t in fake_studio.conversation(first.conversation_id)] == ["one", "two"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"message": ""}, "message is empty"),
        ({"message": "  \n "}, "message is empty"),
        ({"message": 42}, "must be text"),
        ({"message": "x" * 100_001}, "limit is 100000"),
        ({"message": "hi", "params": {"temperature": math.nan}}, "temperature=nan: must be a finite number"),
        ({"message": "hi", "params": {"top_k": 5000}}, r"valid: in [0, 1000]"),
        ({"message": "hi", "params": ["not", "a", "dict"]}, "must be a mapping"),
        ({"message": "hi", "model_id": "nope"}, "unknown model 'nope'"),
        ({"message": "hi", "model_id": "fake-2", "tab": "code"}, "does not serve the code tab"),
        ({"message": "hi", "conversation_id": 999}, "conversation 999 does not exist"),
        ({"action": "regenerate"}, "nothing to regenerate"),
        ({"message": "hi", "action": "explode"}, "unknown action"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(fake_studio: Studio, kwargs: dict, expected: str) -> None:
    with pytest.raises(StudioError) as err:
        run(fake_studio, **kwargs)
    assert expected in str(err.value)
    assert rows(fake_studio) == []


def test_failures_are_stored_with_their_error(make_studio) -> None:
    studio = make_studio(
        "models:\n  - {id: fake, tabs: [chat], backend: fake-chat, source: fake/x}\n"
        "  - {id: gone, tabs: [chat], backend: fake-chat, source: fake/missing}\n"
    )
    final = run(studio, message="please FAIL")[-1]
    assert final.status == "error" and "failed on purpose" in (final.error or "")
    # A model that is not downloaded is refused before a row is begun (issue 14: at once, with the fix).
    with pytest.raises(StudioError, match="run `studio models pull gone`"):
        run(studio, model_id="gone", message="hi")
    assert [(r.status, r.prompt) for r in rows(studio)] == [("error", "please FAIL")]


def test_regenerate_edit_and_continue_keep_old_rows(fake_studio: Studio) -> None:
    conv = run(fake_studio, message="a")[-1].conversation_id
    run(fake_studio, message="b", conversation_id=conv)
    run(fake_studio, message="c", conversation_id=conv)
    # regenerate the last turn
    regen = run(fake_studio, conversation_id=conv, action="regenerate")[-1]
    turns = fake_studio.conversation(conv)
    assert [t.prompt for t in turns] == ["a", "b", "c"] and turns[-1].generation_id == regen.generation_id
    # edit turn 1: turn 2 drops out of the conversation
    run(fake_studio, conversation_id=conv, action="edit", turn_index=1, message="B!")
    assert [t.prompt for t in fake_studio.conversation(conv)] == ["a", "B!"]
    # continue the last reply: the stored text extends the old one
    before = fake_studio.conversation(conv)[-1].reply
    cont = run(fake_studio, conversation_id=conv, action="continue")[-1]
    assert cont.text.startswith(before) and len(cont.text) > len(before)
    all_rows = rows(fake_studio)
    assert len(all_rows) == 6 and sum(r.active for r in all_rows) == 2
    assert [r.action for r in all_rows] == ["send", "send", "send", "regenerate", "edit", "continue"]
    assert all_rows[3].parent_id == all_rows[2].id
    with pytest.raises(StudioError, match="turn 7 does not exist"):
        run(fake_studio, conversation_id=conv, action="regenerate", turn_index=7)


def test_cancel_stops_a_running_generation(fake_studio: Studio) -> None:
    results: list = []
    updates = fake_studio.chat(model_id="fake", message="SLOW", run_key="k1", params={"max_new_tokens": 4000})

    def consume() -> None:
        for update in updates:
            results.append(update)

    worker = threading.Thread(target=consume)
    worker.start()
    deadline = time.time() + 5
    # Cancel once text is streaming (a Stop before the first token is fine too, but proves less).
    while not any(getattr(u, "text", "") for u in list(results)):
        assert time.time() < deadline, "generation never started"
        time.sleep(0.005)
    assert fake_studio.cancel("k1")
    worker.join(5)
    assert results[-1].status == "stopped"
    [row] = rows(fake_studio)
    assert row.status == "stopped" and 0 < (row.completion_tokens or 0) < 4000
    assert not fake_studio.cancel("k1"), "nothing left running"


def test_closing_the_stream_early_still_stores_the_turn(fake_studio: Studio) -> None:
    stream = fake_studio.chat(model_id="fake", message="SLOW", params={"max_new_tokens": 4000})
    for _, _update in zip(range(3), stream, strict=False):
        pass
    stream.close()  # what happens when a browser tab goes away
    [row] = rows(fake_studio)
    assert row.status == "stopped" and row.output_text.startswith("echo:")


def test_votes_are_stored_changed_and_shown_with_the_conversation(fake_studio: Studio) -> None:
    final = run(fake_studio, message="rate me")[-1]
    gid, conv = final.generation_id, final.conversation_id
    fake_studio.rate(gid, "up")
    fake_studio.rate(gid, "up")
    assert fake_studio.conversation(conv)[0].rating == 1
    fake_studio.rate(gid, "down")
    assert fake_studio.conversation(conv)[0].rating == -1
    assert fake_studio.history()[0]["rating"] == -1
    fake_studio.rate(gid, None)
    assert fake_studio.conversation(conv)[0].rating is None
    with pytest.raises(StudioError, match="'up', 'down'"):
        fake_studio.rate(gid, "love")
    with pytest.raises(StudioError, match="does not exist"):
        fake_studio.rate(12345, "up")
    with pytest.raises(StudioError, match="does not exist"):
        fake_studio.rate(gid, "up", user="someone-else")


def test_conversations_are_per_user_and_can_be_renamed_and_deleted(fake_studio: Studio) -> None:
    conv = run(fake_studio, message="mine", user="ann")[-1].conversation_id
    assert fake_studio.conversations(user="ann") == [(conv, "mine")]
    assert fake_studio.conversations(user="bob") == []
    with pytest.raises(StudioError):
        fake_studio.conversation(conv, user="bob")
    fake_studio.rename_conversation(conv, "  renamed ", user="ann")
    assert fake_studio.conversations(user="ann") == [(conv, "renamed")]
    with pytest.raises(StudioError, match="non-empty title"):
        fake_studio.rename_conversation(conv, " ", user="ann")
    fake_studio.delete_conversation(conv, user="ann")
    assert fake_studio.conversations(user="ann") == [] and rows(fake_studio) == []


def test_notices_are_stored(fake_studio: Studio) -> None:
    conv = None
    for i in range(4):
        conv = run(fake_studio, message=f"m{i}", conversation_id=conv)[-1].conversation_id
    final = run(fake_studio, message="last", conversation_id=conv)[-1]
    assert final.notices and "left out" in final.notices[0]
    assert rows(fake_studio)[-1].notices == final.notices


def test_generate_for_scripts_and_tabs_not_yet_available(fake_studio: Studio) -> None:
    result = fake_studio.generate(tab="code", model_id="fake", prompt="write code", params={"seed": 7})
    assert set(result.as_dict()) >= {"generation_id", "tab", "model", "text", "files", "params"}
    assert result.tab == "code" and result.params["seed"] == 7 and result.files == []
    with pytest.raises(StudioError, match="library tab is not available"):
        fake_studio.generate(tab="library", model_id="fake", prompt="hello")
    with pytest.raises(StudioError, match="does not serve the speech tab"):
        fake_studio.generate(tab="speech", model_id="fake", prompt="hello")
    with pytest.raises(StudioError, match="does not serve the image tab"):
        fake_studio.generate(tab="image", model_id="fake", prompt="a cat")
