"""The safety panel (in the Models tab): each tab's policy and each category's threshold, changed by an
admin, the audit log of flags, blocks and checker faults, and a check run by hand.

Owns: wiring the panel to `Studio.safety_policy`, `set_safety_policy`, `safety_log` and `safety_check`.
Ignores: what the checks do and who may change them (the service refuses non-admins).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.service import Studio, StudioError
from studio.ui.conversation import user_of

TABS = ("chat", "code", "image", "speech", "music")
CATEGORIES = ("profanity", "harassment", "hate", "sexual", "violence", "self-harm", "crime", "jailbreak")
LOG_COLUMNS = ["Time", "User", "Tab", "Stage", "Action", "Category", "Score", "Checker", "Generation"]


def log_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["created_at"],
            r["user"],
            r["tab"],
            r["stage"],
            r["action"],
            r["category"],
            round(r["score"], 3),
            r["checker"],
            r["generation_id"] or "",
        ]
        for r in rows
    ]


def build_safety_panel(studio: Studio, app: gr.Blocks) -> None:
    with gr.Accordion("Safety (admins)", open=False, elem_id="safety-panel"):
        gr.Markdown(
            "Each tab's prompts and outputs are checked by the models in `safety.checkers` (models.yaml). "
            "**off**: no checks; **flag**: shown with a ⚑ notice and logged; **block**: refused, or the "
            "output withheld. A score at or above its category's threshold counts. Changes last until the "
            "server stops; models.yaml's `safety:` section keeps them. Audio clips themselves are not "
            "checked (no offline audio classifier): only their text."
        )
        with gr.Row():
            modes = [
                gr.Dropdown(["off", "flag", "block"], label=tab, elem_id=f"safety-mode-{tab}") for tab in TABS
            ]
        with gr.Row():
            limits = [
                gr.Number(label=c, minimum=0, maximum=1, step=0.05, elem_id=f"safety-threshold-{c}")
                for c in CATEGORIES
            ]
        with gr.Row():
            apply_btn = gr.Button("Apply", variant="primary", elem_id="safety-apply")
            refresh_btn = gr.Button("Refresh log", elem_id="safety-refresh")
        note = gr.Markdown(elem_id="safety-note")
        log = gr.Dataframe(headers=LOG_COLUMNS, interactive=False, elem_id="safety-log", wrap=True)
        with gr.Row():
            sample = gr.Textbox(label="Check a text by hand", lines=1, elem_id="safety-sample")
            check_btn = gr.Button("Check", elem_id="safety-check")
        verdict = gr.JSON(label="Scores", elem_id="safety-verdict")

    def policy() -> list[Any]:
        current = studio.safety_policy()
        return [current["modes"][t] for t in TABS] + [current["thresholds"][c] for c in CATEGORIES]

    # The request comes first: Gradio fills a gr.Request parameter by its position, never a keyword-only one.
    def apply(request: gr.Request, *values: Any) -> tuple[str, Any]:
        chosen = dict(zip(TABS, values[: len(TABS)], strict=True))
        thresholds = {c: v for c, v in zip(CATEGORIES, values[len(TABS) :], strict=True) if v is not None}
        try:
            studio.set_safety_policy(modes=chosen, thresholds=thresholds, user=user_of(request))
        except StudioError as exc:
            return f"**Error:** {exc}", gr.skip()
        exposed = " (exposed: tabs without a policy block)" if studio.safety_policy()["exposed"] else ""
        return f"Applied{exposed}.", gr.skip()

    def refresh(request: gr.Request) -> tuple[str, Any]:
        try:
            return "", log_rows(studio.safety_log(user=user_of(request)))
        except StudioError as exc:
            return f"**Error:** {exc}", gr.skip()

    def check(text: str) -> Any:
        try:
            return studio.safety_check(text=text)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    app.load(policy, outputs=[*modes, *limits], api_visibility="private")
    apply_btn.click(apply, [*modes, *limits], [note, log], api_name="safety_policy")
    refresh_btn.click(refresh, outputs=[note, log], api_name="safety_log")
    check_btn.click(check, sample, verdict, api_name="safety_check")
