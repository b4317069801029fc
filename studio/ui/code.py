"""The Code tab: write, explain, fix, translate and test code; extracted, highlighted, checked, downloadable.

Owns: wiring the mode/language/template controls and the answer panes to `Studio.code`. The answer streams
into a conversation (refinement turns keep it), while the code view shows the extracted code for the
chosen language with its syntax check. Ignores: prompt building, extraction and checks (the service's),
and what Code shares with Chat (studio/ui/conversation.py, turns.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Action, ChatTurn, Studio, StudioError
from studio.service.code import LANGUAGES, MODES, code_prompt, code_settings
from studio.ui.compare import compare_panel
from studio.ui.conversation import (
    GENERATION_QUEUE,
    PARAM_NAMES,
    PRIVATE,
    conversation_choices,
    model_choices,
    params_from,
    render,
    sampling_panel,
    tab_models,
    user_of,
)
from studio.ui.feedback import feedback_panel
from studio.ui.session import StopOnClose, run_key_state, stop_button
from studio.ui.turns import Streamed, closing_notes, follow_model_defaults, send_handler, wire_new, wire_redo

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
    if (start := tab_models(studio, "code")) is None:
        return  # no model for the tab: it says so
    models, default, defaults = start
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

    mode_outputs = [text, error, source_language, template]  # what mode_controls sets
    panes = [chatbot, code_view, check, explanation, download, notice]  # what shows a session's answer
    mode.input(mode_controls, mode, mode_outputs, **PRIVATE)
    follow_model_defaults(studio, model, sampling, "code")

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
        request: gr.Request | None = None,
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
            stream = Streamed(updates, model_id, shown, prompt)
            for update, chat, note in stream:
                partial = studio.code_result(update.text, lang, final=False)
                # in run_outputs order; skip leaves an output as it is
                yield chat, skip, skip, note, partial.code, skip, partial.explanation, skip, skip, skip
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        final = stream.final
        assert final is not None and final.generation_id is not None
        stored = [as_typed(t) for t in studio.conversation(final.conversation_id or 0, user=user)]
        result = studio.code_result(final.text, lang)
        notes = closing_notes(final, result.notice)
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

    # In the browser, refuse what the service would refuse before the run starts (as the Chat tab does): a
    # run that fails puts Gradio's "Error" overlay over the panes, the input box and the Mode dropdown the
    # user needs to fix it. API callers call the runs directly and still get the service's errors.
    def check_send(
        text_value: Any, mode_id: str, lang: str, source: str, error_text: str, template_text: str
    ) -> None:
        try:
            code_prompt(
                text_value, code_settings(run_settings(mode_id, lang, source, error_text, template_text))
            )
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    send_checks = [text, mode, language, source_language, error, template]
    io = (run_inputs, run_outputs)
    runs = [
        run_btn.click(check_send, send_checks, None, **PRIVATE).success(
            send_handler(run), [text, *run_inputs], run_outputs, api_name="code", **GENERATION_QUEUE
        ),
        *wire_redo(studio, run, (regen_btn, continue_btn), chatbot, conversation, io, "session", "code_"),
    ]
    for ran in runs:  # the answer switched the mode to Follow-up: show that mode's controls
        ran.success(mode_controls, mode, mode_outputs, **PRIVATE)
    feedback.chatbot_votes(chatbot, conversation, notice)
    stop_button(studio, stop_btn, run_key)

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
        source = gr.Dropdown(value=code.get("source_language") or "javascript", visible=False)
        return (
            render(turns),
            gr.Code(value=result.code, language=result.highlight),  # type: ignore[arg-type]
            check_text(result),
            result.explanation,
            gr.DownloadButton(value=file, visible=file is not None),
            "",
            "follow-up",
            *(label, error_box, source, follow_up_template),  # in mode_outputs order
            code.get("language", "python"),
            *[last.params.get(name, gr.skip()) for name in PARAM_NAMES],
        )

    conversation.input(
        open_session, conversation, [*panes, mode, *mode_outputs, language, *sampling], **PRIVATE
    )

    def emptied() -> tuple[Any, ...]:
        """The panes, in `panes` order, showing no session."""
        return render([]), "", "", "", gr.DownloadButton(value=None, visible=False), ""

    def new_session() -> tuple[Any, ...]:
        return (gr.Dropdown(value=None), *emptied(), "write", *mode_controls("write"))

    wire_new(new_btn, chatbot, new_session, [conversation, *panes, mode, *mode_outputs])

    def delete(conv: int | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete a session and clear every pane that showed it."""
        if conv:
            studio.delete_conversation(conv, user=user_of(request))
        choices = conversation_choices(studio, user_of(request), "code")
        return (gr.Dropdown(choices=choices, value=None), *emptied())

    delete_btn.click(delete, conversation, [conversation, *panes], api_name="code_delete")

    def on_load(request: gr.Request) -> tuple[Any, None]:
        # None blanks the seed (blank = random): Gradio's Number would otherwise start at 0.
        return gr.Dropdown(choices=conversation_choices(studio, user_of(request), "code")), None

    app.load(on_load, None, [conversation, sampling[-1]], **PRIVATE)


def as_typed(turn: ChatTurn) -> ChatTurn:
    """Show a turn's user message as typed; the model saw it inside the mode's template."""
    typed = (turn.params.get("code") or {}).get("input")
    return dataclasses.replace(turn, prompt=typed) if typed else turn
