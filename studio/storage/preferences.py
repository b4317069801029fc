"""Storage preferences: A/B votes between two generations, and the rows feedback exports read.

Owns: the `preference` table's reads and writes (one row per user and pair, whatever the order the pair is
named in: naming it reversed flips the choice; the latest vote wins), deleting generations with everything
that points at them, and the flat rows export and the leaderboard read (plain dicts from Core queries:
building ORM objects would cost more than writing the export).
Ignores: what the rows become (studio/export/) and media files (the service deletes them).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from orjson import loads as json_loads  # 5x faster than json on the 300k small values of a 100k-row export
from sqlalchemy import Text, case, func, type_coerce
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select, update

from studio.storage.tables import Conversation, Generation, Preference, Rating, utcnow

CHOICES = ("a", "b", "tie", "both_bad")
_FLIPPED = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}


def set_preference(
    session: Session, *, user_id: int, tab: str, generation_a_id: int, generation_b_id: int, choice: str
) -> Preference:
    """Upsert the user's vote on a pair; the pair named the other way round is the same pair."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}")
    existing = session.exec(
        select(Preference).where(
            Preference.user_id == user_id,
            col(Preference.generation_a_id).in_([generation_a_id, generation_b_id]),
            col(Preference.generation_b_id).in_([generation_a_id, generation_b_id]),
        )
    ).first()
    if existing is None:
        existing = Preference(
            user_id=user_id,
            tab=tab,
            generation_a_id=generation_a_id,
            generation_b_id=generation_b_id,
            choice=choice,
        )
    else:
        reversed_ = existing.generation_a_id != generation_a_id
        existing.choice = _FLIPPED[choice] if reversed_ else choice
        existing.updated_at = utcnow()
    session.add(existing)
    session.commit()
    session.refresh(existing)
    return existing


