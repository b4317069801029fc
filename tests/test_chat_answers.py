"""The service side of issue 14's Chat items: browsing a turn's kept answers (and which turns become active),
each turn's numbers, the notice of an answer cut at max_new_tokens, and the conversation list's titles and
search. Runs on the fake echo backend (tests/helpers/fakes.py), so it is fast and exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from studio import storage
from studio.errors import StudioError
from studio.service import Studio
from studio.service.chat import TITLE_CHARS, conversation_title


@pytest.fixture
def both_studio(make_studio: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Studio:
    """The fake studio on SQLite and on PostgreSQL (the search's ILIKE escapes and the bulk updates)."""
    monkeypatch.setenv("STUDIO_DATABASE_URL", database_url)
    return make_studio()  # type: ignore[no-any-return]


def chat(studio: Studio, message: str | None = None, **kwargs: Any) -> Any:
    """Run one turn; its final update."""
    *_, final = studio.chat(model_id="fake", message=message, **kwargs)
    return final


def active(studio: Studio, conv: int) -> list[int]:
    return [turn.generation_id for turn in studio.conversation(conv)]


def test_browsing_makes_the_browsed_answer_active_and_brings_back_its_later_turns(
    both_studio: Studio,
) -> None:
    fake_studio = both_studio
    first = chat(fake_studio, "one")
    conv = first.conversation_id
    second = chat(fake_studio, conversation_id=conv, action="regenerate")
    third = chat(fake_studio, "one, said again", conversation_id=conv, action="edit", turn_index=0)
    turns = fake_studio.conversation(conv)
    assert [(t.generation_id, t.answer, t.answers) for t in turns] == [(third.generation_id, 3, 3)]

    shown = fake_studio.browse_answer(conv, 0, -1)
    assert [(t.generation_id, t.answer, t.answers) for t in shown] == [(second.generation_id, 2, 3)]
    assert active(fake_studio, conv) == [second.generation_id]
    follow_up = chat(fake_studio, "two", conversation_id=conv)
    assert active(fake_studio, conv) == [second.generation_id, follow_up.generation_id]
    assert fake_studio.conversation(conv)[1].answers == 1

    # To the edited answer: the follow-up (asked after the second answer) stays stored but leaves the view.
    shown = fake_studio.browse_answer(conv, 0, +1)
    assert [(t.prompt, t.answer) for t in shown] == [("one, said again", 3)]
    # Past the last answer: it stays.
    assert [t.generation_id for t in fake_studio.browse_answer(conv, 0, +5)] == [third.generation_id]
    # Back to the second: its follow-up comes back with it.
    fake_studio.browse_answer(conv, 0, -1)
    assert active(fake_studio, conv) == [second.generation_id, follow_up.generation_id]
    with Session(fake_studio.engine) as session:
        rows = storage.kept_turns(session, conversation_id=conv)
    assert {row.id: row.active for row in rows} == {
        first.generation_id: False,
        second.generation_id: True,
        third.generation_id: False,
        follow_up.generation_id: True,
    }


def test_answers_asked_after_another_branch_are_not_alternatives(fake_studio: Studio) -> None:
    first = chat(fake_studio, "one")
    conv = first.conversation_id
    chat(fake_studio, "two", conversation_id=conv)
    chat(fake_studio, conversation_id=conv, action="regenerate")  # turn 1 now has two answers
    chat(fake_studio, "one, edited", conversation_id=conv, action="edit", turn_index=0)  # turn 1 dropped
    chat(fake_studio, "two again", conversation_id=conv)
    turns = fake_studio.conversation(conv)
    assert [(t.answer, t.answers) for t in turns] == [(2, 2), (1, 1)], (
        "turn 1's old answers followed answer 1"
    )


def test_browsing_refuses_what_it_cannot_do(fake_studio: Studio) -> None:
    conv = chat(fake_studio, "one").conversation_id
    with pytest.raises(StudioError, match="turn 3 does not exist"):
        fake_studio.browse_answer(conv, 3, 1)
    with pytest.raises(StudioError, match="whole step"):
        fake_studio.browse_answer(conv, 0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(StudioError, match="does not exist"):
        fake_studio.browse_answer(conv, 0, 1, user="someone-else")
    assert [t.answers for t in fake_studio.browse_answer(conv, 0, 1)] == [1]


def test_each_turn_carries_its_numbers_and_an_answer_cut_at_the_limit_says_so(fake_studio: Studio) -> None:
    cut = chat(fake_studio, "a b c d e f", params={"max_new_tokens": 3, "seed": 7})
    notice = "The answer stopped at the limit of 3 new tokens (max_new_tokens): Continue goes on from here."
    assert cut.notices == [notice]
    whole = chat(fake_studio, "short", params={"max_new_tokens": 30}, conversation_id=cut.conversation_id)
    assert whole.notices == []
    turns = fake_studio.conversation(cut.conversation_id)
    assert [(t.completion_tokens, t.hit_limit, t.notices) for t in turns] == [
        (3, True, [notice]),
        (2, False, []),
    ]
    assert turns[0].seed == 7 and isinstance(turns[1].seed, int)
    with Session(fake_studio.engine) as session:
        row = storage.get_generation(session, generation_id=turns[0].generation_id)
        assert row is not None and row.notices == [notice], "the notice is stored with the answer"
        assert row.duration_ms is not None and row.first_token_ms is not None
        speed = (3 - 1) / ((row.duration_ms - row.first_token_ms) / 1000)
    assert turns[0].tokens_per_second == pytest.approx(speed)


def test_the_conversation_list_searches_titles_and_turns(both_studio: Studio) -> None:
    fake_studio = both_studio
    terns = chat(fake_studio, "Arctic terns fly far").conversation_id
    owls = chat(fake_studio, "Owls hunt at night").conversation_id
    chat(fake_studio, "and they see well 100%", conversation_id=owls)
    assert fake_studio.conversations(query="TERNS") == [(terns, "Arctic terns fly far")]
    assert [cid for cid, _ in fake_studio.conversations(query="see well")] == [owls], "a later message"
    assert [cid for cid, _ in fake_studio.conversations(query="echo:")] == [owls, terns], "the answers"
    assert [cid for cid, _ in fake_studio.conversations(query="100%")] == [owls]
    assert fake_studio.conversations(query="10_%") == [], "% and _ are literal"
    assert fake_studio.conversations(query="terns", user="someone-else") == []
    assert [cid for cid, _ in fake_studio.conversations(query="  ")] == [owls, terns]
    with pytest.raises(StudioError, match="search is text"):
        fake_studio.conversations(query=3)  # type: ignore[arg-type]


def test_a_long_first_message_makes_a_title_cut_at_a_word() -> None:
    assert conversation_title("  Hello\n  there ") == "Hello there"
    long = "word " * 40
    title = conversation_title(long)
    assert len(title) <= TITLE_CHARS and title.endswith("word…") and "  " not in title
    assert conversation_title("x" * 200) == "x" * (TITLE_CHARS - 1) + "…"


def test_the_footer_under_an_answer_and_a_code_block_it_cut_off() -> None:
    from studio.service import ChatTurn
    from studio.ui.conversation import messages

    cut = ChatTurn(
        1, "p", "Here:\n\n```python\ndef f(", None, "stopped", None, [], {}, seed=3, completion_tokens=4
    )
    browsed = ChatTurn(2, "q", "Fine.", None, "ok", None, [], {}, seed=5, completion_tokens=9, hit_limit=True)
    browsed.tokens_per_second, browsed.answer, browsed.answers = 12.345, 2, 3
    shown = [m["content"] for m in messages([cut, browsed]) if m["role"] == "assistant"]
    # The fence is closed, so "[stopped]" and the footer are not shown as code.
    assert shown[0] == "Here:\n\n```python\ndef f(\n```\n\n*[stopped]*\n\n<sub>4 tokens · seed 3</sub>"
    assert shown[1] == (
        "Fine.\n\n<sub>‹ 2/3 › · 9 tokens · 12.3 tokens/s · seed 5 · stopped at max_new_tokens</sub>"
    )
