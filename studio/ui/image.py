"""The Image tab: text-to-image and image-to-image with progress, Stop, LoRA, a gallery, votes and reuse.

Owns: wiring the controls and the gallery to `Studio.image` and friends. The gallery shows the user's
latest pictures; selecting one shows how it was made and offers votes, "reuse settings" and "use as init
image". `gr.State` keeps generation ids only. Ignores: validation, files and metadata (the service's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Studio, StudioError
from studio.service.checks import model_for, params_for
from studio.ui.compare import compare_panel
from studio.ui.conversation import GENERATION_QUEUE, default_model, model_choices, user_of
from studio.ui.feedback import cast_vote, feedback_panel
from studio.ui.session import StopOnClose, run_key_state

SCHEDULERS = [
    ("Model default", "default"),
    ("Euler", "euler"),
    ("Euler ancestral", "euler_a"),
    ("DPM++ 2M", "dpmpp_2m"),
    ("DDIM", "ddim"),
    ("UniPC", "unipc"),
    ("LCM (LCM/Turbo models)", "lcm"),
]
# The order of the parameter controls, as the handlers receive them (and as the /image API lists them).
IMAGE_PARAMS = ("negative_prompt", "steps", "guidance", "width", "height", "num_images", "seed", "scheduler")


def model_note(studio: Studio, model_id: str) -> str:
    """Say up front when a model cannot run here, and how to fix it (rather than at Generate time)."""
    status = studio.model_status(model_id)
    if status in ("ready", "loaded"):
        return ""
    if status == "missing":
        return f"**{model_id}**: its weights folder is missing; check `source:` in models.yaml."
    return f"**{model_id} is not downloaded.** Run `studio models pull {model_id}` once, with the internet."


def lora_choices(studio: Studio, model_id: str) -> list[tuple[str, str]]:
    spec = studio.config.model(model_id)
    return [("None", "")] + [(lora.id, lora.id) for lora in spec.loras]


def build_image_tab(studio: Studio, app: gr.Blocks) -> None:
    models = studio.models("image")
    if not models:
        gr.Markdown("No model in models.yaml serves the image tab.")
        return
    default = default_model(models)
    defaults = studio.default_params(default, tab="image")
    run_key = run_key_state(app)
    gallery_ids = gr.State([])  # generation id of each gallery picture, in gallery order
    selected = gr.State(None)  # generation id of the selected picture

    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                model = gr.Dropdown(
                    label="Model",
                    choices=model_choices(models),
                    value=default,
                    elem_id="image-model",
                )
                scheduler = gr.Dropdown(
                    label="Scheduler",
                    choices=SCHEDULERS,
                    value=defaults["scheduler"],
                    elem_id="image-scheduler",
                )
            note = gr.Markdown(model_note(studio, default), elem_id="image-model-note")
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="image-prompt")
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="image-negative")
            with gr.Row():
                steps = gr.Slider(
                    1, 150, value=defaults["steps"], step=1, label="Steps", elem_id="image-steps"
                )
                guidance = gr.Slider(
                    0, 30, value=defaults["guidance"], step=0.5, label="Guidance", elem_id="image-guidance"
                )
            with gr.Row():
                width = gr.Slider(
                    64, 2048, value=defaults["width"], step=8, label="Width", elem_id="image-width"
                )
                height = gr.Slider(
                    64, 2048, value=defaults["height"], step=8, label="Height", elem_id="image-height"
                )
            with gr.Row():
                num_images = gr.Slider(
                    1, 8, value=defaults["num_images"], step=1, label="Images", elem_id="image-num-images"
                )
                seed = gr.Number(
                    value=None,
                    precision=0,
                    label="Seed (blank = random)",
                    placeholder="random",
                    elem_id="image-seed",
                )  # blanked by the page's load event (below)
            with gr.Accordion("Image to image", open=False):
                init_image = gr.Image(label="Init image", type="filepath", format="png", elem_id="image-init")
                strength = gr.Slider(
                    0.05,
                    1.0,
                    value=defaults["strength"],
                    step=0.05,
                    label="Strength",
                    elem_id="image-strength",
                )
            with gr.Accordion("LoRA", open=False):
                lora = gr.Dropdown(
                    label="LoRA", choices=lora_choices(studio, default), value="", elem_id="image-lora"
                )
                lora_scale = gr.Slider(0, 2, value=defaults["lora_scale"], step=0.05, label="LoRA scale")
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary", elem_id="image-generate")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="image-stop")
            notice = gr.Markdown(elem_id="image-notice")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Your pictures", columns=4, height=520, elem_id="image-gallery")
            info = gr.Markdown("Select a picture to see how it was made.", elem_id="image-info")
            with gr.Row():
                like_btn = gr.Button("👍 Like", size="sm", elem_id="image-like")
                dislike_btn = gr.Button("👎 Dislike", size="sm", elem_id="image-dislike")
                reuse_btn = gr.Button("Reuse settings", size="sm", elem_id="image-reuse")
                init_btn = gr.Button("Use as init image", size="sm", elem_id="image-use-init")
            feedback = feedback_panel(studio, "image")

    compare_panel(studio, "image")
    controls = [negative, steps, guidance, width, height, num_images, seed, scheduler]

    def refreshed_gallery(user: str | None) -> tuple[list[tuple[str, str]], list[int]]:
        pictures = studio.recent_images(user=user)
        return [(str(path), caption) for _, path, caption in pictures], [gid for gid, _, _ in pictures]

    def image_params(
        strength_value: float, lora_id: str, scale: float, values: tuple[Any, ...]
    ) -> dict[str, Any]:
        params = dict(zip(IMAGE_PARAMS, values, strict=True))
        params["seed"] = None if params["seed"] in (None, "") else int(params["seed"])
        return params | {"strength": strength_value, "lora": lora_id or None, "lora_scale": scale}

    closing = StopOnClose(studio, app)  # a closed tab stops its run at once

    @closing.track
    def generate(
        request: gr.Request,
        text: str,
        model_id: str,
        init: str | None,
        strength_value: float,
        lora_id: str,
        scale: float,
        key: str,
        *values: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented way to get a progress bar
    ) -> Iterator[Any]:
        user = user_of(request)
        params = image_params(strength_value, lora_id, scale, values)
        try:
            updates = studio.image(
                model_id=model_id, prompt=text, params=params, init_image=init or None, user=user, run_key=key
            )
            for update in updates:
                if update.done:
                    final = update
                    break
                if update.status == "loading":
                    yield gr.skip(), gr.skip(), f"Loading {model_id}…"
                else:
                    progress((update.step, update.total), desc="Denoising", unit="steps")
                    yield gr.skip(), gr.skip(), f"Step {update.step}/{update.total}"
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        pictures, ids = refreshed_gallery(user)
        if final.status == "error":
            gr.Warning(final.error or "generation failed")
            note = f"Error: {final.error}"
        elif final.status == "stopped":
            note = "Stopped."
        else:
            seeds = ", ".join(str(s) for s in final.seeds)
            note = f"{len(final.files)} picture(s), seed {seeds}"
        yield pictures, ids, " ".join([note, *final.notices])

    # In the browser, refuse what the service would refuse before the run starts (as the Chat and Code tabs
    # do): a run that fails puts Gradio's "Error" overlay over the gallery, hiding every picture. API
    # callers call the run directly and still get the service's errors.
    def check(
        text: Any, model_id: str, strength_value: float, lora_id: str, scale: float, *values: Any
    ) -> None:
        try:
            studio.check_prompt(text)
            params_for(
                model_for(studio.config, model_id, "image"),
                image_params(strength_value, lora_id, scale, values),
            )
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    generate_btn.click(
        check, [prompt, model, strength, lora, lora_scale, *controls], None, api_visibility="private"
    ).success(
        generate,
        [prompt, model, init_image, strength, lora, lora_scale, run_key, *controls],
        [gallery, gallery_ids, notice],
        api_name="image",
        **GENERATION_QUEUE,
    )

    def stop(key: str) -> None:
        studio.cancel(key)

    stop_btn.click(stop, run_key, None, queue=False, api_visibility="private")

    def model_changed(model_id: str) -> list[Any]:
        params = studio.default_params(model_id, tab="image")
        return [
            *[params[name] if name != "seed" else gr.skip() for name in IMAGE_PARAMS],
            gr.Dropdown(choices=lora_choices(studio, model_id), value=""),
            model_note(studio, model_id),
        ]

    model.input(model_changed, model, [*controls, lora, note], api_visibility="private")

    def describe(gid: int | None, request: gr.Request) -> str:
        if gid is None:
            return "Select a picture to see how it was made."
        settings = studio.generation_settings(gid, user=user_of(request))
        p = settings["params"]
        vote = {1: "👍", -1: "👎"}.get(studio.rating(gid, user=user_of(request)) or 0, "no vote")
        lines = [
            f"**#{gid}** {settings['model']} · {p.get('width')}x{p.get('height')} · {p.get('steps')} steps · "
            f"guidance {p.get('guidance')} · seed {p.get('seed')} · {p.get('scheduler')} · {vote}",
            f"Prompt: {settings['prompt']}",
        ]
        if p.get("negative_prompt"):
            lines.append(f"Negative: {p['negative_prompt']}")
        return "\n\n".join(lines)

    def select(ids: list[int], event: gr.SelectData, request: gr.Request) -> tuple[Any, str]:
        gid = ids[event.index] if isinstance(event.index, int) and event.index < len(ids) else None
        return gid, describe(gid, request)

    gallery.select(select, gallery_ids, [selected, info], api_visibility="private")

    def vote(value: str) -> Any:
        def handler(gid: int | None, request: gr.Request) -> str:
            if gid is None:
                raise gr.Error("Select a picture first.")
            cast_vote(studio, gid, value, user_of(request))
            return describe(gid, request)

        return handler

    feedback.after(like_btn.click(vote("up"), selected, info, api_visibility="private"), selected)
    feedback.after(dislike_btn.click(vote("down"), selected, info, api_visibility="private"), selected)

    def reuse(gid: int | None, request: gr.Request) -> list[Any]:
        if gid is None:
            raise gr.Error("Select a picture first.")
        settings = studio.generation_settings(gid, user=user_of(request))
        p = settings["params"]
        values = [p.get(name, gr.skip()) for name in IMAGE_PARAMS]
        values[IMAGE_PARAMS.index("num_images")] = 1  # the picture's own seed reproduces it alone
        return [settings["model"], settings["prompt"], *values, p.get("strength", 0.75), p.get("lora") or ""]

    reuse_btn.click(reuse, selected, [model, prompt, *controls, strength, lora], api_visibility="private")

    def use_as_init(gid: int | None, request: gr.Request) -> str:
        if gid is None:
            raise gr.Error("Select a picture first.")
        return str(studio.generation_file(gid, user=user_of(request)))

    init_btn.click(use_as_init, selected, init_image, api_visibility="private")

    def on_load(model_id: str, request: gr.Request) -> tuple[Any, ...]:
        pictures, ids = refreshed_gallery(user_of(request))
        fresh = model_choices(studio.models("image"))
        # None blanks the seed: Gradio's Number starts at 0 whatever its value (so every picture got seed 0).
        return pictures, ids, gr.Dropdown(choices=fresh), model_note(studio, model_id), None

    app.load(on_load, model, [gallery, gallery_ids, model, note, seed], api_visibility="private")
