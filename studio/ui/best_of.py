"""The Best of n row of the Chat and Code tabs: how many candidates and which scorer picks the best.

Owns: the two controls (`best_of_controls`: a 1-8 slider and the scorer dropdown, listing the models of the
`scorer` tab: Hub reward models from models.yaml and those trained in the Train tab) and folding their values
into a turn's parameters (`with_best_of`). n = 1 is an ordinary turn. The service checks both values.
Ignores: running the candidates and scoring them (service/best_of.py).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.service import Studio

NO_SCORER = "(no scorer)"


IMAGE_SCORERS = ("transformers-clip",)  # backends that score pictures; the others score text


def scorer_choices(studio: Studio, *, pictures: bool = False) -> list[str]:
    """The scorers for text answers (Chat, Code) or, with `pictures`, for the Image tab."""
    return [m.id for m in studio.models("scorer") if (m.backend in IMAGE_SCORERS) == pictures]


def image_scorer_control(studio: Studio) -> Any:
    """The Image tab's scorer dropdown: with one, the job's best picture is named and stored first."""
    scorers = scorer_choices(studio, pictures=True)
    ready = [m.id for m in studio.models("scorer") if m.id in scorers and m.status in ("ready", "loaded")]
    control = gr.Dropdown(
        choices=[NO_SCORER, *scorers],
        value=NO_SCORER,
        label="Best picture by (an image scorer, CLIP-style)",
        allow_custom_value=True,
        elem_id="image-scorer",
    )
    if not ready:
        gr.Markdown(
            "No image scorer is on this machine: CLIP weights do not ship with the studio. With the "
            "internet, `studio models pull ID` fetches one listed in models.yaml (tab scorer, backend "
            "transformers-clip)."
        )
    return control


def best_of_controls(studio: Studio, prefix: str) -> list[Any]:
    """[n slider, scorer dropdown] in a closed accordion (elem ids `<prefix>-best-of`, `<prefix>-scorer`)."""
    scorers = scorer_choices(studio)
    with gr.Accordion("Best of n", open=False):
        gr.Markdown(
            "Sample n answers (seeds seed, seed + 1, ...) and show the one the scorer (a reward model) rates "
            "highest; the others stay as alternatives of the turn (the ◀ ▶ answer browser). A thumbs up on "
            "one the scorer ranked lower is stored as a preference: data for the next reward model (Train, "
            "method reward)."
            + ("" if scorers else " No scorer yet: train one in the Train tab or list one in models.yaml.")
        )
        with gr.Row():
            n = gr.Slider(1, 8, value=1, step=1, label="Best of n", elem_id=f"{prefix}-best-of")
            scorer = gr.Dropdown(
                choices=[NO_SCORER, *scorers],
                value=scorers[0] if scorers else NO_SCORER,
                label="Scorer",
                elem_id=f"{prefix}-scorer",
                # Scorers trained after the page was built (the CLI) are valid too: the service checks.
                allow_custom_value=True,
            )
    return [n, scorer]


def with_best_of(params: dict[str, Any], n: Any = 1, scorer: Any = None) -> dict[str, Any]:
    """The turn's parameters with `best_of` and `scorer` when more than one candidate is asked for."""
    if n in (None, "", 1, 1.0):
        return params
    chosen = None if scorer in (None, "", NO_SCORER) else scorer
    return {**params, "best_of": n, "scorer": chosen}
