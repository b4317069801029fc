"""How Chat and Code run a turn and wire the buttons around it; the two differ in what a run shows.

Owns: a run's updates while it streams (throttled, as chatbot messages with a notice) and the notes that
close it, the Send / Regenerate / Continue handlers over a tab's `run` generator (Regenerate also on the
chatbot's retry icon; Regenerate and Continue checked before queueing), New (also the chatbot's trash
icon), and the Sampling panel following the chosen model's defaults. Ignores: what a tab's run shows in
its own panes, and everything the service decides (validation, storage, models).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from studio.service import ChatTurn, Studio, StudioError
from studio.ui.conversation import GENERATION_QUEUE, PARAM_NAMES, PRIVATE, messages, user_of

# While streaming, send at most this many chatbot updates a second: each one costs Gradio a few
# milliseconds (benchmarks/chat_overhead.py), more than a token of a small model takes.
UPDATES_PER_SECOND = 20


def throttled(updates: Iterator[Any]) -> Iterator[Any]:
    """The updates of a run worth sending to the browser: every non-running one (loading, the final
    one), and running ones at most UPDATES_PER_SECOND a second."""
    throttle = Throttle()
    for update in updates:
        if update.done or update.status != "running" or throttle.ready():
            yield update


class Throttle:
    """Let through the first update, then at most UPDATES_PER_SECOND a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if self.last and now - self.last < 1 / UPDATES_PER_SECOND:
            return False
        self.last = now
        return True


class Streamed:
    """A run's updates while it streams, each with the chatbot messages and the notice to show for it;
    `final` holds the last update (`done`) once iteration ends."""

    def __init__(self, updates: Iterator[Any], model_id: str, shown: list[ChatTurn], prompt: str | None):
        self.updates, self.model_id, self.shown, self.prompt = updates, model_id, shown, prompt or ""
        self.final: Any = None

    def __iter__(self) -> Iterator[tuple[Any, list[dict[str, str]], str]]:
        for update in throttled(self.updates):
            if update.done:
                self.final = update
                return
            note = f"Loading {self.model_id}…" if update.status == "loading" else " ".join(update.notices)
            yield update, messages(self.shown, (self.prompt, update.text)), note


def closing_notes(final: Any, *more: str) -> list[str]:
    """The notice of a finished run: its notices, `more`, and whether it stopped or failed. A failure is
    also a toast rather than gr.Error, whose overlay would hide the chat and the box the user needs to fix
    (it is stored and shown inline; API callers read it from the notice output)."""
    notes = [*final.notices, *more] + (["Stopped."] if final.status == "stopped" else [])
    if final.status == "error":
        notes.append(f"Error: {final.error}")
        gr.Warning(final.error or "generation failed")
    return notes


def follow_model_defaults(studio: Studio, model: Any, sampling: list[Any], tab: str) -> None:
    """Choosing a model shows its defaults for the tab in the Sampling panel, or its first answer would
    use the previous model's."""

    def model_defaults(model_id: str) -> list[Any]:
        try:
            params = studio.default_params(model_id, tab=tab)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return [params[name] for name in PARAM_NAMES]

    model.input(model_defaults, model, sampling, **PRIVATE)


# A tab's `run(action, text, conversation, ..., key, *sampling, request=...)` generator as event handlers.
# Gradio injects `request` by its annotation and by position, so it comes before `*args`.
def send_handler(run: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def send(request: gr.Request, text: str, *args: Any) -> Iterator[Any]:
        yield from run("send", text, *args, request=request)

    return send


def wire_redo(
    studio: Studio,
    run: Callable[..., Iterator[Any]],
    buttons: tuple[Any, Any],
    chatbot: Any,
    conversation: Any,
    io: tuple[list[Any], list[Any]],
    noun: str,
    api_prefix: str = "",
) -> list[Any]:
    """Regenerate (its button and the chatbot's retry icon) and Continue (buttons: regenerate, continue)
    over `run`, with `io` its inputs and outputs; returns the three run events. A button first checks that
    there is a turn to redo: a toast before queueing, where a failed run would put Gradio's error overlay
    over every output. API callers call `<api_prefix>regenerate` / `continue` and get the service's errors."""
    inputs, outputs = io

    def regenerate(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("regenerate", None, *args, request=request)

    def keep_going(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("continue", None, *args, request=request)

    def checked(button: Any, action: str, handler: Callable[..., Iterator[Any]]) -> Any:
        def check(conv: int | None, request: gr.Request) -> None:
            if not conv or not studio.conversation(conv, user=user_of(request)):
                raise gr.Error(f"nothing to {action}: the {noun} has no turns yet")

        return button.click(check, conversation, None, **PRIVATE).success(
            handler, inputs, outputs, api_name=f"{api_prefix}{action}", **GENERATION_QUEUE
        )

    regen_btn, continue_btn = buttons
    return [
        checked(regen_btn, "regenerate", regenerate),
        chatbot.retry(regenerate, inputs, outputs, **PRIVATE, **GENERATION_QUEUE),
        checked(continue_btn, "continue", keep_going),
    ]


def wire_new(button: Any, chatbot: Any, new: Callable[[], Any], outputs: list[Any]) -> None:
    """The New button and the chatbot's trash icon both run `new`. The icon alone only empties the view:
    the next run would silently continue the hidden conversation (and send its history to the model)."""
    button.click(new, None, outputs, **PRIVATE)
    chatbot.clear(new, None, outputs, **PRIVATE)
