"""Storage search: full-text search over prompts and text outputs, and the Library's filtered listing.

Owns: the search index (SQLite: an FTS5 table kept in sync by triggers; PostgreSQL: a GIN index over a
stored `tsvector` column, queried with `plainto_tsquery`; any other database: a LIKE scan), the words-only
query both dialects agree on, and `find_generations` (search + filters + newest-first pages).
Ignores: what a generation means; ratings are only read to filter by them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, column, event, false, func, or_, table, text
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from studio.storage.tables import Generation, Rating

log = logging.getLogger(__name__)

# External-content FTS5: the text lives once, in `generation`; the index holds only tokens. remove_diacritics
# lets "cafe" find "café". Triggers keep it in step with every insert, delete and text update (generation rows
# are written once, so the update trigger is rare).
_SQLITE_DDL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS generation_fts USING fts5(prompt, output_text, "
    "content='generation', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS generation_fts_ai AFTER INSERT ON generation BEGIN "
    "INSERT INTO generation_fts(rowid, prompt, output_text) "
    "VALUES (new.id, new.prompt, new.output_text); END",
    "CREATE TRIGGER IF NOT EXISTS generation_fts_ad AFTER DELETE ON generation BEGIN "
    "INSERT INTO generation_fts(generation_fts, rowid, prompt, output_text) "
    "VALUES ('delete', old.id, old.prompt, old.output_text); END",
    "CREATE TRIGGER IF NOT EXISTS generation_fts_au AFTER UPDATE OF prompt, output_text ON generation BEGIN "
    "INSERT INTO generation_fts(generation_fts, rowid, prompt, output_text) "
    "VALUES ('delete', old.id, old.prompt, old.output_text); "
    "INSERT INTO generation_fts(rowid, prompt, output_text) "
    "VALUES (new.id, new.prompt, new.output_text); END",
]
# PostgreSQL keeps each row's words in a stored generated column with a GIN index: the planner may test the
# match row by row while it walks the id index newest first (a page of a common word), and re-tokenizing the
# text there (an expression index) cost about 0.1 ms a row: 0.5-1 s for a word in one row of ten at 100k rows,
# against 2-5 ms with the column (benchmarks/library.py). 'simple' = no stemming, no stop words: prompts come
# in every language.
_PG_DOCUMENT = "to_tsvector('simple', coalesce(prompt, '') || ' ' || coalesce(output_text, ''))"
_PG_DDL = [
    "ALTER TABLE generation ADD COLUMN IF NOT EXISTS search_vector tsvector "
    f"GENERATED ALWAYS AS ({_PG_DOCUMENT}) STORED",
    "CREATE INDEX IF NOT EXISTS ix_generation_search_vector ON generation USING GIN (search_vector)",
    "DROP INDEX IF EXISTS ix_generation_fts",  # the expression index of schema version 2
]


def install_index(connection: Connection) -> bool:
    """Create the index where missing; True when it was created (so existing rows need indexing)."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        exists = connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='generation_fts'")
        ).first()
        for statement in _SQLITE_DDL:
            connection.execute(text(statement))
        if not exists:
            connection.execute(text("INSERT INTO generation_fts(generation_fts) VALUES ('rebuild')"))
        return not exists
    if dialect == "postgresql":
        for statement in _PG_DDL:
            connection.execute(text(statement))
        return True
    return False


@event.listens_for(Generation.__table__, "after_create")  # type: ignore[attr-defined]
def _on_create(_table: Any, connection: Connection, **_kw: Any) -> None:
    """A new database gets the index with its `generation` table (inside `create_all`)."""
    install_index(connection)


def words(query: str) -> list[str]:
    """The words of a search box entry: what FTS5 and plainto_tsquery both match (all of them, any order)."""
    return re.findall(r"\w+", query.replace("\x00", " "))


