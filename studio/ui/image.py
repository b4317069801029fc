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
from studio.ui.best_of import NO_SCORER, image_scorer_control
from studio.ui.compare import compare_panel
from studio.ui.conversation import (
    GENERATION_QUEUE,
    PRIVATE,
    model_choices,
    model_picker,
    slider,
    tab_models,
    user_of,
)
from studio.ui.feedback import feedback_panel
from studio.ui.selection import Selection, stored, thumb_buttons, vote_mark
from studio.ui.session import StopOnClose, run_key_state, stop_button

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


def png_info_text(info: dict[str, Any]) -> str:
    """PNG Info as Markdown: every setting the picture states, one line each."""
    if not info.get("source"):
        return "This picture carries no generation settings."
    where = "this studio" if info["source"] == "studio" else "AUTOMATIC1111 / Forge"
    lines = [f"**Made with {where}.**", f"Prompt: {info.get('prompt') or '(empty)'}"]
    labels = {"negative_prompt": "Negative prompt", "steps": "Steps", "sampler": "Sampler"}
    labels |= {"cfg_scale": "CFG scale", "seed": "Seed", "model": "Model", "denoising_strength": "Denoising"}
    lines += [f"{label}: {info[key]}" for key, label in labels.items() if info.get(key) not in (None, "")]
    if info.get("width"):
        lines.append(f"Size: {info['width']}x{info['height']}")
    lines += [f"LoRA: {lora['id']} ({lora['scale']})" for lora in info.get("loras") or []]
    lines += [f"{key}: {value}" for key, value in (info.get("extra") or {}).items()]
    return "\n\n".join(lines)


def lora_choices(studio: Studio, model_id: str) -> list[tuple[str, str]]:
    spec = studio.config.model(model_id)
    return [("None", "")] + [(lora.id, lora.id) for lora in spec.loras]


