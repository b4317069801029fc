"""Schema migrations on SQLite and PostgreSQL: fresh databases, databases from before migrations (version 1,
frozen in tests/schema_v1.py), a later migration applied over kept data, and refusing a newer schema."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Integer, String, create_engine, inspect, select
from sqlmodel import Session, SQLModel

from studio import storage
from studio.storage import migrations
from studio.storage.engine import normalize_url
from tests.helpers import schema_v1


def _columns(engine) -> dict[str, set[str]]:
    """Columns of the model tables the database has. Tables outside the models (schema_version, a search
    index's own tables) and PostgreSQL's search column are not compared; a model table the database lacks
    shows as missing."""
    insp = inspect(engine)
    names = set(insp.get_table_names()) & set(SQLModel.metadata.tables)
    return {t: {c["name"] for c in insp.get_columns(t)} - {"search_vector"} for t in names}


def _v1_database(url: str) -> tuple[int, int, int]:
    """A database as the studio made it before migrations, with a conversation, a turn and a vote.
    Ids come from the database (as the studio's did), so PostgreSQL's sequences are where they were."""
    engine = create_engine(normalize_url(url))
    schema_v1.metadata.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        uid = conn.execute(schema_v1.user.insert().values(name="old", created_at=now)).inserted_primary_key[0]
        conv = conn.execute(
            schema_v1.conversation.insert().values(
                user_id=uid, tab="chat", title="kept", model_id="m", created_at=now, updated_at=now
            )
        ).inserted_primary_key[0]
        gid = conn.execute(
            schema_v1.generation.insert().values(
                user_id=uid, conversation_id=conv, turn_index=0, active=True, action="send", tab="chat",
                model_id="m", prompt="old prompt", params={"seed": 3}, history=[], output_text="old answer",
                files=[], notices=[], status="ok", created_at=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        conn.execute(
            schema_v1.rating.insert().values(
                generation_id=gid, user_id=uid, value=1, created_at=now, updated_at=now
            )
        )
    engine.dispose()
    return uid, conv, gid


def _expected_columns() -> dict[str, set[str]]:
    return {name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()}


def test_fresh_database_is_created_and_stamped(database_url: str) -> None:
    engine = storage.make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.latest_version()
        assert _columns(engine) == _expected_columns()
        assert migrations.migrate(engine) == migrations.latest_version()  # a second start changes nothing
    finally:
        engine.dispose()


def test_database_from_before_migrations_is_upgraded_with_its_data(database_url: str) -> None:
    uid, conv, gid = _v1_database(database_url)
    engine = storage.make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.latest_version()
        # Every migration together must give exactly the shape a fresh database gets.
        assert _columns(engine) == _expected_columns()
        with Session(engine) as s:
            assert [g.output_text for g in storage.active_turns(s, conversation_id=conv)] == ["old answer"]
            assert storage.ratings_for(s, generation_ids=[gid], user_id=uid) == {gid: 1}
            new_uid = storage.get_or_create_user(s, name="new").id
            new_gid = storage.record_generation(
                s, generation=storage.Generation(user_id=new_uid, tab="chat", model_id="m", prompt="new")
            ).id
            assert new_uid != uid and new_gid is not None and new_gid > gid
    finally:
        engine.dispose()


def test_a_later_migration_runs_once_over_kept_data(database_url: str, monkeypatch) -> None:
    """What the next schema change looks like: a column and a table, applied to a version 1 database."""
    extra = SQLModel.metadata  # the new table must exist in the models for create_table
    from sqlalchemy import Table

    note = Table(
        "migration_test_note", extra, Column("id", Integer, primary_key=True), Column("text", String)
    )
    try:
        steps: list[str] = []

        def step(conn) -> None:
            steps.append("ran")
            migrations.add_column(conn, "generation", Column("label", String(32), server_default="none"))
            migrations.create_table("migration_test_note")(conn)

        demo = migrations.latest_version() + 1  # the next number, whatever the real list holds by then
        monkeypatch.setattr(
            migrations, "MIGRATIONS", [*migrations.MIGRATIONS, migrations.Migration(demo, "t", step)]
        )
        _v1_database(database_url)
        engine = storage.make_engine(database_url)
        try:
            cols = _columns(engine)
            assert "label" in cols["generation"] and cols["migration_test_note"] == {"id", "text"}
            with engine.connect() as conn:
                assert migrations.current_version(conn) == demo
                assert conn.execute(select(schema_v1.generation.c.prompt)).scalars().all() == ["old prompt"]
                assert conn.exec_driver_sql("SELECT label FROM generation").scalar() == "none"
            assert migrations.migrate(engine) == demo and steps == ["ran"]
        finally:
            engine.dispose()
    finally:
        extra.remove(note)


def test_a_newer_schema_is_refused(database_url: str) -> None:
    engine = storage.make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(migrations.schema_version.update().values(version=99))
        with pytest.raises(RuntimeError, match="version 99, newer than this studio"):
            migrations.migrate(engine)
    finally:
        engine.dispose()
