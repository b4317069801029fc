"""The Chat tab's part of the service: one turn of a conversation (send, regenerate, edit, continue).

Owns: turning an action on a stored conversation into a model request (the history before the turn, the
prompt, the text to continue from), streaming the answer as `ChatUpdate`s through the run lifecycle
(runs.py), and storing the turn: one generation row, the conversation made (and titled) on its first turn,
a regenerated or edited turn superseding the ones after it. The Code tab's turns run here too (tab "code").
Ignores: Gradio, SQL details (storage), model internals (backends) and the code settings (code.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any, Literal

from sqlmodel import Session

from studio import storage
from studio.backends import Message, Request, TextDelta, Usage
from studio.errors import StudioError, quote
from studio.service.checks import (
    context_tokens,
    model_for,
    params_for,
    prompt_text,
    require_weights,
    token_limits,
)
from studio.service.records import Records
from studio.service.runs import Loading, Run, Waiting
from studio.service.types import ChatUpdate, Status

Action = Literal["send", "regenerate", "edit", "continue"]
ACTIONS: tuple[str, ...] = ("send", "regenerate", "edit", "continue")
TITLE_CHARS = 80


def limit_notice(limit: int) -> str:
    return (
        f"The answer stopped at the limit of {limit} new tokens (max_new_tokens): Continue goes on from here."
    )


def conversation_title(typed: str) -> str:
    """A new conversation's title: the first message on one line, cut at a word (with "…") when longer than
    TITLE_CHARS, so that the list shows whole words."""
    line = " ".join(typed.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = (
        line[: TITLE_CHARS - 1].rsplit(" ", 1)[0]
        if " " in line[: TITLE_CHARS - 1]
        else line[: TITLE_CHARS - 1]
    )
    return cut.rstrip(" ,.;:") + "…"


class ChatTab(Records):
    """`Studio.chat`: one streamed turn, stored as one row whatever happens."""

    def chat(
        self,
        *,
        model_id: str,
        message: str | None = None,
        params: dict[str, Any] | None = None,
        conversation_id: int | None = None,
        action: Action = "send",
        turn_index: int | None = None,
        user: str | None = None,
        run_key: str | None = None,
        tab: str = "chat",
        extras: dict[str, Any] | None = None,
    ) -> Iterator[ChatUpdate]:
        """Run one chat turn and stream its text. Validation errors raise StudioError before any row."""
        spec = model_for(self.config, model_id, tab)
        require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        validated = params_for(spec, params, tab)
        context = context_tokens(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        token_limits(validated, cap=self.settings.max_new_tokens, context=context)
        uid = self.user_id(user)
        turns = self._turns_for(conversation_id, uid)
        if action not in ACTIONS:
            raise StudioError(f"unknown action {quote(action)}")
        if action == "send":
            prompt, index, continue_from = prompt_text(message), len(turns), None
        else:
            if not turns:
                raise StudioError(f"nothing to {action}: the conversation has no turns yet")
            index = len(turns) - 1 if turn_index is None else turn_index
            if not 0 <= index < len(turns):
                raise StudioError(f"turn {index} does not exist; the conversation has {len(turns)} turn(s)")
            target = turns[index]
            prompt = prompt_text(message) if action == "edit" else target.prompt
            continue_from = target.output_text if action == "continue" else None
        history = [  # a turn the safety check blocked is not sent to the model again
            m
            for t in turns[:index]
            if t.status != Status.BLOCKED
            for m in (Message("user", t.prompt), Message("assistant", t.output_text))
        ]
        # Pasted code can outgrow the context by itself: the code tab cuts it, with a notice, not refuses.
        request = Request(
            prompt=prompt,
            params=validated,
            history=history,
            continue_from=continue_from,
            truncate_prompt=tab == "code",
        )
        row = storage.Generation(
            user_id=uid,
            conversation_id=conversation_id,
            turn_index=index,
            parent_id=turns[index].id if index < len(turns) else None,
            action=action,
            tab=tab,
            model_id=model_id,
            prompt=prompt,
            params={**validated.model_dump(), **(extras or {})},
            history=[{"role": m.role, "content": m.content} for m in history],
            seed=getattr(validated, "seed", None),
        )
        yield from self._stream_turn(
            spec.id, request, row, supersede=index if index < len(turns) else None, run_key=run_key
        )

    def _stream_turn(
        self,
        model_id: str,
        request: Request,
        row: storage.Generation,
        *,
        supersede: int | None,
        run_key: str | None,
    ) -> Iterator[ChatUpdate]:
        prefix = request.continue_from or ""
        pieces: list[str] = []

        def save(run: Run[storage.Generation]) -> storage.Generation:
            row.output_text = run.shown_text(prefix + "".join(pieces))  # a notice when safety blocked it
            row.status, row.error, row.notices = run.status.value, run.error, run.notices
            row.duration_ms = run.seconds * 1000
            row.first_token_ms = (run.first_output - run.started) * 1000 if run.first_output else None
            return self._save_turn(row, supersede)

        run = Run(self, model_id=model_id, request=request, row=row, save=save, run_key=run_key)
        with closing(run.events()) as events:
            for event in events:
                if isinstance(event, Waiting):
                    yield ChatUpdate(prefix, conversation_id=row.conversation_id, notices=[event.text])
                elif isinstance(event, Loading):
                    yield ChatUpdate(prefix, status=Status.LOADING, conversation_id=row.conversation_id)
                elif isinstance(event, TextDelta):
                    run.mark_output()
                    pieces.append(event.text)
                    if not run.stopped:  # drain what was already generated without streaming it
                        text = prefix + "".join(pieces)
                        yield ChatUpdate(text, conversation_id=row.conversation_id, notices=run.notices)
                elif isinstance(event, Usage):
                    row.prompt_tokens, row.completion_tokens = event.prompt_tokens, event.completion_tokens
                    limit = getattr(request.params, "max_new_tokens", None)
                    if not run.stopped and limit and (event.completion_tokens or 0) >= limit:
                        # Otherwise a cut-off answer reads as the model's whole answer.
                        run.notices.append(limit_notice(limit))
        saved = run.result
        assert saved is not None
        yield ChatUpdate(
            saved.output_text,
            done=True,
            status=run.status,
            generation_id=saved.id,
            conversation_id=saved.conversation_id,
            error=run.error,
            notices=run.notices,
        )

    def _save_turn(self, row: storage.Generation, supersede: int | None) -> storage.Generation:
        with Session(self.engine, expire_on_commit=False) as session:
            if row.conversation_id is None and row.tab in ("chat", "code"):
                # Titled by what the user typed (a code turn's prompt is the filled-in template).
                typed = (row.params.get("code") or {}).get("input") or row.prompt
                title = conversation_title(typed)
                conv = storage.create_conversation(
                    session, user_id=row.user_id, title=title, model_id=row.model_id, tab=row.tab
                )
                row.conversation_id = conv.id
            return storage.finish_generation(session, generation=row, supersede_from=supersede)
