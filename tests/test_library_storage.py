"""Library storage on a real database: the search index stays in step with every write, an old database
gets it on first use, A/B votes upsert, deletes leave no dangling row.

Each test runs on a temp SQLite file and on a fresh database of the real PostgreSQL server the session starts
(tests/pg.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from studio import storage


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = storage.make_engine(database_url)
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
    with engine.begin() as conn:  # what migration 2 does; installing twice is harmless
        assert storage.install_index(conn) is True
        assert storage.install_index(conn) is False
    with Session(engine) as s:
        new = add(s, uid, "written after the index")
        assert found(s, "written index") == [old, new]


def test_a_version_2_postgresql_database_gets_the_search_column(postgres_url: str) -> None:
    """Schema version 2 searched through an expression index; version 3 moves the words to a column."""
    from studio.storage import migrations

    engine = storage.make_engine(postgres_url)
    try:
        with Session(engine) as s:
            uid = storage.get_or_create_user(s, name="u").id or 0
        with engine.begin() as conn:  # as version 2 left it
            conn.execute(text("DROP INDEX ix_generation_search_vector"))
            conn.execute(text("ALTER TABLE generation DROP COLUMN search_vector"))
            conn.execute(text("CREATE INDEX ix_generation_fts ON generation USING GIN (to_tsvector('simple', "
                              "coalesce(prompt, '') || ' ' || coalesce(output_text, '')))"))  # fmt: skip
            conn.execute(migrations.schema_version.update().values(version=2))
        with Session(engine) as s:
            old = add(s, uid, "written under version two")
        assert migrations.migrate(engine) == migrations.latest_version()  # 3 and on
        with Session(engine) as s:
            new = add(s, uid, "written under version three")
            assert found(s, "written version") == [old, new]
        with engine.connect() as conn:
            indexes = {row[0] for row in conn.execute(text("SELECT indexname FROM pg_indexes"))}
        assert "ix_generation_search_vector" in indexes and "ix_generation_fts" not in indexes
    finally:
        engine.dispose()


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
