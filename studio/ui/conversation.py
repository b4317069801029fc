"""Pieces the conversational tabs (Chat, Code) share, and the few every tab does.

Owns: turning stored turns into chatbot messages with their votes and the footer under each answer, the
Sampling panel (and any slider that starts at a model's default) and reading it back into parameters, the
conversation list's choices, and for every tab: who the user is, its models and defaults, the shared
generation queue, private events, and refusals as toasts without a traceback.
Ignores: the events and run loop of a conversation (studio/ui/turns.py) and everything the service
decides (validation, storage, models).
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from studio.service import ChatTurn, ModelInfo, Studio, StudioError

log = logging.getLogger(__name__)

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
    # Added later, after the seed, so API callers that send the first eight keep working (defaults fill in).
    "min_p",
    "typical_p",
    "prompt_lookup_num_tokens",
)

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
    """Stored turns (plus an in-flight one) as chatbot messages, each answer with its footer."""
    out: list[dict[str, str]] = []
    for turn in turns:
        reply = closed_fences(turn.reply)
        if turn.status == "error":
            reply = f"{reply}\n\n**Error:** {turn.error}".strip()
        elif turn.status == "stopped":  # after a code block it cut off, on a line of its own
            reply = f"{reply}{' ' if reply == turn.reply else chr(10) * 2}*[stopped]*"
        if note := footer(turn):
            reply = f"{reply}\n\n{note}"
        out += [{"role": "user", "content": turn.prompt}, {"role": "assistant", "content": reply}]
    if pending is not None:
        out += [{"role": "user", "content": pending[0]}, {"role": "assistant", "content": pending[1] or "…"}]
    return out


def footer(turn: ChatTurn) -> str:
    """The line under an answer: which of the turn's kept answers it is (`‹ 2/3 ›`, browsed with the
    Previous / Next answer buttons), its token count and speed, its seed, and whether it hit the limit."""
    parts = [f"‹ {turn.answer}/{turn.answers} ›"] if turn.answers > 1 else []
    if turn.completion_tokens is not None:
        parts.append(f"{turn.completion_tokens} tokens")
    if turn.tokens_per_second:
        parts.append(f"{turn.tokens_per_second:.1f} tokens/s")
    if turn.seed is not None:
        parts.append(f"seed {turn.seed}")
    if turn.hit_limit:
        parts.append("stopped at max_new_tokens")
    return f"<sub>{' · '.join(parts)}</sub>" if parts else ""


def closed_fences(text: str) -> str:
    """`text` with an unclosed code fence (an answer cut off inside a code block) closed, so that what follows
    it (the footer, "[stopped]") is not shown as code."""
    fences = sum(1 for line in text.splitlines() if line.lstrip().startswith("```"))
    return f"{text}\n```" if fences % 2 else text


def render(turns: list[ChatTurn]) -> gr.Chatbot:
    """The chatbot with each reply's stored vote shown on its thumbs."""
    feedback = [FEEDBACK.get(turn.rating or 0) for turn in turns]
    return gr.Chatbot(value=messages(turns), feedback_value=feedback)  # type: ignore[arg-type]


def model_choices(models: list[ModelInfo]) -> list[tuple[str, str]]:
    """Dropdown choices that show each model's status (ready / not downloaded / loaded)."""
    return [(f"{m.id} ({m.status})", m.id) for m in models]


def model_picker(studio: Studio, tab: str, models: list[ModelInfo], default: str, elem_id: str) -> Any:
    """A tab's model dropdown, its labels showing each model's status. They stay current: each time it
    opens it asks again (loaded, loading, converting for the first time, ready, not downloaded), since
    models load and unload from every tab."""
    model = gr.Dropdown(label="Model", choices=model_choices(models), value=default, elem_id=elem_id)

    def current(model_id: str | None) -> Any:
        return gr.Dropdown(choices=model_choices(studio.models(tab)), value=model_id)

    model.focus(current, model, model, queue=False, **PRIVATE)
    return model


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


def conversation_choices(
    studio: Studio, user: str | None, tab: str = "chat", query: str = ""
) -> list[tuple[str, int]]:
    """The conversation list, newest first, labelled by title alone (the id is the value, not for reading);
    with `query`, only conversations whose title or turns contain it."""
    return [(title, cid) for cid, title in studio.conversations(user=user, tab=tab, query=query)]


def refused(exc: StudioError) -> gr.Error:
    """A refusal (an empty message, a bad setting) as a toast. Gradio prints the traceback of every gr.Error
    unless told not to; a refusal is no fault of the server, so the log gets one line."""
    log.info("refused: %s", exc)
    return gr.Error(str(exc), print_exception=False)


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
        with gr.Row():
            min_p = param("min_p", (0.0, 1.0), 0.01, "Min-p (0 = off)")
            typical_p = param("typical_p", (0.01, 1.0), 0.01, "Typical-p (1 = off)")
            # Drafts copied from the input, checked in one pass: it pays where the answer copies the input
            # (Code's fix and translate modes) and slows free text, so Chat does not show it.
            lookup = gr.Slider(
                0,
                32,
                value=defaults["prompt_lookup_num_tokens"],
                step=1,
                label="Prompt lookup tokens (0 = off; for fix and translate)",
                elem_id=ids("prompt_lookup_num_tokens"),
                visible=prefix == "code",
            )
    return [
        do_sample,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        max_new_tokens,
        num_beams,
        seed,
        min_p,
        typical_p,
        lookup,
    ]
