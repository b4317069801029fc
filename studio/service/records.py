"""The user's own stored work, as the tabs and the CLI read it: conversations, votes and recent generations.

Owns: listing (and searching), reopening, renaming and deleting conversations; a turn's kept answers (which
one is shown, browsing to another and making it active) and its numbers (seed, tokens, speed, the token
limit); casting and reading a vote (with its optional reason and comment); the recent-generations listing.
Every read and write checks the requesting user.
Ignores: running models (the service's tab parts) and the Library's search and exports.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from studio import storage
from studio.errors import StudioError, quote
from studio.service.checks import whole_id
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
        """The active turns, each with its vote, its numbers (seed, tokens, speed) and its place among the
        turn's kept answers (see `browse_answer`)."""
        uid = self.user_id(user)
        turns = self._turns_for(conversation_id, uid)
        with Session(self.engine) as session:
            votes = storage.ratings_for(session, generation_ids=[t.id for t in turns if t.id], user_id=uid)
            kept = storage.kept_turns(session, conversation_id=conversation_id) if turns else []
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
                seed=t.seed,
                completion_tokens=t.completion_tokens,
                tokens_per_second=tokens_per_second(t),
                hit_limit=hit_limit(t),
                answer=[a.id for a in answers].index(t.id) + 1,
                answers=len(answers),
            )
            for t, answers in ((t, answers_of(kept, turns, t)) for t in turns)
        ]

    def browse_answer(
        self, conversation_id: int, turn_index: int, step: int, *, user: str | None = None
    ) -> list[ChatTurn]:
        """Show the turn's kept answer `step` places before (-1) or after (+1) the shown one, and make it the
        active turn: the next message follows it, and exports see it as the chosen answer. The later turns
        that followed it before come back with it; those that followed the other answer stay stored."""
        if isinstance(step, bool) or not isinstance(step, int) or isinstance(turn_index, bool):
            raise StudioError("browse an answer by a whole step, such as -1 or +1")
        uid = self.user_id(user)
        turns = self._turns_for(conversation_id, uid)
        if not isinstance(turn_index, int) or not 0 <= turn_index < len(turns):
            raise StudioError(f"turn {turn_index} does not exist; the conversation has {len(turns)} turn(s)")
        with Session(self.engine) as session:
            kept = storage.kept_turns(session, conversation_id=conversation_id)
        answers = answers_of(kept, turns, turns[turn_index])
        here = [a.id for a in answers].index(turns[turn_index].id)
        chosen = answers[min(max(here + step, 0), len(answers) - 1)]
        if chosen.id != turns[turn_index].id:
            self._activate(conversation_id, [*turns[:turn_index], chosen], kept)
        return self.conversation(conversation_id, user=user)

    def _activate(
        self, conversation_id: int, path: list[storage.Generation], kept: list[storage.Generation]
    ) -> None:
        """Make `path` (the turns up to the chosen answer) active, with the newest later turns that were
        asked after exactly that path, turn by turn."""
        start = len(path) - 1
        while later := [g for g in kept if g.turn_index == len(path) and g.history == messages_of(path)]:
            path.append(later[-1])
        with Session(self.engine) as session:
            storage.activate_turns(
                session,
                conversation_id=conversation_id,
                from_index=start,
                generation_ids=[g.id for g in path[start:] if g.id],
            )

    def conversations(
        self, *, user: str | None = None, tab: str = "chat", query: str = ""
    ) -> list[tuple[int, str]]:
        """(id, title) of the user's conversations in a tab, newest first; with `query`, only those whose
        title or turns contain it (ignoring case)."""
        if not isinstance(query, str):
            raise StudioError("a conversation search is text")
        with Session(self.engine) as session:
            rows = storage.list_conversations(
                session, user_id=self.user_id(user), tab=tab, containing=query[:200]
            )
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
            raise StudioError(f"a vote is 'up', 'down' or none, not {quote(vote)}")
        generation_id = whole_id(generation_id, "generation id")
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


def messages_of(turns: list[storage.Generation]) -> list[dict[str, str]]:
    """The history a turn after `turns` was sent (as `Generation.history` stores it)."""
    return [
        m
        for t in turns
        for m in ({"role": "user", "content": t.prompt}, {"role": "assistant", "content": t.output_text})
    ]


def answers_of(
    kept: list[storage.Generation], active: list[storage.Generation], turn: storage.Generation
) -> list[storage.Generation]:
    """The kept answers of an active turn, oldest first: the turns at its index that were asked after the same
    conversation (an edit's answer counts, with its own message; one asked after another branch does not)."""
    before = messages_of(active[: turn.turn_index or 0])
    same = [g for g in kept if g.turn_index == turn.turn_index and (g.id == turn.id or g.history == before)]
    return same or [turn]


def tokens_per_second(turn: storage.Generation) -> float | None:
    """Decoding speed: the tokens after the first over the time after it (waiting, loading and the prompt's
    prefill come before the first token)."""
    tokens, total, first = turn.completion_tokens, turn.duration_ms, turn.first_token_ms
    if not tokens or tokens < 2 or total is None or first is None or total <= first:
        return None
    return (tokens - 1) / ((total - first) / 1000)


def hit_limit(turn: storage.Generation) -> bool:
    """Whether the answer stopped because it reached max_new_tokens (not because the model finished)."""
    limit = turn.params.get("max_new_tokens")
    return (
        turn.status == "ok"
        and isinstance(limit, int)
        and limit > 0
        and (turn.completion_tokens or 0) >= limit
    )
