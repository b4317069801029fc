"""The "why?" panel every tab shows after a thumbs vote: reason tags and a comment stored with the vote.

Owns: the panel's controls, showing it for the generation just voted on (with what is stored, the reasons
that fit the vote: positive after 👍, negative after 👎, and a heading in the user's words: "this answer",
"this picture", "this clip"), saving a reason and comment through `Studio.rate`, the idempotent thumbs click
every tab uses, a chatbot's thumbs (Chat, Code) and the public `/rate` API endpoint.
Ignores: validation of tags and comments (the service does it for browser and API alike) and what each tab
shows about its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.service import Studio, StudioError
from studio.service.checks import whole_id
from studio.service.library import MAX_COMMENT, NEGATIVE_REASONS, reasons_for
from studio.ui.conversation import PRIVATE, user_of

VOTES = {1: "up", -1: "down"}
# What a tab's outputs are called in the panel's heading (by the panel's elem id prefix).
NOUNS = {"image": "picture", "speech": "clip", "music": "clip"}


def cast_vote(studio: Studio, gid: int, value: str | None, user: str | None) -> None:
    """Store a thumbs click. Clicking the vote already stored changes nothing (its reason and comment stay);
    a different vote replaces it and clears them (they explained the other vote)."""
    current = studio.rating(gid, user=user)
    if value is not None and VOTES.get(current or 0) == value:
        return
    studio.rate(gid, value, user=user)


def vote_value(liked: Any) -> str | None:
    """gr.LikeData.liked -> 'up' / 'down' / None (a vote taken back)."""
    return {True: "up", False: "down"}.get(liked) if isinstance(liked, bool) else None


def vote_handler(studio: Studio) -> Any:
    """A chatbot `.like` handler: store the vote on the generation behind the clicked reply; outputs a
    notice and that generation's id (for the feedback panel)."""

    def vote(data: gr.LikeData, conv: int | None, request: gr.Request) -> tuple[str, int | None]:
        user = user_of(request)
        index = data.index if isinstance(data.index, int) else data.index[0]
        turns = studio.conversation(conv, user=user) if conv else []
        if not 0 <= index // 2 < len(turns):
            return "That message is not saved yet; vote again when it has finished.", None
        gid = turns[index // 2].generation_id
        cast_vote(studio, gid, vote_value(data.liked), user)
        return "", gid

    return vote


@dataclass
class FeedbackPanel:
    studio: Studio
    noun: str  # "answer", "picture", "clip"
    box: Any
    gid: Any  # gr.State: the generation the panel is about
    heading: Any
    reasons: Any
    comment: Any
    note: Any

    @property
    def outputs(self) -> list[Any]:
        return [self.box, self.heading, self.reasons, self.comment, self.note]

    def chatbot_votes(self, chatbot: Any, conversation: Any, notice: Any) -> None:
        """A chatbot's thumbs: the vote goes on the generation behind the clicked reply, then the panel
        opens for it (`notice` says when that reply is not stored yet)."""
        self.after(chatbot.like(vote_handler(self.studio), [conversation], [notice, self.gid], **PRIVATE))

    def after(self, event: Any, source: Any = None) -> Any:
        """Show the panel once a vote event has run, for the generation in `source` (default: its own gid,
        which a chatbot vote handler fills in)."""
        source = self.gid if source is None else source
        return event.then(self._show, source, [self.gid, *self.outputs], **PRIVATE)

    def _show(self, gid: int | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        detail = self.studio.vote_detail(gid, user=user) if gid is not None else {"vote": None}
        if detail["vote"] is None:  # no vote (or it was taken back): nothing to explain
            return gid, gr.Group(visible=False), gr.skip(), [], "", ""
        liked = detail["vote"] > 0
        mark, verb = ("👍", "like") if liked else ("👎", "dislike")
        heading = f"{mark} Why did you {verb} this {self.noun}? (optional)"
        reasons = gr.CheckboxGroup(choices=list(reasons_for(detail["vote"])), value=detail["reasons"])
        return gid, gr.Group(visible=True), heading, reasons, detail["comment"], ""


def feedback_panel(studio: Studio, prefix: str) -> FeedbackPanel:
    """Build the (hidden) panel where it is called; elem ids `<prefix>-feedback-*`."""
    with gr.Group(visible=False, elem_id=f"{prefix}-feedback") as box:
        heading = gr.Markdown(elem_id=f"{prefix}-feedback-heading")
        with gr.Row():
            # The choices follow the vote when the panel opens (see _show).
            reasons = gr.CheckboxGroup(
                list(NEGATIVE_REASONS), show_label=False, elem_id=f"{prefix}-feedback-reasons"
            )
            comment = gr.Textbox(
                label="Comment (optional)", max_length=MAX_COMMENT, elem_id=f"{prefix}-feedback-comment"
            )
        with gr.Row():
            save = gr.Button("Save reason", size="sm", elem_id=f"{prefix}-feedback-save")
            note = gr.Markdown(elem_id=f"{prefix}-feedback-note")
    noun = NOUNS.get(prefix, "answer")
    panel = FeedbackPanel(studio, noun, box, gr.State(None), heading, reasons, comment, note)

    def store(gid: int | None, why: list[str], text: str, request: gr.Request) -> str:
        user = user_of(request)
        try:
            vote = studio.rating(gid, user=user) if gid is not None else None
            if gid is None or vote is None:
                raise StudioError("vote 👍 or 👎 first; the reason goes with the vote")
            studio.rate(gid, VOTES[vote], user=user, reason=why, comment=text)
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return f"Saved with your vote on this {noun}."

    save.click(store, [panel.gid, reasons, comment], note, **PRIVATE)
    return panel


def rate_api(studio: Studio) -> Any:
    """The `/rate` endpoint: a vote ('up', 'down', '' or 'none' to remove it) with optional reason tags
    (comma-separated: POSITIVE_REASONS for 'up', NEGATIVE_REASONS for 'down') and comment."""

    def rate(
        generation_id: float, value: str, request: gr.Request, reason: str = "", comment: str = ""
    ) -> str:
        try:
            vote = None if value in ("", "none") else value
            studio.rate(
                whole_id(generation_id, "generation id"),
                vote,
                user=user_of(request),
                reason=reason if vote else None,
                comment=comment if vote else None,
            )
        except (StudioError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return "ok"

    return rate
