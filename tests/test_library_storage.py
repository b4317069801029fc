"""Library storage on a real database: the search index stays in step with every write, an old database
gets it on first use, A/B votes upsert, deletes leave no dangling row.

Runs on a temp SQLite file, or on the database in $STUDIO_TEST_DATABASE_URL (e.g. a local PostgreSQL), whose
tables are dropped and recreated: point it at a throwaway database only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from studio import storage


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = os.environ.get("STUDIO_TEST_DATABASE_URL")
    made = storage.make_engine(url or f"sqlite:///{tmp_path / 'studio.db'}")
    if url:  # a shared server: start from empty tables
        SQLModel.metadata.drop_all(made)
        SQLModel.metadata.create_all(made)
    yield made
    made.dispose()


def add(session: Session, uid: int, prompt: str, output: str = "", **extra) -> int:
    row = storage.Generation(
        user_id=uid, tab="chat", model_id="m", prompt=prompt, output_text=output, **extra
    )
    storage.record_generation(session, generation=row)
    return row.id or 0


def found(session: Session, query: str, **filters) -> list[int]:
    rows, total = storage.find_generations(session, filters=storage.Filters(search=query, **filters))
    assert total == len(rows)
    return sorted(r.id or 0 for r in rows)


def test_search_follows_inserts_updates_and_deletes(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        uid = storage.get_or_create_user(s, name="u").id or 0
        one = add(s, uid, "purple elephants dance", "they really do")
        two = add(s, uid, "green frogs", "sing purple songs")
        assert found(s, "purple") == [one, two]
        assert found(s, "purple frogs") == [two]  # every word, across prompt and output
        assert found(s, "Purple ELEPHANTS") == [one]
        assert found(s, "   ") == [one, two] and found(s, "!!!") == []  # blank: no filter; no word: nothing
        row = s.get(storage.Generation, two)
        assert row is not None
        row.output_text = "now silent"
        s.add(row)
        s.commit()
        assert found(s, "purple") == [one] and found(s, "silent") == [two]
        storage.delete_generations(s, generation_ids=[one])
        assert found(s, "elephants") == []


def test_an_old_database_gets_the_index_with_its_rows(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the FTS5 table is SQLite's")
    with Session(engine) as s:
        uid = storage.get_or_create_user(s, name="u").id or 0
    with engine.begin() as conn:  # as a database made before search existed
        conn.execute(text("DROP TABLE generation_fts"))
        for name in ("ai", "ad", "au"):
            conn.execute(text(f"DROP TRIGGER generation_fts_{name}"))
    with Session(engine) as s:
        old = add(s, uid, "written before the index")
    storage.ensure_search(engine)
    storage.ensure_search(engine)  # idempotent
    with Session(engine) as s:
        new = add(s, uid, "written after the index")
        assert found(s, "written index") == [old, new]


def test_preferences_upsert_by_pair_and_conversations_delete_cleanly(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        uid = storage.get_or_create_user(s, name="u").id or 0
        conv = storage.create_conversation(s, user_id=uid, title="t", model_id="m")
        a = add(s, uid, "p", "x", conversation_id=conv.id, turn_index=0, params={"system_prompt": "S"})
        b = add(s, uid, "p", "y")
        storage.set_preference(s, user_id=uid, tab="chat", generation_a_id=a, generation_b_id=b, choice="a")
        storage.set_preference(s, user_id=uid, tab="chat", generation_a_id=b, generation_b_id=a, choice="tie")
        [vote] = s.exec(select(storage.Preference)).all()
        assert vote.choice == "tie" and (vote.generation_a_id, vote.generation_b_id) == (a, b)
        [pair] = storage.preference_rows(s, user_id=uid)
        assert pair["a"]["output_text"] == "x" and pair["b"]["output_text"] == "y"
        with pytest.raises(ValueError, match="choice"):
            storage.set_preference(
                s, user_id=uid, tab="chat", generation_a_id=a, generation_b_id=b, choice="c"
            )
        storage.set_rating(s, generation_id=a, user_id=uid, value=1, reason="other", comment="c")
        assert storage.rating_counts(s) == [{"tab": "chat", "model_id": "m", "up": 1, "down": 0}]
        [rated] = storage.rated_rows(s, user_id=uid)
        assert (rated["rating"], rated["reason"], rated["prompt"], rated["system_prompt"]) == (
            1,
            "other",
            "p",
            "S",
        )
        assert rated["history"] == [] and rated["created_at"].year >= 2026
        # The conversation goes with its turn, the turn's vote and the A/B vote naming it.
        assert storage.delete_conversation(s, conversation_id=conv.id or 0, user_id=uid)
        assert s.exec(select(storage.Preference)).all() == [] and storage.rated_rows(s) == []
        assert storage.delete_preference(s, user_id=uid, generation_a_id=a, generation_b_id=b) is False
