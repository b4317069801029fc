"""How Chat and Code run a turn and wire the buttons around it; the two differ in what a run shows.

Owns: a run's updates while it streams (throttled, as chatbot messages with a notice) and the notes that
close it, the Send / Regenerate / Continue handlers over a tab's `run` generator (Regenerate also on the
chatbot's retry icon; Regenerate and Continue checked before queueing), the Stop button's state (active
only while a run goes), New and Delete (the chatbot's trash icon deletes, as its picture says), and the
Sampling panel following the chosen model's defaults. Ignores: what a tab's run shows in its own panes,
and everything the service decides (validation, storage, models).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr

from studio.service import ChatTurn, Studio, StudioError
from studio.ui.conversation import GENERATION_QUEUE, PARAM_NAMES, PRIVATE, messages, refused, render, user_of

# What a one-line message box does (Gradio 6 sends on Enter only when `lines=1`; see ui/chat.py).
ENTER_SENDS = "Message (Enter to send, Shift+Enter for a new line)"

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

    def __init__(
        self,
        updates: Iterator[Any],
        model_id: str,
        shown: list[ChatTurn],
        prompt: str | None,
        loading: str | None = None,
    ):
        self.updates, self.model_id, self.shown, self.prompt = updates, model_id, shown, prompt or ""
        self.loading = loading or f"Loading {model_id}…"  # `Studio.load_note`: a first GGUF load converts
        self.final: Any = None

    def __iter__(self) -> Iterator[tuple[Any, list[dict[str, str]], str]]:
        for update in throttled(self.updates):
            if update.done:
                self.final = update
                return
            note = self.loading if update.status == "loading" else " ".join(update.notices)
            yield update, messages(self.shown, (self.prompt, update.text)), note


def closing_notes(final: Any, *more: str) -> list[str]:
    """The notice of a finished run: its notices, `more`, and whether it stopped or failed. A failure is
    also a toast rather than gr.Error, whose overlay would hide the chat and the box the user needs to fix
    (it is stored and shown inline; API callers read it from the notice output)."""
    notes = [*final.notices, *more] + (["Stopped."] if final.status == "stopped" else [])
    if final.status in ("error", "blocked"):  # blocked: the safety check's reason, naming the category
        notes.append(f"Error: {final.error}" if final.status == "error" else str(final.error))
        gr.Warning(final.error or "generation failed")
    return notes


def follow_model_defaults(
    studio: Studio, model: Any, sampling: list[Any], tab: str, run_buttons: Sequence[Any] = ()
) -> None:
    """Choosing a model shows its defaults for the tab in the Sampling panel, or its first answer would
    use the previous model's; `run_buttons` are usable only for a model whose weights are here (the service
    refuses the others anyway, with the pull command)."""

    def model_defaults(model_id: str) -> list[Any]:
        try:
            params = studio.default_params(model_id, tab=tab)
        except StudioError as exc:
            raise refused(exc) from None
        return [params[name] for name in PARAM_NAMES]

    def runnable(model_id: str) -> list[Any]:
        return [gr.Button(interactive=studio.can_run(model_id))] * len(run_buttons)

    model.input(model_defaults, model, sampling, **PRIVATE)
    # Apart from the defaults: the weights check reads the disk, and a slower handler that also set the
    # Sampling panel could land after the user's first edit of it and undo that edit.
    if run_buttons:
        model.input(runnable, model, list(run_buttons), **PRIVATE)


# A tab's `run(action, text, conversation, ..., key, *sampling, request=...)` generator as event handlers.
# Gradio injects `request` by its annotation and by position, so it comes before `*args`.
def send_handler(run: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def send(request: gr.Request, text: str, *args: Any) -> Iterator[Any]:
        yield from run("send", text, *args, request=request)

    return send


def stop_active() -> Any:
    """The Stop button while a run is queued or going."""
    return gr.Button(interactive=True)


def stop_idle() -> Any:
    """The Stop button with nothing to stop: inactive, so that it does not look like it would do something."""
    return gr.Button(interactive=False)


def stop_follows(stop: Any, runs: list[Any]) -> None:
    """Make `stop` inactive again when each of `runs` ends (done, stopped or failed). What starts a run makes
    it active: the check before the run (which outputs `stop_active()`), or `stop_on` for unchecked events."""
    for ran in runs:
        ran.then(stop_idle, None, stop, queue=False, **PRIVATE)


def stop_on(stop: Any, trigger: Any) -> None:
    """Activate `stop` at once on `trigger` (a bound event method such as `chatbot.retry`), beside its run."""
    trigger(stop_active, None, stop, queue=False, **PRIVATE)


def wire_redo(
    studio: Studio,
    run: Callable[..., Iterator[Any]],
    stop: Any,
    buttons: tuple[Any, Any],
    chatbot: Any,
    conversation: Any,
    io: tuple[list[Any], list[Any]],
    noun: str,
    api_prefix: str = "",
) -> list[Any]:
    """Regenerate (its button and the chatbot's retry icon) and Continue (buttons: regenerate, continue)
    over `run`, with `io` its inputs and outputs; returns the three run events, after which `stop` goes
    inactive. A button first checks that there is a turn to redo: a toast before queueing, where a failed run
    would put Gradio's error overlay over every output; the check activates `stop`. API callers call
    `<api_prefix>regenerate` / `continue` and get the service's errors."""
    inputs, outputs = io

    def regenerate(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("regenerate", None, *args, request=request)

    def keep_going(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("continue", None, *args, request=request)

    def checked(button: Any, action: str, handler: Callable[..., Iterator[Any]]) -> Any:
        def check(conv: int | None, request: gr.Request) -> Any:
            if not conv or not studio.conversation(conv, user=user_of(request)):
                raise gr.Error(f"nothing to {action}: the {noun} has no turns yet", print_exception=False)
            return stop_active()

        return button.click(check, conversation, stop, **PRIVATE).success(
            handler, inputs, outputs, api_name=f"{api_prefix}{action}", **GENERATION_QUEUE
        )

    regen_btn, continue_btn = buttons
    stop_on(stop, chatbot.retry)
    runs = [
        checked(regen_btn, "regenerate", regenerate),
        chatbot.retry(regenerate, inputs, outputs, **PRIVATE, **GENERATION_QUEUE),
        checked(continue_btn, "continue", keep_going),
    ]
    stop_follows(stop, runs)
    return runs


def wire_new(button: Any, new: Callable[[], Any], outputs: list[Any]) -> None:
    button.click(new, None, outputs, **PRIVATE)


def trash_deletes(chatbot: Any, delete: Callable[..., Any], conversation: Any, outputs: list[Any]) -> Any:
    """The chatbot's trash icon runs the tab's Delete (`delete(conversation)` into `outputs`). By itself the
    icon only empties the view, and the next run would silently continue the hidden conversation; as
    "new chat" it belied its picture, so it does what it shows."""
    return chatbot.clear(delete, conversation, outputs, **PRIVATE)


def wire_answer_pager(studio: Studio, chatbot: Any, conversation: Any, buttons: tuple[Any, Any]) -> gr.State:
    """Previous / Next answer (buttons) show another kept answer of a turn and make it the active one (see
    `Studio.browse_answer`). They act on the answer last clicked in the chatbot, else on the last turn;
    returns the state holding that turn's index (None for the last), which the tab resets after a run."""
    browsed = gr.State(None)

    def pick(data: gr.SelectData) -> int:
        index = data.index if isinstance(data.index, int) else data.index[0]
        return int(index) // 2  # a user message and its answer share a turn

    chatbot.select(pick, None, browsed, queue=False, **PRIVATE)

    def browse(step: int) -> Callable[..., Any]:
        def handler(conv: int | None, turn: int | None, request: gr.Request) -> Any:
            user = user_of(request)
            turns = studio.conversation(conv, user=user) if conv else []
            if not turns:
                raise gr.Error("no answer to browse yet", print_exception=False)
            index = turn if turn is not None and 0 <= turn < len(turns) else len(turns) - 1
            if turns[index].answers < 2:
                raise gr.Error(
                    "this answer has no other kept answer: Regenerate makes one", print_exception=False
                )
            try:
                shown = studio.browse_answer(conv or 0, index, step, user=user)
            except StudioError as exc:
                raise refused(exc) from None
            return render(shown)

        return handler

    previous, following = buttons
    previous.click(browse(-1), [conversation, browsed], chatbot, **PRIVATE)
    following.click(browse(+1), [conversation, browsed], chatbot, **PRIVATE)
    return browsed


def browse_api(studio: Studio) -> Callable[..., list[dict[str, Any]]]:
    """The `/browse_answer` endpoint: show the kept answer `step` places from the shown one of turn
    `turn_index` and make it active, as Previous / Next answer do; returns each active turn's generation id
    and its place among the turn's kept answers."""

    def browse_answer(
        conversation_id: float, turn_index: float, step: float, request: gr.Request
    ) -> list[dict[str, Any]]:
        try:
            numbers = [float(conversation_id), float(turn_index), float(step)]
            if not all(n.is_integer() for n in numbers):
                raise StudioError("the conversation id, the turn index and the step are whole numbers")
            conv, turn, by = (int(n) for n in numbers)
            turns = studio.browse_answer(conv, turn, by, user=user_of(request))
        except (StudioError, ValueError, TypeError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return [{"generation_id": t.generation_id, "answer": t.answer, "answers": t.answers} for t in turns]

    return browse_answer
