"""The Audio tab: Speech and Music sections with progress, Stop, a player with download, votes and reuse.

Owns: wiring each section's controls to `Studio.speech` / `Studio.music` and friends, showing each control
only for the backends that use it (the voice preset only for transformers' Bark). Each section shows the
clip just made (a player, which draws the clip's waveform; the stored waveform picture is an output for API
callers only, not shown twice) and a list of the user's recent clips: choosing one plays it, shows how it
was made and offers 👍/👎 and "reuse settings". `gr.State` keeps generation ids only.
Ignores: validation, files and storage (the service's).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Studio, StudioError
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
from studio.ui.image import model_note
from studio.ui.selection import Selection, stored, thumb_buttons, vote_mark
from studio.ui.session import StopOnClose, run_key_state, stop_button

# The parameter controls of each section, in the order the handlers (and the /speech, /music APIs) take them.
SPEECH_PARAMS = ("speed", "voice", "seed")
MUSIC_PARAMS = ("duration", "guidance", "temperature", "top_k", "seed")
# Controls only some backends use (every other control is used by every backend of its section): hibari has
# one voice per model, so only transformers-tts (Bark's presets) takes a voice.
ONLY_FOR = {"voice": ("transformers-tts",)}


def uses(studio: Studio, tab: str, model_id: str, control: str) -> bool:
    """Does the model's backend use `control`? Controls not in ONLY_FOR are used by every backend."""
    backends = ONLY_FOR.get(control)
    if backends is None:
        return True
    return any(m.backend in backends for m in studio.models(tab) if m.id == model_id)