def fts_query(found: list[str]) -> str:
    """Each word quoted: FTS5 operators typed by the user (AND, NEAR, *, :) are plain words here."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in found)


def matches(dialect: str, query: str) -> ColumnElement[bool]:
    """A WHERE clause on `generation` for rows whose prompt or text output contain every word of `query`."""
    found = words(query)
    if not found:
        return false()
    if dialect == "sqlite":
        # Used with a join on generation_fts (find_generations); IN (subquery) would make SQLite list every
        # match before it could stop at a page (14 ms vs 0.1 ms for a word in every row, 100k rows).
        return text("generation_fts MATCH :fts_query").bindparams(fts_query=fts_query(found))  # type: ignore[return-value]
    if dialect == "postgresql":
        clause = "generation.search_vector @@ plainto_tsquery('simple', :ts_query)"
        return text(clause).bindparams(ts_query=" ".join(found))  # type: ignore[return-value]
    return and_(
        *[
            or_(col(Generation.prompt).ilike(f"%{word}%"), col(Generation.output_text).ilike(f"%{word}%"))
            for word in found
        ]
    )


COUNT_CAP = 1000
_FTS = table("generation_fts", column("rowid"))  # the FTS5 table, for joins (not in SQLModel's metadata)


@dataclass
class Filters:
    """What the Library and `studio history` narrow by; None means 'any'."""

    user_id: int | None = None
    search: str | None = None
    tab: str | None = None
    model_id: str | None = None
    rating: str | None = None  # up | down | unrated
    since: datetime | None = None
    until: datetime | None = None


def _where(session: Session, filters: Filters) -> list[Any]:
    clauses: list[Any] = []
    if filters.user_id is not None:
        clauses.append(Generation.user_id == filters.user_id)
    if filters.search and filters.search.strip():
        clauses.append(matches(session.get_bind().dialect.name, filters.search))
    if filters.tab:
        clauses.append(Generation.tab == filters.tab)
    if filters.model_id:
        clauses.append(Generation.model_id == filters.model_id)
    if filters.since is not None:
        clauses.append(col(Generation.created_at) >= filters.since)
    if filters.until is not None:
        clauses.append(col(Generation.created_at) < filters.until)
    if filters.rating in ("up", "down", "unrated"):
        voted = select(Rating.generation_id)
        if filters.user_id is not None:
            voted = voted.where(Rating.user_id == filters.user_id)
        if filters.rating == "unrated":
            clauses.append(col(Generation.id).not_in(voted))
        else:
            clauses.append(
                col(Generation.id).in_(voted.where(Rating.value == (1 if filters.rating == "up" else -1)))
            )
    return clauses


def find_generations(
    session: Session, *, filters: Filters, offset: int = 0, limit: int = 20
) -> tuple[list[Generation], int]:
    """One page of matching generations, newest (highest id) first, and how many match, counted up to
    COUNT_CAP + 1: past that, "more than COUNT_CAP" is all a person needs and counting costs a full scan."""
    clauses = _where(session, filters)
    order = col(Generation.id).desc()
    query = select(Generation)
    ids = select(Generation.id)
    if filters.search and words(filters.search) and session.get_bind().dialect.name == "sqlite":
        # Driven by the index, in its rowid order: a page of a common word stops after `limit` matches.
        query = query.join(_FTS, _FTS.c.rowid == Generation.id)
        ids = ids.join(_FTS, _FTS.c.rowid == Generation.id)
        order = _FTS.c.rowid.desc()
    # On SQLite ordered like the page, or it may walk every generation and probe the index for each (2.7 s
    # for a rare word at 100k rows, not 3 ms); on PostgreSQL unordered, so it stops at COUNT_CAP + 1 matches.
    if session.get_bind().dialect.name == "sqlite":
        ids = ids.order_by(order)
    counted = ids.where(*clauses).limit(COUNT_CAP + 1).subquery()
    total = session.exec(select(func.count()).select_from(counted)).one()
    page = query.where(*clauses).order_by(order).offset(offset).limit(limit)
    return list(session.exec(page)), int(total)
