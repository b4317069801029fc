"""Pieces the conversational tabs (Chat, Code) share: messages and votes, sampling controls, throttling.

Owns: turning stored turns into chatbot messages with their votes, the Sampling panel and reading it
back into parameters, the conversation list's choices and who the user is. Ignores: everything the
service decides (validation, storage, models).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import ChatTurn, ModelInfo, Studio

FEEDBACK = {1: "Like", -1: "Dislike"}
PARAM_NAMES = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "max_new_tokens",
    "num_beams",
    "seed",
)


# While streaming, send at most this many chatbot updates a second: each one costs Gradio a few
# milliseconds (benchmarks/chat_overhead.py), more than a token of a small model takes.
UPDATES_PER_SECOND = 20

# Every event that runs a model (each tab's runs, A/B compare, the Models tab's Load) shares one Gradio queue
# that lets this many run at once. It does not serialise the GPU: the model manager does, first come first
# served per device (`jobs_per_device` in models.yaml), so a remote (openai-chat) request starts while local
# jobs wait for their turn, and the server batches it with the others. Beyond this many running or waiting in
# the manager, further events wait in Gradio's queue (max 64) in arrival order.
PARALLEL_RUNS = 16
GENERATION_QUEUE: dict[str, Any] = {"concurrency_id": "generation", "concurrency_limit": PARALLEL_RUNS}


def messages(turns: list[ChatTurn], pending: tuple[str, str] | None = None) -> list[dict[str, str]]:
    """Stored turns (plus an in-flight one) as chatbot messages."""
    out: list[dict[str, str]] = []
    for turn in turns:
        reply = turn.reply
        if turn.status == "error":
            reply = f"{reply}\n\n**Error:** {turn.error}".strip()
        elif turn.status == "stopped":
            reply = f"{reply} *[stopped]*"
        out += [{"role": "user", "content": turn.prompt}, {"role": "assistant", "content": reply}]
    if pending is not None:
        out += [{"role": "user", "content": pending[0]}, {"role": "assistant", "content": pending[1] or "…"}]
    return out


def render(turns: list[ChatTurn]) -> gr.Chatbot:
    """The chatbot with each reply's stored vote shown on its thumbs."""
    feedback = [FEEDBACK.get(turn.rating or 0) for turn in turns]
    return gr.Chatbot(value=messages(turns), feedback_value=feedback)  # type: ignore[arg-type]


def model_choices(models: list[ModelInfo]) -> list[tuple[str, str]]:
    """Dropdown choices that show each model's status (ready / not downloaded / loaded)."""
    return [(f"{m.id} ({m.status})", m.id) for m in models]


def default_model(models: list[ModelInfo]) -> str:
    """The first model that can run now, else the first listed (its status says why it cannot)."""
    return next((m.id for m in models if m.status in ("ready", "loaded")), models[0].id)


def conversation_choices(studio: Studio, user: str | None, tab: str = "chat") -> list[tuple[str, int]]:
    return [(f"{title} (#{cid})", cid) for cid, title in studio.conversations(user=user, tab=tab)]


def user_of(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def params_from(values: tuple[Any, ...], system_prompt: str) -> dict[str, Any]:
    params = dict(zip(PARAM_NAMES, values, strict=True))
    if params["seed"] in (None, ""):
        params["seed"] = None  # blank = a fresh random seed, recorded with the answer
    elif isinstance(params["seed"], float) and params["seed"].is_integer():
        params["seed"] = int(params["seed"])
    params["system_prompt"] = system_prompt or ""
    return params


def sampling_panel(defaults: dict[str, Any], prefix: str = "") -> list[Any]:
    """The Sampling accordion; returns its controls in PARAM_NAMES order (elem ids `<prefix>-<name>`, which
    the Library's "re-run with these settings" fills in)."""

    def ids(name: str) -> dict[str, Any]:
        return {"elem_id": f"{prefix}-{name}"} if prefix else {}

    with gr.Accordion("Sampling", open=False):
        with gr.Row():
            do_sample = gr.Checkbox(
                value=defaults["do_sample"], label="Sample (off = greedy)", **ids("do_sample")
            )
            num_beams = gr.Slider(
                1, 8, value=defaults["num_beams"], step=1, label="Beams", **ids("num_beams")
            )
            seed = gr.Number(
                value=defaults["seed"], precision=0, label="Seed (blank = random)", **ids("seed")
            )
        with gr.Row():
            temperature = gr.Slider(
                0.01, 2.0, value=defaults["temperature"], step=0.01, label="Temperature", **ids("temperature")
            )
            top_p = gr.Slider(0.01, 1.0, value=defaults["top_p"], step=0.01, label="Top-p", **ids("top_p"))
            top_k = gr.Slider(0, 1000, value=defaults["top_k"], step=1, label="Top-k", **ids("top_k"))
        with gr.Row():
            repetition_penalty = gr.Slider(
                0.5,
                2.0,
                value=defaults["repetition_penalty"],
                step=0.01,
                label="Repetition penalty",
                **ids("repetition_penalty"),
            )
            max_new_tokens = gr.Slider(
                1,
                4096,
                value=defaults["max_new_tokens"],
                step=1,
                label="Max new tokens",
                **ids("max_new_tokens"),
            )
    return [do_sample, temperature, top_p, top_k, repetition_penalty, max_new_tokens, num_beams, seed]


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


def vote_value(liked: Any) -> str | None:
    """gr.LikeData.liked -> 'up' / 'down' / None (a vote taken back)."""
    return {True: "up", False: "down"}.get(liked) if isinstance(liked, bool) else None


def vote_handler(studio: Studio) -> Any:
    """A chatbot `.like` handler: store the vote on the generation behind the clicked reply; outputs a
    notice and that generation's id (for the feedback panel, studio/ui/feedback.py)."""

    from studio.ui.feedback import cast_vote  # feedback.py imports this module

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


def turns_required(studio: Studio, action: str, noun: str) -> Any:
    """A pre-check for Regenerate/Continue: a toast, before queueing, when there is nothing to redo
    (a failed run would put Gradio's error overlay over every output instead)."""

    def check(conv: int | None, request: gr.Request) -> None:
        if not conv or not studio.conversation(conv, user=user_of(request)):
            raise gr.Error(f"nothing to {action}: the {noun} has no turns yet")

    return check
