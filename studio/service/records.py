"""The user's own stored work, as the tabs and the CLI read it: conversations, votes and recent generations.

Owns: listing, reopening, renaming and deleting conversations; casting and reading a vote (with its optional
reason and comment); the recent-generations listing. Every read and write checks the requesting user.
Ignores: running models (the service's tab parts) and the Library's search and exports.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from studio import storage
from studio.errors import StudioError
from studio.service.core import StudioCore
from studio.service.library import feedback_fields
from studio.service.types import ChatTurn


class Records(StudioCore):
    """Reading and changing the user's stored conversations, votes and history."""

    def _turns_for(self, conversation_id: int | None, uid: int) -> list[storage.Generation]:
        """The active turns of a conversation the user owns ([] for a new one)."""
        if conversation_id is None:
            return []
        with Session(self.engine) as session:
            if storage.get_conversation(session, conversation_id=conversation_id, user_id=uid) is None:
                raise StudioError(f"conversation {conversation_id} does not exist")
            return storage.active_turns(session, conversation_id=conversation_id)

    def conversation(self, conversation_id: int, *, user: str | None = None) -> list[ChatTurn]:
        uid = self.user_id(user)
        turns = self._turns_for(conversation_id, uid)
        with Session(self.engine) as session:
            votes = storage.ratings_for(session, generation_ids=[t.id for t in turns if t.id], user_id=uid)
        return [
            ChatTurn(
                t.id or 0,
                t.prompt,
                t.output_text,
                votes.get(t.id or 0),
                t.status,
                t.error,
                list(t.notices),
                dict(t.params),
            )
            for t in turns
        ]

    def conversations(self, *, user: str | None = None, tab: str = "chat") -> list[tuple[int, str]]:
        with Session(self.engine) as session:
            rows = storage.list_conversations(session, user_id=self.user_id(user), tab=tab)
            return [(c.id or 0, c.title) for c in rows]

    def rename_conversation(self, conversation_id: int, title: str, *, user: str | None = None) -> None:
        if not isinstance(title, str) or not title.strip():
            raise StudioError("a conversation needs a non-empty title")
        with Session(self.engine) as session:
            if not storage.rename_conversation(
                session, conversation_id=conversation_id, user_id=self.user_id(user), title=title.strip()
            ):
                raise StudioError(f"conversation {conversation_id} does not exist")

    def delete_conversation(self, conversation_id: int, *, user: str | None = None) -> None:
        with Session(self.engine) as session:
            if not storage.delete_conversation(
                session, conversation_id=conversation_id, user_id=self.user_id(user)
            ):
                raise StudioError(f"conversation {conversation_id} does not exist")

    def rate(
        self,
        generation_id: int,
        vote: str | int | None,
        *,
        user: str | None = None,
        reason: str | list[str] | None = None,
        comment: str | None = None,
    ) -> None:
        """Record 'up' / 'down' (or +1 / -1) with an optional reason and comment; None removes the vote. The
        reason's tags are those that fit the vote (`library.reasons_for`: POSITIVE_REASONS for 'up',
        NEGATIVE_REASONS for 'down'). Repeating a vote changes nothing; a new one replaces the old with its
        reason."""
        values: dict[Any, int | None] = {"up": 1, "down": -1, 1: 1, -1: -1, None: None, "none": None}
        if isinstance(vote, bool) or not isinstance(vote, (str, int, type(None))) or vote not in values:
            raise StudioError(f"a vote is 'up', 'down' or none, not {vote!r}")
        reason, comment = feedback_fields(reason, comment, values[vote])
        uid = self.user_id(user)
        with Session(self.engine) as session:
            gen = storage.get_generation(session, generation_id=generation_id)
            if gen is None or gen.user_id != uid:
                raise StudioError(f"generation {generation_id} does not exist")
            storage.set_rating(
                session,
                generation_id=generation_id,
                user_id=uid,
                value=values[vote],
                reason=reason,
                comment=comment,
            )

    def rating(self, generation_id: int, *, user: str | None = None) -> int | None:
        """The user's vote on a generation: +1, -1 or None."""
        uid = self.user_id(user)
        with Session(self.engine) as session:
            votes = storage.ratings_for(session, generation_ids=[generation_id], user_id=uid)
        return votes.get(generation_id)

    def history(
        self, *, user: str | None = None, tab: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = storage.list_generations(session, user_id=self.user_id(user), tab=tab, limit=limit)
            votes = storage.ratings_for(
                session, generation_ids=[r.id for r in rows if r.id], user_id=self.user_id(user)
            )
            return [
                {
                    "generation_id": r.id,
                    "created_at": r.created_at.isoformat(timespec="seconds"),
                    "tab": r.tab,
                    "model": r.model_id,
                    "status": r.status,
                    "prompt": r.prompt,
                    "text": r.output_text,
                    "error": r.error,
                    "rating": votes.get(r.id or 0),
                }
                for r in rows
            ]