def delete_preference(session: Session, *, user_id: int, generation_a_id: int, generation_b_id: int) -> bool:
    pair = [generation_a_id, generation_b_id]
    result = session.execute(
        sa_delete(Preference).where(
            col(Preference.user_id) == user_id,
            col(Preference.generation_a_id).in_(pair),
            col(Preference.generation_b_id).in_(pair),
        )
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def rating_detail(session: Session, *, generation_id: int, user_id: int) -> Rating | None:
    """The user's vote on a generation with its reason and comment, or None."""
    return session.exec(
        select(Rating).where(Rating.generation_id == generation_id, Rating.user_id == user_id)
    ).first()


def delete_generations(session: Session, *, generation_ids: list[int]) -> list[Generation]:
    """Delete generations with their ratings and A/B votes in one transaction; conversations left with no
    turn go too. Returns the deleted rows (their `files` are the caller's to remove)."""
    if not generation_ids:
        return []
    rows = list(session.exec(select(Generation).where(col(Generation.id).in_(generation_ids))))
    ids = [row.id for row in rows]
    session.exec(delete(Rating).where(col(Rating.generation_id).in_(ids)))
    session.exec(
        delete(Preference).where(
            col(Preference.generation_a_id).in_(ids) | col(Preference.generation_b_id).in_(ids)
        )
    )
    # Other turns may name a deleted one as their parent: keep them, forget the link.
    session.exec(update(Generation).where(col(Generation.parent_id).in_(ids)).values(parent_id=None))
    conversations = {row.conversation_id for row in rows if row.conversation_id is not None}
    session.exec(delete(Generation).where(col(Generation.id).in_(ids)))
    for conv_id in conversations:
        left = session.exec(select(Generation.id).where(Generation.conversation_id == conv_id)).first()
        if left is None:
            session.exec(delete(Conversation).where(col(Conversation.id) == conv_id))
            continue
        # Close the gap a deleted turn leaves, or the next message would share a turn index with a kept turn.
        active = session.exec(
            select(Generation)
            .where(Generation.conversation_id == conv_id, col(Generation.active))
            .order_by(col(Generation.turn_index), col(Generation.id))
        )
        for position, turn in enumerate(active):
            if turn.turn_index != position:
                turn.turn_index = position
                session.add(turn)
    session.commit()
    return rows


# -- flat rows for export and the leaderboard ------------------------------------------------------------
# Rows come straight from the DB-API cursor, in batches, as plain tuples that one function turns into dicts:
# SQLAlchemy's per-value result processing and `dict(zip(...))` per row cost more than the whole export
# (benchmarks/library.py). JSON and date columns are read as text and decoded here (SQLite hands back text;
# psycopg decodes JSON and dates itself). Of the parameters only the system prompt matters to an export: the
# database extracts it (no dict decoded per row).
_RAW = ("history", "files", "created_at")
_NAMES = (
    "id",
    "user_id",
    "tab",
    "model_id",
    "prompt",
    "output_text",
    "history",
    "files",
    "conversation_id",
    "turn_index",
    "status",
    "created_at",
)
_GEN = Generation.__table__.c  # type: ignore[attr-defined]
_COLUMNS = [
    *(type_coerce(_GEN[name], Text).label(name) if name in _RAW else _GEN[name] for name in _NAMES),
    _GEN.params["system_prompt"].as_string().label("system_prompt"),
]
_BATCH = 5000


def _generation(v: Any, parse: Any = datetime.fromisoformat, loads: Any = json_loads) -> dict[str, Any]:
    """One row tuple in _COLUMNS order -> the generation's columns as a dict (inlined: it runs per row)."""
    history, files, created = v[6], v[7], v[11]
    if history.__class__ is str:  # SQLite: text; most rows have no history and no files
        history = [] if history == "[]" else loads(history)
    if files.__class__ is str:
        files = [] if files == "[]" else loads(files)
    return {
        "id": v[0],
        "user_id": v[1],
        "tab": v[2],
        "model_id": v[3],
        "prompt": v[4],
        "output_text": v[5],
        "history": history,
        "files": files,
        "conversation_id": v[8],
        "turn_index": v[9],
        "status": v[10],
        "created_at": parse(created) if created.__class__ is str else created,
        "system_prompt": v[12],
    }


def _fetch(session: Session, query: Any) -> Iterator[Any]:
    """The query's rows as the driver returns them (tuples), fetched a batch at a time."""
    result = session.connection().execute(query)
    try:
        while batch := result.cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        result.close()


def rated_rows(
    session: Session, *, user_id: int | None = None, tab: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every rated generation as a dict of its columns plus `rating` (+1/-1) and `reason`, one per vote,
    oldest first (an export's order follows the order things happened)."""
    rating = Rating.__table__.c  # type: ignore[attr-defined]
    query = sa_select(*_COLUMNS, rating.value.label("rating"), rating.reason.label("reason")).join(
        Rating.__table__,  # type: ignore[attr-defined]
        rating.generation_id == Generation.__table__.c.id,  # type: ignore[attr-defined]
    )
    query = _narrow(query, user_id=user_id, tab=tab, since=since, user_column=rating.user_id)
    rows = []
    for values in _fetch(session, query.order_by(rating.generation_id)):
        row = _generation(values)
        row["rating"], row["reason"] = values[13], values[14]
        rows.append(row)
    return rows


def preference_rows(
    session: Session, *, user_id: int | None = None, tab: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every A/B vote as {id, user_id, tab, choice, a: {generation columns}, b: {...}}, oldest first."""
    pref = Preference.__table__.c  # type: ignore[attr-defined]
    query = sa_select(
        pref.id, pref.user_id, pref.tab, pref.choice, pref.generation_a_id, pref.generation_b_id
    )
    query = _narrow(query, user_id=user_id, tab=tab, since=since, user_column=pref.user_id, table=pref)
    votes = list(session.execute(query.order_by(pref.id)).mappings())
    if not votes:
        return []
    ids = {v["generation_a_id"] for v in votes} | {v["generation_b_id"] for v in votes}
    gens = {row[0]: _generation(row) for row in _fetch(session, sa_select(*_COLUMNS).where(_GEN.id.in_(ids)))}
    return [
        {**vote, "a": gens[vote["generation_a_id"]], "b": gens[vote["generation_b_id"]]}
        for vote in votes
        if vote["generation_a_id"] in gens and vote["generation_b_id"] in gens
    ]


def _narrow(
    query: Any,
    *,
    user_id: int | None,
    tab: str | None,
    since: datetime | None,
    user_column: Any,
    table: Any = None,
) -> Any:
    columns = table if table is not None else Generation.__table__.c  # type: ignore[attr-defined]
    if user_id is not None:
        query = query.where(user_column == user_id)
    if tab:
        query = query.where(columns.tab == tab)
    if since is not None:
        query = query.where(columns.created_at >= since)
    return query


def rating_counts(
    session: Session, *, user_id: int | None = None, tab: str | None = None
) -> list[dict[str, Any]]:
    """Thumbs per tab and model: [{tab, model_id, up, down}] (the leaderboard's second half)."""
    gen = Generation.__table__.c  # type: ignore[attr-defined]
    rating = Rating.__table__.c  # type: ignore[attr-defined]
    up = func.sum(case((rating.value > 0, 1), else_=0)).label("up")
    down = func.sum(case((rating.value < 0, 1), else_=0)).label("down")
    query = sa_select(gen.tab, gen.model_id, up, down).join(
        Rating.__table__,  # type: ignore[attr-defined]
        rating.generation_id == gen.id,
    )
    query = _narrow(query, user_id=user_id, tab=tab, since=None, user_column=rating.user_id)
    return [dict(row) for row in session.execute(query.group_by(gen.tab, gen.model_id)).mappings()]
