"""The Code tab: write, explain, fix, translate and test code; extracted, highlighted, checked, downloadable.

Owns: wiring the mode/language/template controls and the answer panes to `Studio.code`. The answer streams
into a conversation (refinement turns keep it), while the code view shows the extracted code for the
chosen language with its syntax check. Ignores: prompt building, extraction and checks (the service's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.formats.code import LANGUAGES, MODES, render_prompt
from studio.service import Action, ChatTurn, Studio, StudioError
from studio.service.code import code_settings
from studio.ui.compare import compare_panel
from studio.ui.conversation import (
    GENERATION_QUEUE,
    PARAM_NAMES,
    conversation_choices,
    default_model,
    messages,
    model_choices,
    params_from,
    render,
    sampling_panel,
    throttled,
    turns_required,
    user_of,
    vote_handler,
)
from studio.ui.feedback import feedback_panel
from studio.ui.session import StopOnClose, run_key_state

LANGUAGE_CHOICES = [(lang.label, lang.id) for lang in LANGUAGES.values()]
MODE_CHOICES = [(mode.label, mode.id) for mode in MODES.values()]


def mode_controls(mode: str) -> tuple[Any, Any, Any, Any]:
    """Input label, error box, source-language box and template for a mode."""
    spec = MODES[mode]
    return (
        gr.Textbox(label=spec.input_label),
        gr.Textbox(visible=mode == "fix"),
        gr.Dropdown(visible=mode == "translate"),
        spec.template,
    )


def run_settings(mode_id: str, lang: str, source: str, error_text: str, template_text: str) -> dict[str, Any]:
    """The Code settings the controls show, for `Studio.code`."""
    return {
        "mode": mode_id,
        "language": lang,
        "source_language": source if mode_id == "translate" else None,
        "error": error_text or "",
        # Blank or unchanged means the mode's own template (API callers may send "").
        "template": template_text
        if (template_text or "").strip() and template_text != MODES.get(mode_id, MODES["write"]).template
        else None,
    }


def check_text(result: Any) -> str:
    if result.check is None:
        return ""
    return ("✅ " if result.check.ok else "❌ ") + result.check.message


def build_code_tab(studio: Studio, app: gr.Blocks) -> None:
    models = studio.models("code")
    if not models:
        gr.Markdown("No model in models.yaml serves the code tab.")
        return
    default = default_model(models)
    defaults = studio.default_params(default, tab="code")
    run_key = run_key_state(app)

    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            conversation = gr.Dropdown(
                label="Code sessions", choices=[], value=None, elem_id="code-conversation"
            )
            new_btn = gr.Button("New session", elem_id="code-new")
            delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="code-delete")
        with gr.Column(scale=4):
            with gr.Row():
                mode = gr.Dropdown(label="Mode", choices=MODE_CHOICES, value="write", elem_id="code-mode")
                language = gr.Dropdown(
                    label="Language", choices=LANGUAGE_CHOICES, value="python", elem_id="code-language"
                )
                source_language = gr.Dropdown(
                    label="From language",
                    choices=LANGUAGE_CHOICES,
                    value="javascript",
                    visible=False,
                    elem_id="code-source-language",
                )
                model = gr.Dropdown(
                    label="Model",
                    choices=model_choices(models),
                    value=default,
                    elem_id="code-model",
                )
            text = gr.Textbox(label=MODES["write"].input_label, lines=6, elem_id="code-input")
            error = gr.Textbox(
                label="Error message or wrong behaviour (optional)",
                lines=3,
                visible=False,
                elem_id="code-error",
            )
            with gr.Accordion("Prompt template", open=False):
                template = gr.Textbox(
                    value=MODES["write"].template, lines=6, show_label=False, elem_id="code-template"
                )
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="code-run")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="code-stop")
                regen_btn = gr.Button("Regenerate", elem_id="code-regenerate")
                continue_btn = gr.Button("Continue", elem_id="code-continue")
            notice = gr.Markdown(elem_id="code-notice")
            chatbot = gr.Chatbot(label="Conversation", height=360, elem_id="code-chatbot", buttons=["copy"])
            feedback = feedback_panel(studio, "code")
            with gr.Row():
                with gr.Column():
                    code_view = gr.Code(
                        label="Code",
                        language="python",
                        interactive=False,
                        elem_id="code-view",
                        buttons=["copy"],
                    )
                    check = gr.Markdown(elem_id="code-check")
                    download = gr.DownloadButton("Download", visible=False, elem_id="code-download")
                with gr.Column():
                    explanation = gr.Markdown(label="Explanation", elem_id="code-explanation")
            sampling = sampling_panel(defaults, "code")
            compare_panel(studio, "code")

    mode.input(mode_controls, mode, [text, error, source_language, template], api_visibility="private")

    def model_defaults(model_id: str) -> list[Any]:
        """Show the chosen model's defaults for this tab, or its first answer uses the previous model's."""
        try:
            params = studio.default_params(model_id, tab="code")
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return [params[name] for name in PARAM_NAMES]

    model.input(model_defaults, model, sampling, api_visibility="private")

    run_inputs = [conversation, model, mode, language, source_language, error, template, run_key, *sampling]
    run_outputs = [
        chatbot,
        conversation,
        text,
        notice,
        code_view,
        check,
        explanation,
        download,
        mode,
        template,
    ]
    closing = StopOnClose(studio, app)  # a closed tab stops its run at once

    @closing.track
    def run(
        action: Action,
        request: gr.Request,
        text_value: str | None,
        conv: int | None,
        model_id: str,
        mode_id: str,
        lang: str,
        source: str,
        error_text: str,
        template_text: str,
        key: str,
        *values: Any,
    ) -> Iterator[Any]:
        user = user_of(request)
        turns = studio.conversation(conv, user=user) if conv else []
        index = len(turns) if action == "send" else len(turns) - 1
        shown = turns[:index]
        settings = run_settings(mode_id, lang, source, error_text, template_text)
        skip = gr.skip()
        try:
            updates = studio.code(
                model_id=model_id,
                text=text_value,
                settings=settings,
                params=params_from(values, ""),
                conversation_id=conv,
                action=action,
                user=user,
                run_key=key,
            )
            prompt = text_value if action == "send" else (as_typed(turns[index]).prompt if turns else "")
            final = None
            for update in throttled(updates):
                if update.done:
                    final = update
                    break
                partial = studio.code_result(update.text, lang, final=False)
                note = f"Loading {model_id}…" if update.status == "loading" else " ".join(update.notices)
                chat = messages(shown, (prompt or "", update.text))
                # in run_outputs order; skip leaves an output as it is
                yield chat, skip, skip, note, partial.code, skip, partial.explanation, skip, skip, skip
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        assert final is not None and final.generation_id is not None
        stored = [as_typed(t) for t in studio.conversation(final.conversation_id or 0, user=user)]
        result = studio.code_result(final.text, lang)
        notes = [*final.notices, result.notice] + (["Stopped."] if final.status == "stopped" else [])
        if final.status == "error":
            notes.append(f"Error: {final.error}")
            gr.Warning(final.error or "generation failed")
        file = studio.code_file(final.generation_id, user=user) if result.code else None
        yield (
            render(stored),
            gr.Dropdown(choices=conversation_choices(studio, user, "code"), value=final.conversation_id),
            "" if final.status == "ok" else gr.skip(),
            " ".join(n for n in notes if n),
            gr.Code(value=result.code, language=result.highlight),  # type: ignore[arg-type]
            check_text(result),
            result.explanation,
            gr.DownloadButton(value=file, visible=file is not None),
            "follow-up",  # later messages refine this answer
            MODES["follow-up"].template,
        )

    def send(request: gr.Request, text_value: str, *args: Any) -> Iterator[Any]:
        yield from run("send", request, text_value, *args)

    def regenerate(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("regenerate", request, None, *args)

    def keep_going(request: gr.Request, *args: Any) -> Iterator[Any]:
        yield from run("continue", request, None, *args)

    # In the browser, refuse what the service would refuse before the run starts (as the Chat tab does): a
    # run that fails puts Gradio's "Error" overlay over the panes, the input box and the Mode dropdown the
    # user needs to fix it. API callers call the runs directly and still get the service's errors.
    def check_send(
        text_value: Any, mode_id: str, lang: str, source: str, error_text: str, template_text: str
    ) -> None:
        try:
            chosen = code_settings(run_settings(mode_id, lang, source, error_text, template_text))
            render_prompt(
                chosen.mode,
                language=chosen.language,
                text=text_value if isinstance(text_value, str) else "",
                error=chosen.error,
                source_language=chosen.source_language,
                template=chosen.template,
            )
        except (StudioError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    gpu = GENERATION_QUEUE
    private: dict[str, Any] = {"api_visibility": "private"}
    send_checks = [text, mode, language, source_language, error, template]
    runs = [
        run_btn.click(check_send, send_checks, None, **private).success(
            send, [text, *run_inputs], run_outputs, api_name="code", **gpu
        ),
        regen_btn.click(
            turns_required(studio, "regenerate", "session"), conversation, None, **private
        ).success(regenerate, run_inputs, run_outputs, api_name="code_regenerate", **gpu),
        chatbot.retry(regenerate, run_inputs, run_outputs, **private, **gpu),
        continue_btn.click(
            turns_required(studio, "continue", "session"), conversation, None, **private
        ).success(keep_going, run_inputs, run_outputs, api_name="code_continue", **gpu),
    ]
    for ran in runs:  # the answer switched the mode to Follow-up: show that mode's controls
        ran.success(mode_controls, mode, [text, error, source_language, template], api_visibility="private")
    voted = chatbot.like(
        vote_handler(studio), [conversation], [notice, feedback.gid], api_visibility="private"
    )
    feedback.after(voted)

    def stop(key: str) -> None:
        studio.cancel(key)

    stop_btn.click(stop, run_key, None, queue=False, api_visibility="private")

    def open_session(conv: int | None, request: gr.Request) -> tuple[Any, ...]:
        """Reopen a session with the settings of its last answer (mode, languages, sampling)."""
        user = user_of(request)
        turns = [as_typed(t) for t in studio.conversation(conv, user=user)] if conv else []
        if not turns:
            return (render([]), *[gr.skip()] * (11 + len(PARAM_NAMES)))
        last = turns[-1]
        code = last.params.get("code") or {}
        result = studio.code_result(last.reply, code.get("language", "python"))
        file = studio.code_file(last.generation_id, user=user) if result.code else None
        label, error_box, _, follow_up_template = mode_controls("follow-up")
        return (
            render(turns),
            gr.Code(value=result.code, language=result.highlight),  # type: ignore[arg-type]
            check_text(result),
            result.explanation,
            gr.DownloadButton(value=file, visible=file is not None),
            "",
            "follow-up",
            label,
            error_box,
            follow_up_template,
            code.get("language", "python"),
            gr.Dropdown(value=code.get("source_language") or "javascript", visible=False),
            *[last.params.get(name, gr.skip()) for name in PARAM_NAMES],
        )

    conversation.input(
        open_session,
        conversation,
        [
            chatbot,
            code_view,
            check,
            explanation,
            download,
            notice,
            mode,
            text,
            error,
            template,
            language,
            source_language,
            *sampling,
        ],
        api_visibility="private",
    )

    def new_session() -> tuple[Any, ...]:
        hidden = gr.DownloadButton(value=None, visible=False)
        return (gr.Dropdown(value=None), render([]), "", "", "", hidden, "", "write", *mode_controls("write"))

    new_outputs = [
        conversation,
        chatbot,
        code_view,
        check,
        explanation,
        download,
        notice,
        mode,
        text,
        error,
        source_language,
        template,
    ]
    new_btn.click(new_session, None, new_outputs, api_visibility="private")
    # The chatbot's trash icon only empties the view; without this the next run would silently continue
    # the hidden session (and send its history to the model).
    chatbot.clear(new_session, None, new_outputs, api_visibility="private")

    def delete(conv: int | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete a session and clear every pane that showed it."""
        if conv:
            studio.delete_conversation(conv, user=user_of(request))
        choices = conversation_choices(studio, user_of(request), "code")
        cleared = ("", "", "", gr.DownloadButton(value=None, visible=False), "")
        return (gr.Dropdown(choices=choices, value=None), render([]), *cleared)

    delete_btn.click(
        delete,
        conversation,
        [conversation, chatbot, code_view, check, explanation, download, notice],
        api_name="code_delete",
    )

    def on_load(request: gr.Request) -> tuple[Any, None]:
        # None blanks the seed (blank = random): Gradio's Number would otherwise start at 0.
        return gr.Dropdown(choices=conversation_choices(studio, user_of(request), "code")), None

    app.load(on_load, None, [conversation, sampling[-1]], api_visibility="private")


def as_typed(turn: ChatTurn) -> ChatTurn:
    """Show a turn's user message as typed; the model saw it inside the mode's template."""
    typed = (turn.params.get("code") or {}).get("input")
    return dataclasses.replace(turn, prompt=typed) if typed else turn
