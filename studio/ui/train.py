"""The Train tab: tune a LoRA variant of a chat model on your votes, watch it learn, compare it blind with
its base, then keep or discard it.

Owns: the layout (method, base, data and settings; progress with ETA and place in line; a loss curve and
the method's own metrics drawn as they come: DPO's rewards/margins and rewards/accuracies, KTO's kl, grad
norm; the latest and held-out metrics with tokens/s; the log of past runs; the blind *Compare with base*
panel with Promote and Discard) and translating between those controls and `Studio.train`,
`compare_with_base`, `prefer`, `promote_variant` and `delete_variant`. A finished run refreshes the Chat
and Code tabs' model lists (found by elem id) so the variant is there at once. `gr.State` holds ids only.
Ignores: validation, data, training and storage (the service's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from studio.service import Studio, StudioError, TrainUpdate
from studio.ui.best_of import NO_SCORER, scorer_choices
from studio.ui.conversation import GENERATION_QUEUE, PRIVATE, model_choices, user_of
from studio.ui.session import StopOnClose, run_key_state, stop_button

METHODS = [
    ("DPO: A/B winners (and liked vs disliked answers to one prompt)", "dpo"),
    ("KTO: every thumb up or down", "kto"),
    ("SFT: liked answers", "sft"),
    ("Reward model: a scorer from A/B winners and liked vs disliked (Best of n)", "reward"),
    ("Diffusion-DPO: the Image tab's A/B winners (image models)", "diffusion-dpo"),
]
# (label, hyperparameter, default shown). A browser's Number shows a blank as 0, so 0 (or blank, from the
# API) means "the default" for the three that have no fixed one.
SETTINGS = [
    ("Learning rate (0: 2e-4 for SFT, 5e-4 for DPO/KTO, 1e-3 for a reward model)", "learning_rate", 0),
    ("Beta (DPO, KTO)", "beta", 0.1),
    ("LoRA rank", "lora_r", 8),
    ("LoRA alpha (0: 2 x rank)", "lora_alpha", 0),
    ("Epochs", "epochs", 1),
    ("Max steps (0: the epochs decide)", "max_steps", 0),
    ("Batch size", "batch_size", 2),
    ("Max length (tokens)", "max_length", 512),
    ("Held out (fraction)", "eval_fraction", 0.15),
    ("Resolution (Diffusion-DPO; 0: the model's)", "resolution", 0),
    ("Beta DPO (Diffusion-DPO; 0: 2500 for SD 1.x/2.x, 5000 for SDXL)", "beta_dpo", 0),
]
OPTIONAL = ("learning_rate", "lora_alpha", "max_steps", "resolution", "beta_dpo")  # 0 = the default
TEXT_ONLY, IMAGE_ONLY = ("beta", "max_length"), ("resolution", "beta_dpo")
SHOWN = (
    "loss",
    "grad_norm",
    "rewards/margins",
    "rewards/accuracies",
    "kl",
    "accuracy",
    "margin",
    "tokens_per_second",
    "learning_rate",
)
EXTRA = ("rewards/margins", "rewards/accuracies", "kl", "grad_norm")  # the second plot's lines
RUN_COLUMNS = ["Run", "Started", "Method", "Base", "Status", "Records", "Steps", "Variant or error"]
VERDICTS = (("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both bad", "both_bad"))


def bases(studio: Studio, method: str = "dpo") -> list[tuple[str, str]]:
    """Local chat models that are not variants, or for diffusion-dpo the diffusers image models (the
    service refuses the rest with its reason)."""
    tabs = ("image",) if method == "diffusion-dpo" else ("chat", "code")
    seen = {m.id: m for tab in tabs for m in studio.models(tab)}
    image = method == "diffusion-dpo"
    local = [
        m
        for m in seen.values()
        if m.backend != "openai-chat" and "+" not in m.id and (m.backend == "diffusers") == image
    ]
    return model_choices(local)


def variant_choices(studio: Studio) -> list[str]:
    return [v["id"] for v in studio.variants()]


def progress_text(u: TrainUpdate) -> str:
    if u.notices:
        return f"**Run {u.run_id}:** {u.notices[0]}"
    if u.done:
        head = f"**Run {u.run_id} {u.status}** in {u.elapsed_s:.1f} s, {u.step}/{u.total} steps"
        if u.variant and u.method == "reward":
            return f"{head}: the scorer **{u.variant}** is ready for Best of n in the Chat and Code tabs."
        if u.variant:
            where = "Image tab" if u.method == "diffusion-dpo" else "Chat and Code tabs"
            return f"{head}: **{u.variant}** is ready in the {where}.{_left_out(u)}"
        return f"{head}. {u.error or 'No variant was registered.'}"
    if u.phase == "training" and u.total:
        eta = f", about {u.eta_s:.0f} s left" if u.eta_s is not None else ""
        return f"**Run {u.run_id}:** step {u.step} of {u.total}{eta} ({u.elapsed_s:.0f} s so far)"
    data = (
        f" on {u.train_records} records ({u.eval_records} held out){_left_out(u)}" if u.train_records else ""
    )
    return f"**Run {u.run_id}:** {u.phase}{data}…"


def curve(history: list[dict[str, float]], names: tuple[str, ...]) -> pd.DataFrame:
    """Long format for a LinePlot: one row per step and metric."""
    rows = [{"step": int(h["step"]), "metric": n, "value": h[n]} for h in history for n in names if n in h]
    return pd.DataFrame(rows or [{"step": 0, "metric": names[0], "value": 0.0}])


def metrics_text(u: TrainUpdate) -> str:
    latest = [f"{k} {u.metrics[k]:.4g}" for k in SHOWN if k in u.metrics]
    out = ("Latest: " + ", ".join(latest)) if latest else ""
    held = {k.removeprefix("eval_"): v for k, v in u.eval_metrics.items() if "runtime" not in k}
    held_shown = [
        f"{k} {held[k]:.4g}"
        for k in ("loss", "accuracy", "margin", "rewards/accuracies", "rewards/margins", "kl")
        if k in held
    ]
    if held_shown:
        out += f"\n\nHeld out ({u.eval_records} records): " + ", ".join(held_shown)
    return out


def runs_table(studio: Studio, user: str | None) -> list[list[Any]]:
    return [
        [
            r["run_id"],
            r["created_at"].replace("T", " ")[:16],
            r["method"],
            r["base"],
            r["status"],
            f"{r['train_records']} + {r['eval_records']} held out",
            f"{r['steps']}/{r['total_steps']}",
            r["variant"] or r["error"] or "",
        ]
        for r in studio.train_runs(user=user)
    ]


def build_train_tab(studio: Studio, app: gr.Blocks) -> None:
    choices = bases(studio) or bases(studio, "diffusion-dpo")
    if not choices:
        gr.Markdown("No local chat or diffusers image model in models.yaml: training needs one.")
        return
    run_key = run_key_state(app)
    gr.Markdown(
        "Tune a LoRA variant of a chat model on **your votes** from the Chat and Code tabs (or of an image "
        "model on the Image tab's A/B choices: Diffusion-DPO). The variant appears in their model lists when "
        "the run ends; compare it blind with its base below, then keep "
        "(promote) or discard it. Runs wait their turn on the device like any generation."
    )
    with gr.Row():
        with gr.Column(scale=1):
            first = "dpo" if bases(studio) else "diffusion-dpo"
            method = gr.Radio(METHODS, value=first, label="Method", elem_id="train-method")
            base = gr.Dropdown(label="Base model", choices=choices, value=choices[0][1], elem_id="train-base")
            with gr.Row():
                data_tab = gr.Dropdown(
                    [("Chat and Code", ""), ("Chat", "chat"), ("Code", "code")], value="", label="Votes from"
                )
                since = gr.Textbox(label="Since (2026-11-01)", elem_id="train-since")
            all_users = gr.Checkbox(label="Everyone's votes (admins only)", elem_id="train-all-users")
            with gr.Accordion("Settings", open=False, elem_id="train-settings"):
                settings = [
                    gr.Number(label=label, value=value, elem_id=f"train-{name.replace('_', '-')}")
                    for label, name, value in SETTINGS
                ]
            with gr.Row():
                start_btn = gr.Button("Train", variant="primary", elem_id="train-start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
        with gr.Column(scale=2):
            progress = gr.Markdown("Pick a method and a base, then **Train**.", elem_id="train-progress")
            loss_plot = gr.LinePlot(x="step", y="value", color="metric", title="Loss", elem_id="train-loss")
            extra_plot = gr.LinePlot(
                x="step", y="value", color="metric", title="Method metrics", elem_id="train-extra"
            )
            metrics = gr.Markdown(elem_id="train-metrics")
    with gr.Accordion("Past runs", open=False, elem_id="train-runs"):
        runs = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, wrap=True, elem_id="train-runs-table")
        refresh_btn = gr.Button("Refresh", size="sm", elem_id="train-runs-refresh")
    pair = gr.State([])  # [generation id of A, generation id of B]
    with gr.Accordion("Compare with base", open=False, elem_id="train-compare"):
        gr.Markdown(
            "A held-out prompt through the variant and its base with the same seed, shown as A and B in "
            "random order. The names show after your vote, which counts like any A/B vote (leaderboard, "
            "next run)."
        )
        with gr.Row():
            variant = gr.Dropdown(
                label="Variant",
                choices=variant_choices(studio),
                allow_custom_value=True,  # one trained since this page loaded (the service checks it)
                elem_id="train-variant",
            )
            ask = gr.Textbox(label="Prompt (blank: one its run held out)", elem_id="train-compare-prompt")
            compare_btn = gr.Button("Compare with base", elem_id="train-compare-run")
        shown_prompt = gr.Markdown(elem_id="train-compare-asked")
        with gr.Row():
            answer_a = gr.Markdown(label="A", container=True, min_height=80, elem_id="train-compare-a")
            answer_b = gr.Markdown(label="B", container=True, min_height=80, elem_id="train-compare-b")
        with gr.Row():  # an image variant's pair
            picture_a, picture_b = (
                gr.Image(
                    label=x,
                    type="filepath",
                    interactive=False,
                    visible=False,
                    elem_id=f"train-compare-pic-{x}",
                )
                for x in ("a", "b")
            )
        with gr.Row():
            verdicts = [gr.Button(text, size="sm", elem_id=f"train-vote-{v}") for text, v in VERDICTS]
        reveal = gr.Markdown(elem_id="train-compare-reveal")
        with gr.Row():
            promote_btn = gr.Button("Promote: make it its tab's default", elem_id="train-promote")
            discard_btn = gr.Button("Discard: delete it", variant="stop", elem_id="train-discard")
        verdict_note = gr.Markdown(elem_id="train-variant-note")

    found = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
    # The Chat, Code and Image model dropdowns, and the Chat and Code Best-of-n scorer pickers (a reward run
    # adds a scorer).
    tabs_of = {"model": "chat", "code-model": "code", "image-model": "image"}
    listed = [i for i in ("model", "code-model", "image-model", "chat-scorer", "code-scorer") if i in found]
    lists = [found[i] for i in listed]
    closing = StopOnClose(studio, app)

    def model_lists() -> list[Any]:
        return [
            gr.Dropdown(choices=model_choices(studio.models(tabs_of[i])))
            if i in tabs_of
            else gr.Dropdown(choices=[NO_SCORER, *scorer_choices(studio)])
            for i in listed
        ]

    @closing.track
    def train(
        request: gr.Request,
        method_id: str,
        base_id: str,
        tab: str,
        when: str,
        everyone: bool,
        key: str,
        learning_rate: float | None,
        beta: float | None,
        lora_r: float | None,
        lora_alpha: float | None,
        epochs: float | None,
        max_steps: float | None,
        batch_size: float | None,
        max_length: float | None,
        eval_fraction: float | None,
        resolution: float | None,
        beta_dpo: float | None,
    ) -> Iterator[Any]:
        values = (
            learning_rate,
            beta,
            lora_r,
            lora_alpha,
            epochs,
            max_steps,
            batch_size,
            max_length,
            eval_fraction,
            resolution,
            beta_dpo,
        )
        user = user_of(request)
        image = method_id == "diffusion-dpo"
        unused = TEXT_ONLY if image else IMAGE_ONLY  # the other kind's settings are not sent
        params = {
            name: _number(name, v)
            for (_, name, _), v in zip(SETTINGS, values, strict=True)
            if v is not None and not (v == 0 and name in OPTIONAL) and name not in unused
        }
        skip = [gr.skip()] * (3 + len(lists))
        try:
            updates = studio.train(
                method=method_id, model_id=base_id, params=params, tab=None if image else tab or None,
                since=when or None,
                all_users=bool(everyone), user=user, run_key=key,
            )  # fmt: skip
            for u in updates:
                loss = curve(u.history, ("loss",))
                extra = curve(
                    u.history, tuple(n for n in EXTRA if any(n in h for h in u.history)) or ("grad_norm",)
                )
                if not u.done:
                    yield progress_text(u), loss, extra, metrics_text(u), *skip
                    continue
                yield (
                    progress_text(u), loss, extra, metrics_text(u), runs_table(studio, user),
                    gr.Dropdown(choices=variant_choices(studio), value=u.variant), gr.skip(), *model_lists(),
                )  # fmt: skip
        except StudioError as exc:
            yield f"**Not started:** {exc}", gr.skip(), gr.skip(), gr.skip(), *skip

    start_btn.click(
        train,
        [method, base, data_tab, since, all_users, run_key, *settings],
        [progress, loss_plot, extra_plot, metrics, runs, variant, verdict_note, *lists],
        api_name="train",
        **GENERATION_QUEUE,
    )
    stop_button(studio, stop_btn, run_key)

    def follow(method_id: str, base_id: str | None) -> Any:  # the bases of the method's kind
        options = bases(studio, method_id)
        ids = [v for _, v in options]
        return gr.Dropdown(choices=options, value=base_id if base_id in ids else ids[0] if ids else None)

    method.change(follow, [method, base], base, **PRIVATE)

    def refresh(request: gr.Request) -> tuple[Any, Any]:
        return runs_table(studio, user_of(request)), gr.Dropdown(choices=variant_choices(studio))

    refresh_btn.click(refresh, None, [runs, variant], api_name="train_runs")
    app.load(refresh, None, [runs, variant], **PRIVATE)

    def compare(variant_id: str, prompt: str, request: gr.Request) -> tuple[Any, ...]:
        none = (gr.skip(),) * 2
        if not variant_id:
            return [], "Pick a variant first.", "", "", "", *none
        try:
            a, b = studio.compare_with_base(variant_id, prompt=prompt or None, user=user_of(request))
        except StudioError as exc:
            return [], f"**Error:** {exc}", "", "", "", *none
        drawn = a.tab == "image"
        texts = [
            ("" if drawn else r.text or "*(empty answer)*") if r.error is None else f"**Error:** {r.error}"
            for r in (a, b)
        ]
        shown = [gr.Image(r.files[0] if drawn and r.files else None, visible=drawn) for r in (a, b)]
        asked = f"**Prompt:** {_asked(studio, a.generation_id, request)}"
        return [a.generation_id, b.generation_id], asked, *texts, "", *shown

    compare_btn.click(
        compare,
        [variant, ask],
        [pair, shown_prompt, answer_a, answer_b, reveal, picture_a, picture_b],
        api_name="train_compare",
        **GENERATION_QUEUE,
    )  # fmt: skip

    def decide(choice: str) -> Any:
        def vote(ids: list[int], request: gr.Request) -> str:
            if len(ids) != 2:
                return "Compare first."
            user = user_of(request)
            try:
                studio.prefer(ids[0], ids[1], choice, user=user)
            except StudioError as exc:
                return f"**Error:** {exc}"
            models = [studio.library_item(i, user=user)["model"] for i in ids]
            return f"Recorded. **A** was {models[0]}, **B** was {models[1]}."

        return vote

    for button, (_, choice) in zip(verdicts, VERDICTS, strict=True):
        button.click(decide(choice), pair, reveal, **PRIVATE)

    def promote(variant_id: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            tab = "image" if variant_id in {m.id for m in studio.models("image")} else "chat"
            note = studio.promote_variant(variant_id, tab, user=user_of(request))
        except StudioError as exc:
            return f"**Error:** {exc}", *[gr.skip()] * len(lists)
        return note, *model_lists()

    def discard(variant_id: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            note = studio.delete_variant(variant_id, user=user_of(request))
        except StudioError as exc:
            return f"**Error:** {exc}", gr.skip(), *[gr.skip()] * len(lists)
        return note, gr.Dropdown(choices=variant_choices(studio), value=None), *model_lists()

    promote_btn.click(promote, variant, [verdict_note, *lists], api_name="promote_variant")
    discard_btn.click(discard, variant, [verdict_note, variant, *lists], api_name="discard_variant")


def _left_out(u: TrainUpdate) -> str:
    gone = sum(u.skipped.values())
    return f" {gone} pair(s) left out: " + ", ".join(f"{n} {w}" for w, n in u.skipped.items()) if gone else ""


def _number(name: str, value: Any) -> Any:
    """gr.Number gives floats: whole ones become ints for the settings that count (rank, steps, ...)."""
    whole = isinstance(value, float) and value.is_integer()
    return (
        int(value) if whole and name not in ("learning_rate", "beta", "beta_dpo", "eval_fraction") else value
    )


def _asked(studio: Studio, generation_id: int | None, request: gr.Request) -> str:
    if generation_id is None:
        return ""
    return str(studio.library_item(generation_id, user=user_of(request))["prompt"])
