"""Storage on a real PostgreSQL server: the SQLite storage suite again, and the studio end to end.

The server is started by the test session (tests/pg.py) on loopback and stopped at the end.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from studio import Settings, storage
from studio.service import Studio
from studio.storage.engine import normalize_url
from tests.conftest import FAKE_MODELS, write_models

# The storage suite, collected again here with `engine` below (SQLite-only pragma/file tests stay there).
from tests.test_storage import (
    test_conversation_turns_supersede_and_survive,
    test_delete_conversation_removes_generations_and_votes_only_for_owner,
    test_ratings_are_idempotent_changeable_and_removable,
)

__all__ = [
    "test_conversation_turns_supersede_and_survive",
    "test_delete_conversation_removes_generations_and_votes_only_for_owner",
    "test_ratings_are_idempotent_changeable_and_removable",
]


@pytest.fixture
def engine(postgres_url: str):
    eng = storage.make_engine(postgres_url)
    yield eng
    eng.dispose()


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_engine_is_postgresql(engine) -> None:
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.execute(text("select version()")).scalar().startswith("PostgreSQL")


def test_studio_stores_everything_in_postgresql(database_url: str, tmp_path, monkeypatch) -> None:
    """Chat, regenerate, a vote, history, a rename and a delete through the service on both databases."""
    monkeypatch.setenv("STUDIO_DATABASE_URL", database_url)
    settings = Settings.from_env(models_file=write_models(tmp_path, FAKE_MODELS), data_dir=tmp_path / "data")
    studio = Studio.from_settings(settings)
    try:
        assert studio.engine.dialect.name == database_url.split(":")[0]
        final = list(studio.chat(model_id="fake", message="hello there"))[-1]
        conv = final.conversation_id
        assert final.status == "ok" and conv is not None
        list(studio.chat(model_id="fake", message="second", conversation_id=conv))
        again = list(studio.chat(model_id="fake", conversation_id=conv, action="regenerate"))[-1]
        failed = list(studio.chat(model_id="fake", message="FAIL now", conversation_id=conv))[-1]
        assert failed.status == "error" and "on purpose" in (failed.error or "")
        studio.rate(again.generation_id, "up")
        turns = studio.conversation(conv)
        assert [t.prompt for t in turns] == ["hello there", "second", "FAIL now"]
        assert turns[1].rating == 1 and turns[2].status == "error"
        studio.rename_conversation(conv, "renamed")
        assert studio.conversations() == [(conv, "renamed")]
        history = studio.history(limit=10)
        assert len(history) == 4 and history[0]["status"] == "error"
        with Session(studio.engine) as s:
            assert storage.count_generations(s) == 4
        studio.delete_conversation(conv)
        assert studio.conversations() == []
    finally:
        studio.close()
