"""The output a media tab (Image, Speech, Music) has selected, and the buttons that act on it.

Owns: the selected generation id (a `gr.State`), the toast when a button needs an output and none is
selected, 👍/👎 on it (then the "why?" panel of studio/ui/feedback.py) and "Reuse settings", which reads
its stored settings back into the tab's controls. Ignores: how a tab describes an output, which controls
its settings fill, and what the service stores (`Studio.rate`, `generation_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from studio.service import Studio
from studio.ui.conversation import PRIVATE, user_of
from studio.ui.feedback import FeedbackPanel, cast_vote

Describe = Callable[[int, str | None], str]  # (generation id, user) -> Markdown about that output
Values = Callable[[dict[str, Any]], list[Any]]  # stored params -> the values of a tab's controls


def thumb_buttons(prefix: str) -> tuple[Any, Any]:
    """The 👍 and 👎 buttons, built where called (in the tab's button row); elem ids `<prefix>-like`,
    `<prefix>-dislike`."""
    return (
        gr.Button("👍 Like", size="sm", elem_id=f"{prefix}-like"),
        gr.Button("👎 Dislike", size="sm", elem_id=f"{prefix}-dislike"),
    )


def vote_mark(studio: Studio, gid: int, user: str | None) -> str:
    """The user's vote on an output, as its description shows it."""
    return {1: "👍 liked", -1: "👎 disliked"}.get(studio.rating(gid, user=user) or 0, "no vote")


def stored(params: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
    """The stored values of `names`, in that order; one a generation lacks leaves its control as it is."""
    return [params.get(name, gr.skip()) for name in names]


@dataclass
class Selection:
    studio: Studio
    missing: str  # the toast when a button needs an output and none is selected
    gid: Any = field(default_factory=lambda: gr.State(None))  # generation id of the selected output

    def require(self, gid: int | None) -> int:
        if gid is None:
            raise gr.Error(self.missing, print_exception=False)
        return gid

    def thumbs(
        self, buttons: tuple[Any, Any], info: Any, describe: Describe, feedback: FeedbackPanel
    ) -> None:
        """👍/👎 store the vote on the selected output, describe it again in `info` (the description shows
        the vote), then open the feedback panel for it."""

        def vote(value: str) -> Any:
            def handler(gid: int | None, request: gr.Request) -> str:
                picked, user = self.require(gid), user_of(request)
                cast_vote(self.studio, picked, value, user)
                return describe(picked, user)

            return handler

        for button, value in zip(buttons, ("up", "down"), strict=True):
            feedback.after(button.click(vote(value), self.gid, info, **PRIVATE), self.gid)

    def reuse(self, button: Any, outputs: list[Any], values: Values) -> None:
        """The "Reuse settings" button: fill `outputs` with the selected output's model, prompt and
        `values(params)`."""

        def reuse(gid: int | None, request: gr.Request) -> list[Any]:
            settings = self.studio.generation_settings(self.require(gid), user=user_of(request))
            return [settings["model"], settings["prompt"], *values(settings["params"])]

        button.click(reuse, self.gid, outputs, **PRIVATE)
