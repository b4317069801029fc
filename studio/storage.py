"""Storage: SQLModel tables and keyword-only functions over an explicit session.

Owns: the schema (user, conversation, generation, rating), engine set-up (SQLite WAL, busy timeout,
foreign keys; any SQLAlchemy URL otherwise) and every read and write the studio makes.
Ignores: models, torch and the UI. One generation is one row written once, when it ends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Engine, UniqueConstraint, event, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, create_engine, delete, select


def utcnow() -> datetime:
    return datetime.now(UTC)


# Plain functions, not the `list`/`dict` built-ins: pydantic inspects a built-in factory's signature on
# every construction (0.35 -> 0.09 ms per Generation, benchmarks/image_overhead.py).
def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[str, Any]:
    return {}


class User(SQLModel, table=True):
    __tablename__ = "user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    tab: str = "chat"
    title: str = Field(default="New chat", max_length=200)
    model_id: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Generation(SQLModel, table=True):
    __tablename__ = "generation"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    turn_index: int | None = None  # position of this exchange in its conversation
    active: bool = True  # False once regenerated, edited away or continued
    parent_id: int | None = None  # the generation this one regenerates / continues
    action: str = "send"  # send | regenerate | edit | continue
    tab: str = Field(index=True)
    model_id: str = Field(index=True)
    prompt: str
    params: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    history: list[dict[str, str]] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    output_text: str = ""
    files: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    notices: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    seed: int | None = None
    status: str = "ok"  # ok | error | stopped
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: float | None = None
    duration_ms: float | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Rating(SQLModel, table=True):
    __tablename__ = "rating"
    __table_args__ = (UniqueConstraint("generation_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    generation_id: int = Field(foreign_key="generation.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    value: int  # +1 or -1
    reason: str | None = None
    comment: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


def make_engine(url: str) -> Engine:
    """Create the engine and the tables; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL survives a process crash; only power loss can drop the last commits.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine)
    return engine


# -- users -------------------------------------------------------------------------------------
def get_or_create_user(session: Session, *, name: str) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is not None:
        return user
    try:
        user = User(name=name)
        session.add(user)
        session.commit()
    except IntegrityError:
        # Another request created the same user between our read and our write: use theirs.
        session.rollback()
        return session.exec(select(User).where(User.name == name)).one()
    session.refresh(user)
    return user


# -- conversations ---------------------------------------------------------------------------------
def create_conversation(
    session: Session, *, user_id: int, title: str, model_id: str, tab: str = "chat"
) -> Conversation:
    conv = Conversation(user_id=user_id, title=title[:200], model_id=model_id, tab=tab)
    session.add(conv)
    session.flush()  # assigns the id inside the caller's transaction
    return conv


def get_conversation(session: Session, *, conversation_id: int, user_id: int) -> Conversation | None:
    conv = session.get(Conversation, conversation_id)
    return conv if conv is not None and conv.user_id == user_id else None


def list_conversations(
    session: Session, *, user_id: int, tab: str = "chat", limit: int = 100
) -> list[Conversation]:
    query = (
        select(Conversation)
        .where(Conversation.user_id == user_id, Conversation.tab == tab)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .limit(limit)
    )
    return list(session.exec(query))


def rename_conversation(session: Session, *, conversation_id: int, user_id: int, title: str) -> bool:
    conv = get_conversation(session, conversation_id=conversation_id, user_id=user_id)
    if conv is None:
        return False
    conv.title = title[:200]
    session.add(conv)
    session.commit()
    return True


def delete_conversation(session: Session, *, conversation_id: int, user_id: int) -> bool:
    """Delete a conversation with its generations and their ratings, in one transaction."""
    conv = get_conversation(session, conversation_id=conversation_id, user_id=user_id)
    if conv is None:
        return False
    gen_ids = select(Generation.id).where(Generation.conversation_id == conversation_id)
    session.exec(delete(Rating).where(col(Rating.generation_id).in_(gen_ids)))
    session.exec(delete(Generation).where(col(Generation.conversation_id) == conversation_id))
    session.delete(conv)
    session.commit()
    return True


def active_turns(session: Session, *, conversation_id: int) -> list[Generation]:
    query = (
        select(Generation)
        .where(Generation.conversation_id == conversation_id, col(Generation.active))
        .order_by(col(Generation.turn_index))
    )
    return list(session.exec(query))


# -- generations -----------------------------------------------------------------------------------
def record_generation(
    session: Session, *, generation: Generation, supersede_from: int | None = None
) -> Generation:
    """Write one finished generation (any status) in one commit.

    With `supersede_from`, active turns of the conversation at or after that index stop being
    active: they were regenerated, edited away or continued. They stay in the table (nothing lost).
    The row is not re-read after the commit (it would cost a round trip per turn): open the session with
    `expire_on_commit=False` to use the returned row after the session closes.
    """
    if generation.conversation_id is not None and supersede_from is not None:
        for old in session.exec(
            select(Generation).where(
                Generation.conversation_id == generation.conversation_id,
                col(Generation.active),
                col(Generation.turn_index) >= supersede_from,
            )
        ):
            old.active = False
            session.add(old)
    if generation.conversation_id is not None:
        conv = session.get(Conversation, generation.conversation_id)
        if conv is not None:
            conv.updated_at = utcnow()
            conv.model_id = generation.model_id
            session.add(conv)
    session.add(generation)
    session.commit()  # the id is assigned by the flush; no refresh round-trip needed
    return generation


def get_generation(session: Session, *, generation_id: int) -> Generation | None:
    return session.get(Generation, generation_id)


def list_generations(
    session: Session, *, user_id: int | None = None, tab: str | None = None, limit: int = 50
) -> list[Generation]:
    query = (
        select(Generation).order_by(col(Generation.created_at).desc(), col(Generation.id).desc()).limit(limit)
    )
    if user_id is not None:
        query = query.where(Generation.user_id == user_id)
    if tab is not None:
        query = query.where(Generation.tab == tab)
    return list(session.exec(query))


def count_generations(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(Generation)).one())


# -- ratings ---------------------------------------------------------------------------------------
def set_rating(session: Session, *, generation_id: int, user_id: int, value: int | None) -> Rating | None:
    """Upsert a vote (+1/-1); None removes it. Clicking twice stores one row."""
    existing = session.exec(
        select(Rating).where(Rating.generation_id == generation_id, Rating.user_id == user_id)
    ).first()
    if value is None:
        if existing is not None:
            session.delete(existing)
            session.commit()
        return None
    if existing is None:
        existing = Rating(generation_id=generation_id, user_id=user_id, value=value)
    else:
        existing.value = value
        existing.updated_at = utcnow()
    session.add(existing)
    session.commit()
    session.refresh(existing)
    return existing


def ratings_for(session: Session, *, generation_ids: list[int], user_id: int) -> dict[int, int]:
    if not generation_ids:
        return {}
    rows = session.exec(
        select(Rating).where(col(Rating.generation_id).in_(generation_ids), Rating.user_id == user_id)
    )
    return {r.generation_id: r.value for r in rows}
