"""Storage on a real SQLite file: pragmas, one row per turn, superseding, votes, cascading deletes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from studio import storage


@pytest.fixture
def engine(tmp_path: Path):
    eng = storage.make_engine(f"sqlite:///{tmp_path / 'deep' / 'studio.db'}")
    yield eng
    eng.dispose()


def _gen(uid: int, conv: int | None, turn: int, prompt: str = "hi") -> storage.Generation:
    return storage.Generation(
        user_id=uid,
        conversation_id=conv,
        turn_index=turn,
        tab="chat",
        model_id="m",
        prompt=prompt,
        output_text=f"re {prompt}",
        params={"seed": 1},
    )


def test_sqlite_uses_wal_busy_timeout_and_foreign_keys(engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_conversation_turns_supersede_and_survive(engine) -> None:
    with Session(engine) as s:
        uid = storage.get_or_create_user(s, name="ann").id
        assert storage.get_or_create_user(s, name="ann").id == uid
        conv = storage.create_conversation(s, user_id=uid, title="t" * 300, model_id="m")
        s.commit()
        assert len(conv.title) == 200
        for i in range(3):
            storage.record_generation(s, generation=_gen(uid, conv.id, i, f"p{i}"))
        # Regenerating turn 1 hides turns 1 and 2 but keeps their rows.
        storage.record_generation(s, generation=_gen(uid, conv.id, 1, "p1b"), supersede_from=1)
        active = storage.active_turns(s, conversation_id=conv.id)
        assert [g.prompt for g in active] == ["p0", "p1b"]
        assert storage.count_generations(s) == 4
        assert [g.prompt for g in storage.list_generations(s, user_id=uid, limit=2)] == ["p1b", "p2"]


def test_ratings_are_idempotent_changeable_and_removable(engine) -> None:
    with Session(engine) as s:
        uid = storage.get_or_create_user(s, name="bob").id
        gid = storage.record_generation(s, generation=_gen(uid, None, 0)).id
        storage.set_rating(s, generation_id=gid, user_id=uid, value=1)
        storage.set_rating(s, generation_id=gid, user_id=uid, value=1)
        assert len(s.exec(select(storage.Rating)).all()) == 1
        storage.set_rating(s, generation_id=gid, user_id=uid, value=-1)
        assert storage.ratings_for(s, generation_ids=[gid], user_id=uid) == {gid: -1}
        storage.set_rating(s, generation_id=gid, user_id=uid, value=None)
        assert storage.ratings_for(s, generation_ids=[gid], user_id=uid) == {}


def test_delete_conversation_removes_generations_and_votes_only_for_owner(engine) -> None:
    with Session(engine) as s:
        owner = storage.get_or_create_user(s, name="o").id
        other = storage.get_or_create_user(s, name="x").id
        conv = storage.create_conversation(s, user_id=owner, title="c", model_id="m")
        s.commit()
        gid = storage.record_generation(s, generation=_gen(owner, conv.id, 0)).id
        storage.set_rating(s, generation_id=gid, user_id=owner, value=1)
        assert not storage.delete_conversation(s, conversation_id=conv.id, user_id=other)
        assert storage.list_conversations(s, user_id=other) == []
        assert storage.delete_conversation(s, conversation_id=conv.id, user_id=owner)
        assert storage.count_generations(s) == 0
        assert s.exec(select(storage.Rating)).all() == []


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    eng = storage.make_engine(url)
    with Session(eng) as s:
        uid = storage.get_or_create_user(s, name="u").id
        storage.record_generation(s, generation=_gen(uid, None, 0, "kept"))
    eng.dispose()
    eng = storage.make_engine(url)
    with Session(eng) as s:
        assert [g.prompt for g in storage.list_generations(s)] == ["kept"]
    eng.dispose()


def test_concurrent_first_requests_share_one_user(tmp_path: Path) -> None:
    """Page load and a first message can both create the default user at once (seen in the browser)."""
    from tests.helpers.threads import together

    eng = storage.make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    ids: list[int | None] = []

    def create(_: int, ready: Callable[[], object]) -> None:
        ready()
        with Session(eng) as s:
            ids.append(storage.get_or_create_user(s, name="local").id)

    errors, _ = together(6, create)
    eng.dispose()
    assert not errors and len(ids) == 6 and len(set(ids)) == 1
