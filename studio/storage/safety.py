"""The safety stage's audit trail: writing and listing `safety_event` rows, and which generations it marked.

Owns: `add_safety_events`, `list_safety_events` (newest first, with the user's name), `moderated_generations`
(generation id -> "flag" or "block", what exports leave out) and `blocked_outputs` (the withheld outputs and
their prompts, for the `safety` export).
Ignores: what the checkers are and what the policies mean (studio/service/safety.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from studio.storage.tables import Generation, SafetyEvent, User


def add_safety_events(session: Session, *, events: list[SafetyEvent]) -> None:
    """Store events in one short commit."""
    if events:
        session.add_all(events)
        session.commit()


def list_safety_events(
    session: Session,
    *,
    limit: int = 200,
    user_id: int | None = None,
    tab: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The latest events, newest first, as dicts with the user's name (withheld text left out)."""
    query = select(SafetyEvent, User.name).join(User, col(User.id) == col(SafetyEvent.user_id))
    if user_id is not None:
        query = query.where(SafetyEvent.user_id == user_id)
    if tab:
        query = query.where(SafetyEvent.tab == tab)
    if since is not None:
        query = query.where(col(SafetyEvent.created_at) >= since)
    query = query.order_by(col(SafetyEvent.id).desc()).limit(limit)
    out = []
    for event, name in session.exec(query):
        row = event.model_dump(exclude={"withheld"})
        row["user"] = name
        out.append(row)
    return out


def moderated_generations(session: Session, *, generation_ids: list[int] | None = None) -> dict[int, str]:
    """Generation id -> "block" or "flag" for every generation the safety stage flagged or blocked (a block
    wins); faults are not marks. `generation_ids` narrows the look-up."""
    query = select(SafetyEvent.generation_id, SafetyEvent.action).where(
        col(SafetyEvent.generation_id).is_not(None), col(SafetyEvent.action).in_(("flag", "block"))
    )
    if generation_ids is not None:
        query = query.where(col(SafetyEvent.generation_id).in_(generation_ids))
    marks: dict[int, str] = {}
    for generation_id, action in session.exec(query):
        if generation_id is not None and marks.get(generation_id) != "block":
            marks[generation_id] = action
    blocked = select(Generation.id).where(Generation.status == "blocked")
    if generation_ids is not None:
        blocked = blocked.where(col(Generation.id).in_(generation_ids))
    for generation_id in session.exec(blocked):
        if generation_id is not None:
            marks[generation_id] = "block"
    return marks


def blocked_outputs(
    session: Session, *, user_id: int | None = None, tab: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every blocked text output with its prompt: [{generation_id, tab, model_id, prompt, completion,
    category, created_at}], oldest first."""
    query = (
        select(SafetyEvent, Generation)
        .join(Generation, col(Generation.id) == col(SafetyEvent.generation_id))
        .where(SafetyEvent.stage == "output", SafetyEvent.action == "block")
        .where(col(SafetyEvent.withheld).is_not(None))
    )
    if user_id is not None:
        query = query.where(SafetyEvent.user_id == user_id)
    if tab:
        query = query.where(SafetyEvent.tab == tab)
    if since is not None:
        query = query.where(col(SafetyEvent.created_at) >= since)
    return [
        {
            "generation_id": gen.id,
            "tab": gen.tab,
            "model_id": gen.model_id,
            "prompt": gen.prompt,
            "completion": event.withheld,
            "category": event.category,
            "created_at": event.created_at,
        }
        for event, gen in session.exec(query.order_by(col(SafetyEvent.id)))
    ]