def _params(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    params = dict(zip(names, values, strict=True))
    seed = params.get("seed")
    params["seed"] = None if seed in (None, "") else int(seed)
    if "voice" in params:
        params["voice"] = params["voice"] or None
    return params


def _speech_controls(defaults: dict[str, Any], with_voice: bool) -> list[Any]:
    with gr.Row():
        speed = slider(defaults, "speed", (0.5, 2.0), 0.05, "Speed", "speech-speed")
        voice = gr.Textbox(
            label="Voice preset (Bark models)",
            placeholder="v2/en_speaker_6",
            visible=with_voice,
            elem_id="speech-voice",
        )
        seed = gr.Number(value=None, precision=0, label="Seed (blank = random)", elem_id="speech-seed")
    return [speed, voice, seed]


def _music_controls(defaults: dict[str, Any]) -> list[Any]:
    with gr.Row():
        duration = slider(defaults, "duration", (1, 300), 0.5, "Duration (s)", "music-duration")
        guidance = slider(defaults, "guidance", (0, 20), 0.5, "Guidance", "music-guidance")
    with gr.Row():
        temperature = slider(defaults, "temperature", (0.05, 2.0), 0.05, "Temperature", "music-temperature")
        top_k = slider(defaults, "top_k", (0, 2048), 1, "Top-k", "music-top-k")
        seed = gr.Number(value=None, precision=0, label="Seed (blank = random)", elem_id="music-seed")
    return [duration, guidance, temperature, top_k, seed]


def _clip_choices(studio: Studio, tab: str, user: str | None) -> list[tuple[str, int]]:
    out = []
    for clip in studio.recent_clips(tab, user=user):
        words = " ".join(clip.prompt.split())
        words = words if len(words) <= 40 else words[:39] + "…"
        out.append((f"#{clip.generation_id} {clip.duration_s:.1f} s · {words}", clip.generation_id))
    return out


def _describe(studio: Studio, gid: int, user: str | None) -> str:
    settings = studio.generation_settings(gid, user=user)
    p = settings["params"]
    vote = vote_mark(studio, gid, user)
    names = SPEECH_PARAMS if settings["tab"] == "speech" else MUSIC_PARAMS
    shown = ", ".join(f"{k} {p[k]}" for k in names if p.get(k) not in (None, ""))
    head = f"**#{gid}** {settings['model']} · {p.get('duration_s')} s at {p.get('sample_rate')} Hz · {vote}"
    return f"{head}\n\n{shown}\n\n{settings['tab'].capitalize()}: {settings['prompt']}"


def _section(studio: Studio, app: gr.Blocks, tab: str) -> None:
    if (start := tab_models(studio, tab)) is None:
        return  # no model for the tab: it says so
    models, default, defaults = start
    names = SPEECH_PARAMS if tab == "speech" else MUSIC_PARAMS
    run_key = run_key_state(app)
    selection = Selection(studio, "Generate or choose a clip first.")  # the clip in the player
    with gr.Row():
        with gr.Column(scale=2):
            model = model_picker(studio, tab, models, default, f"{tab}-model")
            note = gr.Markdown(model_note(studio, default), elem_id=f"{tab}-model-note")
            label = "Text to speak" if tab == "speech" else "Describe the music"
            prompt = gr.Textbox(label=label, lines=4, elem_id=f"{tab}-prompt")
            if tab == "speech":
                controls = _speech_controls(defaults, uses(studio, tab, default, "voice"))
            else:
                controls = _music_controls(defaults)
            melody = None
            if tab == "music":
                with gr.Accordion("Melody (melody models only)", open=False):
                    melody = gr.Audio(
                        label="Melody clip", sources=["upload"], type="filepath", elem_id="music-melody"
                    )
            with gr.Row():
                generate_btn = gr.Button(  # off for a model that is not downloaded
                    "Generate",
                    variant="primary",
                    interactive=studio.can_run(default),
                    elem_id=f"{tab}-generate",
                )
                stop_btn = gr.Button("Stop", variant="stop", elem_id=f"{tab}-stop")
            notice = gr.Markdown(elem_id=f"{tab}-notice")
        with gr.Column(scale=3):
            player = gr.Audio(
                label="Clip",
                type="filepath",
                interactive=False,
                buttons=["download"],
                elem_id=f"{tab}-player",
            )
            # The player draws the clip's waveform; the stored picture stays an output (API callers get
            # its path) but is not shown a second time.
            picture = gr.Image(
                label="Waveform",
                type="filepath",
                interactive=False,
                visible=False,
                elem_id=f"{tab}-waveform",
            )
            info = gr.Markdown(elem_id=f"{tab}-info")
            with gr.Row():
                thumbs = thumb_buttons(tab)
                reuse_btn = gr.Button("Reuse settings", size="sm", elem_id=f"{tab}-reuse")
            feedback = feedback_panel(studio, tab)
            clips = gr.Dropdown(label="Recent clips", choices=[], value=None, elem_id=f"{tab}-clips")

    closing = StopOnClose(studio, app)  # a closed tab stops its run at once

    @closing.track
    def generate(
        request: gr.Request,
        text: str,
        model_id: str,
        key: str,
        melody_file: str | None,
        *values: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented way to get a progress bar
    ) -> Iterator[Any]:
        user = user_of(request)
        params = _params(names, values)
        try:
            if tab == "speech":
                updates = studio.speech(model_id=model_id, text=text, params=params, user=user, run_key=key)
            else:
                updates = studio.music(
                    model_id=model_id, prompt=text, params=params, melody=melody_file, user=user, run_key=key
                )
            final = None
            for update in updates:
                if update.done:
                    final = update
                elif update.status == "loading":
                    yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), studio.load_note(model_id)
                elif update.total:
                    progress((update.step, update.total), desc="Generating", unit="steps")
                    yield (
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        f"{update.step}/{update.total}",
                    )
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        assert final is not None
        choices = gr.Dropdown(choices=_clip_choices(studio, tab, user), value=final.generation_id)
        if final.status != "ok":
            message = "Stopped." if final.status == "stopped" else f"Error: {final.error}"
            if final.status == "error":
                gr.Warning(final.error or "generation failed")
            yield None, None, None, "", gr.Dropdown(choices=_clip_choices(studio, tab, user)), message
            return
        gid = final.generation_id
        done = f"{final.duration_s:.2f} s at {final.sample_rate} Hz, seed {final.seed}"
        yield (str(final.file), str(final.picture), gid, _describe(studio, gid or 0, user), choices,
               " ".join([done, *final.notices]))  # fmt: skip

    def check(text: Any, model_id: str, *values: Any) -> None:
        try:
            studio.check_audio(tab, model_id, text, _params(names, values))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    melody_input = [melody] if melody is not None else [gr.State(None)]
    generate_btn.click(check, [prompt, model, *controls], None, **PRIVATE).success(
        generate,
        [prompt, model, run_key, *melody_input, *controls],
        [player, picture, selection.gid, info, clips, notice],
        api_name=tab,
        **GENERATION_QUEUE,
    )
    stop_button(studio, stop_btn, run_key)

    def model_changed(model_id: str) -> list[Any]:
        params = studio.default_params(model_id, tab=tab)
        values: list[Any] = []
        for n in names:
            if n == "seed":
                values.append(gr.skip())  # a seed the user typed stays
            elif n in ONLY_FOR:  # only the voice: a textbox, shown for the backends that take one
                values.append(gr.Textbox(value=params.get(n) or "", visible=uses(studio, tab, model_id, n)))
            else:
                values.append(params.get(n))
        return [*values, model_note(studio, model_id), gr.Button(interactive=studio.can_run(model_id))]

    model.input(model_changed, model, [*controls, note, generate_btn], **PRIVATE)

    def show(gid: int | None, request: gr.Request) -> tuple[Any, ...]:
        if gid is None:
            return None, None, None, ""
        user = user_of(request)
        files = [c for c in studio.recent_clips(tab, user=user, limit=200) if c.generation_id == gid]
        if not files:
            raise gr.Error(f"clip {gid} is not available", print_exception=False)
        clip = files[0]
        picture_path = str(clip.picture) if clip.picture else None
        return str(clip.file), picture_path, gid, _describe(studio, gid, user)

    clips.input(show, clips, [player, picture, selection.gid, info], **PRIVATE)
    selection.thumbs(thumbs, info, functools.partial(_describe, studio), feedback)
    selection.reuse(reuse_btn, [model, prompt, *controls], lambda p: stored(p, names))

    def on_load(model_id: str, request: gr.Request) -> tuple[Any, ...]:
        fresh = model_choices(studio.models(tab))
        choices = _clip_choices(studio, tab, user_of(request))
        # None blanks the seed: Gradio's Number starts at 0 whatever its value.
        return gr.Dropdown(choices=fresh), model_note(studio, model_id), gr.Dropdown(choices=choices), None

    app.load(on_load, model, [model, note, clips, controls[-1]], **PRIVATE)


def build_audio_tab(studio: Studio, app: gr.Blocks) -> None:
    with gr.Tabs(elem_id="audio-tabs"):
        with gr.Tab("Speech", id="speech"):
            _section(studio, app, "speech")
            compare_panel(studio, "speech")
        with gr.Tab("Music", id="music"):
            _section(studio, app, "music")
            compare_panel(studio, "music")
