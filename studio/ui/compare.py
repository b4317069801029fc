"""The A/B compare panel every tab includes with one call (`compare_panel(studio, tab)`); the leaderboard
its votes feed is ui/leaderboard.py.

Owns: two candidates for one prompt side by side (two models, or one model with two seeds: the user picks;
B starts on a second model that is ready) and the vote on them: A, B, tie or both bad, offered only once
both sides have finished (the buttons stay disabled while a pair runs and when a side failed or stopped).
Text tabs show Markdown, the Image tab pictures, audio tabs players. `gr.State` keeps the pair's generation
ids only.
Ignores: running, storing and validating (the service's `compare` and `prefer`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.service import GenerationResult, ModelInfo, Status, Studio, StudioError
from studio.service.checks import quote
from studio.ui.conversation import GENERATION_QUEUE, PRIVATE, default_model, model_choices, user_of

AUDIO_TABS = ("audio", "speech", "music")
VERDICTS = (("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both bad", "both_bad"))
READY = ("ready", "loaded", "remote")  # model statuses that can run now


def _kind(tab: str) -> str:
    return "image" if tab == "image" else "audio" if tab in AUDIO_TABS else "text"


def _output(kind: str, label: str, elem_id: str) -> Any:
    if kind == "image":
        return gr.Image(label=label, type="filepath", interactive=False, elem_id=elem_id, height=256)
    if kind == "audio":
        return gr.Audio(label=label, type="filepath", interactive=False, elem_id=elem_id)
    return gr.Markdown(label=label, elem_id=elem_id, container=True, min_height=80)


def _shown(kind: str, result: GenerationResult) -> Any:
    if result.status == Status.ERROR:
        return None if kind != "text" else f"**Error:** {result.error}"
    if kind == "text":
        return result.text or "*(empty answer)*"
    return result.files[0] if result.files else None


def second_model(models: list[ModelInfo], first: str) -> str:
    """Model B's default: another model that can run now, else A's model again (two seeds), never one
    that is not downloaded (its side would only fail)."""
    return next((m.id for m in models if m.id != first and m.status in READY), first)


def compare_panel(studio: Studio, tab: str) -> None:
    """An accordion with the A/B comparison for `tab` (nothing when the tab has no model)."""
    models = studio.models(tab)
    if not models:
        return
    kind = _kind(tab)
    first = default_model(models)
    second = second_model(models, first)
    pair = gr.State([])  # [generation id of A, generation id of B]
    with gr.Accordion("Compare A/B", open=False, elem_id=f"{tab}-compare"):
        gr.Markdown(
            "Two answers to one prompt, side by side: pick two models, or one model with two seeds. "
            "Your verdict becomes a preference pair in the Library's exports."
        )
        prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}-compare-prompt")
        with gr.Row():
            model_a = gr.Dropdown(
                label="Model A", choices=model_choices(models), value=first, elem_id=f"{tab}-compare-model-a"
            )
            seed_a = gr.Textbox(
                label="Seed A", placeholder="random", max_lines=1, elem_id=f"{tab}-compare-seed-a"
            )
            model_b = gr.Dropdown(
                label="Model B", choices=model_choices(models), value=second, elem_id=f"{tab}-compare-model-b"
            )
            seed_b = gr.Textbox(
                label="Seed B", placeholder="random", max_lines=1, elem_id=f"{tab}-compare-seed-b"
            )

        def current(model_id: str | None) -> Any:  # variants trained since the page loaded are offered too
            return gr.Dropdown(choices=model_choices(studio.models(tab)), value=model_id)

        for picker in (model_a, model_b):
            picker.focus(current, picker, picker, queue=False, **PRIVATE)
        sample = gr.Checkbox(
            value=True,
            visible=kind == "text",
            label="Sample (greedy decoding gives one model the same answer whatever the seed)",
        )
        run_btn = gr.Button("Generate A and B", variant="primary", elem_id=f"{tab}-compare-run")
        with gr.Row():
            out_a = _output(kind, "A", f"{tab}-compare-out-a")
            out_b = _output(kind, "B", f"{tab}-compare-out-b")
        with gr.Row():
            buttons = [
                gr.Button(label, size="sm", interactive=False, elem_id=f"{tab}-compare-vote-{value}")
                for label, value in VERDICTS
            ]
        status = gr.Markdown(elem_id=f"{tab}-compare-status")

    def side(model: str, seed: Any, sampled: bool) -> dict[str, Any]:
        # A textbox, not gr.Number: a Number shows 0 until a page-load event blanks it, and two sides on
        # seed 0 would give one model the same answer twice.
        text = str(seed if seed is not None else "").strip()
        if text and not text.lstrip("-").isdigit():
            raise gr.Error(f"a seed is a whole number, not {quote(text)}", print_exception=False)
        params: dict[str, Any] = {"seed": int(text)} if text else {}
        if kind == "text":
            params["do_sample"] = bool(sampled)
        return {"model": model, "params": params}

    def run(
        text: str, a: str, sa: Any, b: str, sb: Any, sampled: bool, request: gr.Request
    ) -> tuple[Any, Any, list[int | None], str]:
        try:
            res_a, res_b = studio.compare(
                tab=tab, prompt=text, a=side(a, sa, sampled), b=side(b, sb, sampled), user=user_of(request)
            )
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        ids = [res_a.generation_id, res_b.generation_id]
        unfinished = [
            f"{side} {r.error or r.status}" for side, r in zip("AB", (res_a, res_b), strict=True)
            if r.status != Status.OK
        ]  # fmt: skip
        pair_note = f"(#{ids[0]} vs #{ids[1]})"
        if unfinished:
            note = f"Failed: {'; '.join(unfinished)}. No vote on this pair {pair_note}"
        else:
            note = f"Which is better? {pair_note}"
        return _shown(kind, res_a), _shown(kind, res_b), ids, note

    def votable(ids: list[int], request: gr.Request) -> list[Any]:
        """The verdict buttons: enabled only when both sides of the shown pair finished."""
        user = user_of(request)
        try:
            ok = len(ids) == 2 and all(studio.library_item(g, user=user)["status"] == "ok" for g in ids)
        except StudioError:  # a side deleted meanwhile (Library): nothing left to judge
            ok = False
        return [gr.Button(interactive=ok) for _ in buttons]

    # The buttons go off while a pair runs (no verdict on the previous pair while the new one shows) and
    # come back only for a finished pair; `run` keeps its outputs so the API's answer stays (a, b, note).
    run_btn.click(lambda: [gr.Button(interactive=False)] * len(buttons), None, buttons, **PRIVATE).then(
        run,
        [prompt, model_a, seed_a, model_b, seed_b, sample],
        [out_a, out_b, pair, status],
        api_name=f"compare_{tab}",
        **GENERATION_QUEUE,
    ).then(votable, pair, buttons, **PRIVATE)

    def vote(choice: str) -> Any:
        def handler(ids: list[int], request: gr.Request) -> str:
            if len(ids) != 2:
                raise gr.Error("Generate A and B first.", print_exception=False)
            try:
                studio.prefer(ids[0], ids[1], choice, user=user_of(request))
            except StudioError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            label = dict((v, k) for k, v in VERDICTS)[choice]
            return f"Recorded: {label.lower()} (#{ids[0]} vs #{ids[1]}). A new vote on this pair replaces it."

        return handler

    for button, (_, value) in zip(buttons, VERDICTS, strict=True):
        button.click(vote(value), pair, status, **PRIVATE)
