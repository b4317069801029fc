"""Storage records: keyword-only reads and writes over an explicit session.

Owns: users, conversations, generations and ratings as the studio reads and writes them.
Ignores: models, torch and the UI. A generation is one row: written once when it ends
(`record_generation`), or begun as "running" and finished later (`begin_generation` /
`finish_generation`), each a short transaction never held open while a model runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from studio.storage.tables import Conversation, Generation, Preference, Rating, Status, User, utcnow


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
    session: Session, *, user_id: int, tab: str = "chat", limit: int = 100, containing: str = ""
) -> list[Conversation]:
    """Newest first; with `containing`, only those whose title or active turns (prompt or answer) contain it,
    ignoring case (a LIKE scan over one user's conversations, small enough not to need the FTS index)."""
    query = (
        select(Conversation)
        .where(Conversation.user_id == user_id, Conversation.tab == tab)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .limit(limit)
    )
    if containing.strip():
        pattern = "%" + containing.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_turns = select(Generation.conversation_id).where(
            col(Generation.active),
            col(Generation.prompt).ilike(pattern, escape="\\")
            | col(Generation.output_text).ilike(pattern, escape="\\"),
        )
        query = query.where(
            col(Conversation.title).ilike(pattern, escape="\\") | col(Conversation.id).in_(in_turns)
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
    """Delete a conversation with its generations, their ratings and A/B votes, in one transaction."""
    conv = get_conversation(session, conversation_id=conversation_id, user_id=user_id)
    if conv is None:
        return False
    gen_ids = select(Generation.id).where(Generation.conversation_id == conversation_id)
    session.exec(delete(Rating).where(col(Rating.generation_id).in_(gen_ids)))
    session.exec(
        delete(Preference).where(
            col(Preference.generation_a_id).in_(gen_ids) | col(Preference.generation_b_id).in_(gen_ids)
        )
    )
    session.exec(delete(Generation).where(col(Generation.conversation_id) == conversation_id))
    session.delete(conv)
    session.commit()
    return True


def detach_from_conversation(session: Session, *, generation_id: int) -> None:
    """Take a generation out of its conversation (an A/B side stored by the chat path is no conversation
    turn); the conversation goes too when no other turn is left in it. One commit."""
    row = session.get(Generation, generation_id)
    if row is None or row.conversation_id is None:
        return
    conversation_id = row.conversation_id
    row.conversation_id, row.turn_index = None, None
    session.add(row)
    session.flush()
    left = session.exec(select(Generation.id).where(Generation.conversation_id == conversation_id)).first()
    if left is None:
        session.exec(delete(Conversation).where(col(Conversation.id) == conversation_id))
    session.commit()


def active_turns(session: Session, *, conversation_id: int) -> list[Generation]:
    query = (
        select(Generation)
        .where(Generation.conversation_id == conversation_id, col(Generation.active))
        .order_by(col(Generation.turn_index))
    )
    return list(session.exec(query))


def kept_turns(session: Session, *, conversation_id: int) -> list[Generation]:
    """Every finished turn of a conversation, active or not (regenerated, edited away, continued), by turn
    index then age: the answers a user can browse back to."""
    query = (
        select(Generation)
        .where(
            Generation.conversation_id == conversation_id,
            col(Generation.status) != Status.RUNNING.value,
            col(Generation.turn_index).is_not(None),
        )
        .order_by(col(Generation.turn_index), col(Generation.id))
    )
    return list(session.exec(query))


def activate_turns(
    session: Session, *, conversation_id: int, from_index: int, generation_ids: list[int]
) -> None:
    """Make `generation_ids` the conversation's active turns from `from_index` on, in one commit: the active
    turns at or after it stop being active (they stay stored, as a regenerate leaves them)."""
    session.exec(
        update(Generation)
        .where(
            col(Generation.conversation_id) == conversation_id,
            col(Generation.active),
            col(Generation.turn_index) >= from_index,
        )
        .values(active=False)
    )
    if generation_ids:
        session.exec(
            update(Generation)
            .where(col(Generation.conversation_id) == conversation_id, col(Generation.id).in_(generation_ids))
            .values(active=True)
        )
    session.commit()


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


def begin_generation(session: Session, *, generation: Generation) -> Generation:
    """Store a generation as it starts: status "running", not yet an active turn (nothing shows it).

    A crash leaves it "running" until the next start marks it "interrupted" (`mark_interrupted`).
    Open the session with `expire_on_commit=False` to keep using the row after it closes.
    """
    generation.status, generation.active = Status.RUNNING.value, False
    session.add(generation)
    session.commit()
    return generation


def finish_generation(
    session: Session, *, generation: Generation, supersede_from: int | None = None
) -> Generation:
    """Write the outcome of a begun generation and make it an active turn, in one short commit."""
    generation.active = True
    return record_generation(session, generation=generation, supersede_from=supersede_from)


def mark_interrupted(session: Session, *, now: datetime | None = None, keep_owner: str | None = None) -> int:
    """Generations still "running" that nobody runs any more: say they were interrupted.

    Without `now`, every running row (one process per database: at its start, nothing else runs). With
    `now`, only rows whose lease expired before it, or that never had one (made before leases), and
    never `keep_owner`'s own (several processes on one database: each recovers only the dead ones')."""
    query = update(Generation).where(col(Generation.status) == Status.RUNNING.value)
    if now is not None:
        query = query.where(or_(col(Generation.lease_until).is_(None), col(Generation.lease_until) < now))
    if keep_owner is not None:
        query = query.where(or_(col(Generation.owner).is_(None), col(Generation.owner) != keep_owner))
    result = session.exec(
        query.values(status=Status.INTERRUPTED.value, error="the server stopped while this was generating")
    )
    session.commit()
    return int(result.rowcount or 0)


def interrupt_owners(session: Session, *, owners: list[str]) -> int:
    """Mark the running rows of these processes (known to be gone) interrupted, whatever their lease."""
    if not owners:
        return 0
    result = session.exec(
        update(Generation)
        .where(col(Generation.status) == Status.RUNNING.value, col(Generation.owner).in_(owners))
        .values(status=Status.INTERRUPTED.value, error="the server stopped while this was generating")
    )
    session.commit()
    return int(result.rowcount or 0)


def running_owners(session: Session) -> list[str]:
    """The processes that hold running rows."""
    query = select(Generation.owner).where(col(Generation.status) == Status.RUNNING.value).distinct()
    return [owner for owner in session.exec(query).all() if owner]


def renew_leases(session: Session, *, owner: str, until: datetime) -> int:
    """The heartbeat: extend the lease of every row `owner` is running; how many it holds."""
    result = session.exec(
        update(Generation)
        .where(col(Generation.status) == Status.RUNNING.value, col(Generation.owner) == owner)
        .values(lease_until=until)
    )
    session.commit()
    return int(result.rowcount or 0)


def get_generation(session: Session, *, generation_id: int) -> Generation | None:
    return session.get(Generation, generation_id)


def list_generations(
    session: Session,
    *,
    user_id: int | None = None,
    tab: str | None = None,
    limit: int = 50,
    include_running: bool = False,
) -> list[Generation]:
    """Newest first; generations still running are left out unless asked for."""
    query = (
        select(Generation).order_by(col(Generation.created_at).desc(), col(Generation.id).desc()).limit(limit)
    )
    if not include_running:
        query = query.where(col(Generation.status) != Status.RUNNING.value)
    if user_id is not None:
        query = query.where(Generation.user_id == user_id)
    if tab is not None:
        query = query.where(Generation.tab == tab)
    return list(session.exec(query))


def count_generations(session: Session, *, include_running: bool = False) -> int:
    query = select(func.count()).select_from(Generation)
    if not include_running:
        query = query.where(col(Generation.status) != Status.RUNNING.value)
    return int(session.exec(query).one())


# -- ratings ---------------------------------------------------------------------------------------
def set_rating(
    session: Session,
    *,
    generation_id: int,
    user_id: int,
    value: int | None,
    reason: str | None = None,
    comment: str | None = None,
) -> Rating | None:
    """Upsert a vote (+1/-1) with its optional reason and comment; None removes it. Clicking twice stores
    one row; a new vote replaces the reason and comment too. Committed durably."""
    with _durable(session):
        existing = session.exec(
            select(Rating).where(Rating.generation_id == generation_id, Rating.user_id == user_id)
        ).first()
        if value is None:
            if existing is not None:
                session.delete(existing)
                session.commit()
            return None
        if existing is None:
            existing = Rating(
                generation_id=generation_id, user_id=user_id, value=value, reason=reason, comment=comment
            )
        else:
            existing.value, existing.reason, existing.comment = value, reason, comment
            existing.updated_at = utcnow()
        session.add(existing)
        try:
            session.commit()
            return existing
        except IntegrityError:
            # The same vote arrived twice at once (a double click, two tabs): the other one stored it.
            session.rollback()
    return set_rating(
        session, generation_id=generation_id, user_id=user_id, value=value, reason=reason, comment=comment
    )


@contextmanager
def _durable(session: Session) -> Iterator[None]:
    """Commits inside get SQLite's full fsync: an acknowledged vote survives a crash and a power cut.

    The engine runs WAL with synchronous=NORMAL (fast, crash-safe, but a power cut may drop the last
    commits); a rating is a person's judgement and cannot be regenerated, so it pays for one fsync.
    SQLite refuses the pragma inside a transaction: it is set before the first write and reset after.
    """
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        session.commit()  # end any transaction the caller left open
        session.execute(text("PRAGMA synchronous=FULL"))
    try:
        yield
    finally:
        if sqlite:
            session.rollback()  # nothing is pending here; makes sure no transaction is open
            session.execute(text("PRAGMA synchronous=NORMAL"))


def ratings_for(session: Session, *, generation_ids: list[int], user_id: int) -> dict[int, int]:
    if not generation_ids:
        return {}
    rows = session.exec(
        select(Rating).where(col(Rating.generation_id).in_(generation_ids), Rating.user_id == user_id)
    )
    return {r.generation_id: r.value for r in rows}


def record_scores(session: Session, *, scores: dict[int, float | None], best_of: dict[str, Any]) -> None:
    """Best of n: each candidate's score, and the round's summary (`best_of`: chosen, candidates, cost) under
    `best_of_round` in every candidate's parameters, in one commit."""
    for row in session.exec(select(Generation).where(col(Generation.id).in_(list(scores)))):
        row.score = scores[row.id or 0]
        # A new dict: SQLAlchemy sees a JSON column change only when the value is replaced.
        row.params = {**row.params, "best_of_round": {**row.params.get("best_of_round", {}), **best_of}}
        session.add(row)
    session.commit()
