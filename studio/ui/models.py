"""The Models tab: every model with its status and memory, load and unload buttons, and load progress.

Owns: wiring the panel's events to `Studio.model_rows`, `load_model`, `pull_model` and `unload_model`; Load
is disabled and Pull offered for a model that is not downloaded. Loading shares the
generation queue and waits its turn on the device in the manager, like a generation. Ignores: budgets and
eviction (the manager), and where weights come from (the service).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Studio, StudioError
from studio.ui.conversation import GENERATION_QUEUE, user_of

COLUMNS = ["Model", "Tabs", "Backend", "Status", "Memory", "In use", "Last load (s)"]


def table(studio: Studio) -> list[list[Any]]:
    return [
        [
            r.id,
            ", ".join(r.tabs),
            r.backend,
            r.status,
            r.memory,
            r.in_use,
            "" if r.load_seconds is None else round(r.load_seconds, 1),
        ]
        for r in studio.model_rows()
    ]


def build_models_tab(studio: Studio, app: gr.Blocks, tab: gr.Tab | None = None) -> None:
    gr.Markdown(
        "Models load on first use and stay loaded while memory allows; the least recently used idle model "
        "is unloaded to make room. Status: **loaded**, **ready** (weights here), **not downloaded** "
        "(Pull, or `studio models pull ID`), **remote** (an OpenAI-compatible server). Memory with `~` is "
        "an estimate."
    )
    summary = gr.Markdown(elem_id="memory-summary")
    grid = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="models-table", wrap=True)
    with gr.Row():
        choice = gr.Dropdown(
            label="Model",
            choices=[m.id for m in studio.config.models],
            value=studio.config.models[0].id,
            elem_id="models-choice",
        )
        first = studio.config.models[0].id
        load_btn = gr.Button(
            "Load", variant="primary", interactive=studio.can_run(first), elem_id="models-load"
        )
        # Shown for a model that is not downloaded: fetches it here, with progress, like `studio models pull`.
        pull_btn = gr.Button("Pull", visible=not studio.can_run(first), elem_id="models-pull")
        unload_btn = gr.Button("Unload", elem_id="models-unload")
        refresh_btn = gr.Button("Refresh", elem_id="models-refresh")
    progress = gr.Markdown(elem_id="models-progress")

    def refresh() -> tuple[list[list[Any]], str]:
        return table(studio), studio.memory_summary()

    def load(model_id: str, request: gr.Request) -> Iterator[tuple[str, list[list[Any]], str]]:
        try:
            for line in studio.load_model(model_id, user=user_of(request)):
                yield line, table(studio), studio.memory_summary()
        except StudioError as exc:
            yield f"**Error:** {exc}", table(studio), studio.memory_summary()

    def pull(model_id: str) -> Iterator[tuple[str, list[list[Any]], str, Any, Any]]:
        try:
            for line in studio.pull_model(model_id):
                yield line, table(studio), studio.memory_summary(), gr.skip(), gr.skip()
        except StudioError as exc:
            yield f"**Error:** {exc}", table(studio), studio.memory_summary(), gr.skip(), gr.skip()
            return
        yield gr.skip(), table(studio), studio.memory_summary(), *buttons(model_id)

    def buttons(model_id: str) -> tuple[Any, Any]:
        """Load only for a model whose weights are here; Pull only for one that is not downloaded."""
        runnable = studio.can_run(model_id)
        pullable = studio.model_status(model_id) == "not downloaded"
        return gr.Button(interactive=runnable), gr.Button(visible=pullable)

    def unload(model_id: str, request: gr.Request) -> tuple[str, list[list[Any]], str]:
        try:
            text = studio.unload_model(model_id, user=user_of(request))
        except StudioError as exc:
            text = f"**Error:** {exc}"
        return text, table(studio), studio.memory_summary()

    outputs = [grid, summary]
    app.load(refresh, outputs=outputs, api_visibility="private")
    app.load(buttons, choice, [load_btn, pull_btn], api_visibility="private")
    if tab is not None:  # opening the tab shows what the other tabs loaded meanwhile
        tab.select(refresh, outputs=outputs, api_visibility="private")
    refresh_btn.click(refresh, outputs=outputs, api_name="models_list")
    load_btn.click(load, choice, [progress, *outputs], api_name="load_model", **GENERATION_QUEUE)
    unload_btn.click(unload, choice, [progress, *outputs], api_name="unload_model")
    pull_btn.click(
        pull,
        choice,
        [progress, *outputs, load_btn, pull_btn],
        api_name="pull_model",
        concurrency_id="pull",  # downloads use no device: a line of their own, one at a time
        concurrency_limit=1,
    )
    choice.change(buttons, choice, [load_btn, pull_btn], api_visibility="private")
