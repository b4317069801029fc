"""Pieces the conversational tabs (Chat, Code) share, and the few every tab does.

Owns: turning stored turns into chatbot messages with their votes, the Sampling panel (and any slider that
starts at a model's default) and reading it back into parameters, the conversation list's choices,
throttling, and for every tab: who the user is, its models and defaults, the shared generation queue,
private events. Ignores: everything the service decides (validation, storage, models).
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
# Events the page needs but API callers do not: no endpoint in the API page, none callable.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


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


def tab_models(studio: Studio, tab: str) -> tuple[list[ModelInfo], str, dict[str, Any]] | None:
    """A tab's models, the one it starts on and that model's defaults for the tab; None, having said so on
    the page, when models.yaml has no model for the tab."""
    models = studio.models(tab)
    if not models:
        gr.Markdown(f"No model in models.yaml serves the {tab} tab.")
        return None
    default = default_model(models)
    return models, default, studio.default_params(default, tab=tab)


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


def slider(
    defaults: dict[str, Any],
    name: str,
    span: tuple[float, float],
    step: float,
    label: str,
    elem_id: str | None = None,
) -> Any:
    """A slider over `span` that starts at the model's default for parameter `name`."""
    return gr.Slider(span[0], span[1], value=defaults[name], step=step, label=label, elem_id=elem_id)


def sampling_panel(defaults: dict[str, Any], prefix: str = "") -> list[Any]:
    """The Sampling accordion; returns its controls in PARAM_NAMES order (elem ids `<prefix>-<name>`, which
    the Library's "re-run with these settings" fills in)."""

    def ids(name: str) -> str | None:
        return f"{prefix}-{name}" if prefix else None

    def param(name: str, span: tuple[float, float], step: float, label: str) -> Any:
        return slider(defaults, name, span, step, label, ids(name))

    with gr.Accordion("Sampling", open=False):
        with gr.Row():
            do_sample = gr.Checkbox(
                value=defaults["do_sample"], label="Sample (off = greedy)", elem_id=ids("do_sample")
            )
            num_beams = param("num_beams", (1, 8), 1, "Beams")
            seed = gr.Number(
                value=defaults["seed"], precision=0, label="Seed (blank = random)", elem_id=ids("seed")
            )
        with gr.Row():
            temperature = param("temperature", (0.01, 2.0), 0.01, "Temperature")
            top_p = param("top_p", (0.01, 1.0), 0.01, "Top-p")
            top_k = param("top_k", (0, 1000), 1, "Top-k")
        with gr.Row():
            repetition_penalty = param("repetition_penalty", (0.5, 2.0), 0.01, "Repetition penalty")
            max_new_tokens = param("max_new_tokens", (1, 4096), 1, "Max new tokens")
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