def build_image_tab(studio: Studio, app: gr.Blocks) -> None:
    if (start := tab_models(studio, "image")) is None:
        return  # no model for the tab: it says so
    models, default, defaults = start
    run_key = run_key_state(app)
    gallery_ids = gr.State([])  # generation id of each gallery picture, in gallery order
    selection = Selection(studio, "Select a picture first.")  # the selected picture

    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                model = model_picker(studio, "image", models, default, "image-model")
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
                steps = slider(defaults, "steps", (1, 150), 1, "Steps", "image-steps")
                guidance = slider(defaults, "guidance", (0, 30), 0.5, "Guidance", "image-guidance")
            with gr.Row():
                width = slider(defaults, "width", (64, 2048), 8, "Width", "image-width")
                height = slider(defaults, "height", (64, 2048), 8, "Height", "image-height")
            with gr.Row():
                num_images = slider(defaults, "num_images", (1, 8), 1, "Images", "image-num-images")
                seed = gr.Number(
                    value=None,
                    precision=0,
                    label="Seed (blank = random)",
                    placeholder="random",
                    elem_id="image-seed",
                )  # blanked by the page's load event (below)
            with gr.Accordion("Image to image", open=False):
                init_image = gr.Image(label="Init image", type="filepath", format="png", elem_id="image-init")
                strength = slider(defaults, "strength", (0.05, 1.0), 0.05, "Strength", "image-strength")
            with gr.Accordion("PNG Info: read a picture's settings", open=False):
                # gr.File, not gr.Image: an image component may re-encode the upload and drop its text chunks.
                png_file = gr.File(
                    label="Drop a PNG (the studio's, AUTOMATIC1111's or Forge's)",
                    file_types=[".png"],
                    type="filepath",
                    elem_id="image-png-info-file",
                )
                png_info = gr.Markdown(elem_id="image-png-info")
                apply_btn = gr.Button(
                    "Apply to the controls", size="sm", interactive=False, elem_id="image-png-apply"
                )
            with gr.Accordion("LoRA", open=False):
                lora = gr.Dropdown(
                    label="LoRA", choices=lora_choices(studio, default), value="", elem_id="image-lora"
                )
                lora_scale = slider(defaults, "lora_scale", (0, 2), 0.05, "LoRA scale")
            with gr.Row():
                generate_btn = gr.Button(
                    "Generate",
                    variant="primary",
                    interactive=studio.can_run(default),  # off for a model that is not downloaded
                    elem_id="image-generate",
                )
                stop_btn = gr.Button("Stop", variant="stop", elem_id="image-stop")
            notice = gr.Markdown(elem_id="image-notice")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Your pictures", columns=4, height=520, elem_id="image-gallery")
            info = gr.Markdown("Select a picture to see how it was made.", elem_id="image-info")
            with gr.Row():
                thumbs = thumb_buttons("image")
                reuse_btn = gr.Button("Reuse settings", size="sm", elem_id="image-reuse")
                init_btn = gr.Button("Use as init image", size="sm", elem_id="image-use-init")
            image_scorer = image_scorer_control(studio)
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
        values, scorer = values[: len(IMAGE_PARAMS)], values[len(IMAGE_PARAMS) :]
        params = image_params(strength_value, lora_id, scale, values)
        if scorer and scorer[0] not in (None, "", NO_SCORER):
            params["scorer"] = scorer[0]
        try:
            updates = studio.image(
                model_id=model_id, prompt=text, params=params, init_image=init or None, user=user, run_key=key
            )
            for update in updates:
                if update.done:
                    final = update
                    break
                if update.status == "loading":
                    yield gr.skip(), gr.skip(), studio.load_note(model_id)
                else:
                    progress((update.step, update.total), desc="Denoising", unit="steps")
                    yield gr.skip(), gr.skip(), f"Step {update.step}/{update.total}"
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        pictures, ids = refreshed_gallery(user)
        if final.status == "error":
            gr.Warning(final.error or "generation failed")
            note = f"Error: {final.error}"
        elif final.status == "stopped":
            note = "Stopped."
        elif final.status == "blocked":  # the safety check withheld every picture (or refused the prompt)
            gr.Warning(final.error or "blocked by the safety check")
            note = str(final.error)
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
            studio.check_weights(model_id)
            studio.check_prompt(text)
            params_for(
                model_for(studio.config, model_id, "image"),
                image_params(strength_value, lora_id, scale, values),
            )
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    generate_btn.click(
        check, [prompt, model, strength, lora, lora_scale, *controls], None, **PRIVATE
    ).success(
        generate,
        [prompt, model, init_image, strength, lora, lora_scale, run_key, *controls, image_scorer],
        [gallery, gallery_ids, notice],
        api_name="image",
        **GENERATION_QUEUE,
    )

    stop_button(studio, stop_btn, run_key)

    def read_png(file: str | None) -> tuple[str, Any]:
        if not file:
            return "", gr.Button(interactive=False)
        try:
            info = studio.image_info(file)
        except StudioError as exc:
            return f"**Error:** {exc}", gr.Button(interactive=False)
        return png_info_text(info), gr.Button(interactive=bool(info["settings"]) or bool(info.get("prompt")))

    def apply_png(file: str | None, model_id: str) -> list[Any]:
        info = studio.image_info(file) if file else {"settings": {}}
        settings = info["settings"]
        known_loras = {lora.id for lora in studio.config.model(model_id).loras}
        if settings.get("lora") not in known_loras:  # a LoRA this model does not have stays unset
            settings.pop("lora", None)
            settings.pop("lora_scale", None)
        prompt_value = info.get("prompt")
        names = [*IMAGE_PARAMS, "strength", "lora", "lora_scale"]
        values = [settings[name] if name in settings else gr.skip() for name in names]
        return [gr.skip() if prompt_value is None else prompt_value, *values]

    png_file.change(read_png, png_file, [png_info, apply_btn], **PRIVATE)
    apply_btn.click(apply_png, [png_file, model], [prompt, *controls, strength, lora, lora_scale], **PRIVATE)

    def model_changed(model_id: str) -> list[Any]:
        params = studio.default_params(model_id, tab="image")
        return [
            *[params[name] if name != "seed" else gr.skip() for name in IMAGE_PARAMS],
            gr.Dropdown(choices=lora_choices(studio, model_id), value=""),
            model_note(studio, model_id),
            gr.Button(interactive=studio.can_run(model_id)),
        ]

    model.input(model_changed, model, [*controls, lora, note, generate_btn], **PRIVATE)

    def describe(gid: int | None, user: str | None) -> str:
        if gid is None:
            return "Select a picture to see how it was made."
        settings = studio.generation_settings(gid, user=user)
        p = settings["params"]
        vote = vote_mark(studio, gid, user)
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
        return gid, describe(gid, user_of(request))

    gallery.select(select, gallery_ids, [selection.gid, info], **PRIVATE)
    selection.thumbs(thumbs, info, describe, feedback)

    def reused(p: dict[str, Any]) -> list[Any]:
        values = stored(p, IMAGE_PARAMS)
        values[IMAGE_PARAMS.index("num_images")] = 1  # the picture's own seed reproduces it alone
        return [*values, p.get("strength", 0.75), p.get("lora") or ""]

    selection.reuse(reuse_btn, [model, prompt, *controls, strength, lora], reused)

    def use_as_init(gid: int | None, request: gr.Request) -> str:
        return str(studio.generation_file(selection.require(gid), user=user_of(request)))

    init_btn.click(use_as_init, selection.gid, init_image, **PRIVATE)

    def on_load(model_id: str, request: gr.Request) -> tuple[Any, ...]:
        pictures, ids = refreshed_gallery(user_of(request))
        fresh = model_choices(studio.models("image"))
        # None blanks the seed: Gradio's Number starts at 0 whatever its value (so every picture got seed 0).
        runnable = gr.Button(interactive=studio.can_run(model_id))
        return pictures, ids, gr.Dropdown(choices=fresh), model_note(studio, model_id), None, runnable

    app.load(on_load, model, [gallery, gallery_ids, model, note, seed, generate_btn], **PRIVATE)
