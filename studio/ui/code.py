"""The Code tab: write, explain, fix, translate and test code; extracted, highlighted, checked, downloadable.

Owns: wiring the mode/language/template controls and the answer panes to `Studio.code`. The answer streams
into a conversation (refinement turns keep it), while the code view shows the extracted code for the
chosen language with its syntax check; the latest session reopens when the page loads. Ignores: prompt
building, extraction and checks (the service's), the controls that follow the mode (code_controls.py), and
what Code shares with Chat (studio/ui/conversation.py, turns.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Action, Studio, StudioError
from studio.service.code import MODES, code_prompt, code_settings
from studio.ui.best_of import best_of_controls, with_best_of
from studio.ui.code_controls import (
    LANGUAGE_CHOICES,
    MODE_CHOICES,
    as_typed,
    check_text,
    input_box,
    mode_controls,
    run_settings,
)
from studio.ui.compare import compare_panel
from studio.ui.conversation import (
    GENERATION_QUEUE,
    PARAM_NAMES,
    PRIVATE,
    conversation_choices,
    model_picker,
    params_from,
    refused,
    render,
    sampling_panel,
    tab_models,
    user_of,
)
from studio.ui.feedback import feedback_panel
from studio.ui.session import StopOnClose, run_key_state, stop_button
from studio.ui.turns import (
    Streamed,
    closing_notes,
    follow_model_defaults,
    send_handler,
    stop_active,
    stop_follows,
    trash_deletes,
    wire_new,
    wire_redo,
)


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
                model = model_picker(studio, "code", models, default, "code-model")
            text = gr.Textbox(label=MODES["write"].input_label, **input_box("write"), elem_id="code-input")
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
                runnable = studio.can_run(default)  # off for a model that is not downloaded
                run_btn = gr.Button("Run", variant="primary", interactive=runnable, elem_id="code-run")
                stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="code-stop")
                regen_btn = gr.Button("Regenerate", interactive=runnable, elem_id="code-regenerate")
                continue_btn = gr.Button("Continue", interactive=runnable, elem_id="code-continue")
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
                # The conversation above shows the whole answer, explanation included: a second pane with the
                # same prose showed it twice. The output stays (hidden) for API callers of `code`.
                with gr.Column(visible=False):
                    explanation = gr.Markdown(label="Explanation", elem_id="code-explanation")
            sampling = sampling_panel(defaults, "code")
            best = best_of_controls(studio, "code")
            compare_panel(studio, "code")

    mode_outputs = [text, error, source_language, template]  # what mode_controls sets
    panes = [chatbot, code_view, check, explanation, download, notice]  # what shows a session's answer
    mode.input(mode_controls, mode, mode_outputs, **PRIVATE)
    follow_model_defaults(studio, model, sampling, "code", [run_btn, regen_btn, continue_btn])

    run_inputs = [
        conversation, model, mode, language, source_language, error, template, run_key, *sampling, *best,
    ]  # fmt: skip
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
        turns = [as_typed(t) for t in studio.conversation(conv, user=user)] if conv else []
        index = len(turns) if action == "send" else len(turns) - 1
        shown = turns[:index]
        settings = run_settings(mode_id, lang, source, error_text, template_text)
        skip = gr.skip()
        try:
            updates = studio.code(
                model_id=model_id,
                text=text_value,
                settings=settings,
                params=with_best_of(params_from(values[: len(sampling)], ""), *values[len(sampling) :]),
                conversation_id=conv,
                action=action,
                user=user,
                run_key=key,
            )
            prompt = text_value if action == "send" else (turns[index].prompt if turns else "")
            stream = Streamed(updates, model_id, shown, prompt, studio.load_note(model_id))
            for update, chat, note in stream:
                partial = studio.code_result(update.text, lang, final=False)
                # in run_outputs order; skip leaves an output as it is
                yield chat, skip, skip, note, partial.code, skip, partial.explanation, skip, skip, skip
        except StudioError as exc:
            raise refused(exc) from None
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
        text_value: Any,
        mode_id: str,
        lang: str,
        source: str,
        error_text: str,
        template_text: str,
        model_id: str,
    ) -> Any:
        try:
            studio.check_weights(model_id)
            code_prompt(
                text_value, code_settings(run_settings(mode_id, lang, source, error_text, template_text))
            )
        except StudioError as exc:
            raise refused(exc) from None
        return stop_active()

    send_checks = [text, mode, language, source_language, error, template, model]
    io = (run_inputs, run_outputs)
    redo = wire_redo(
        studio, run, stop_btn, (regen_btn, continue_btn), chatbot, conversation, io, "session", "code_"
    )
    sends = [
        run_btn.click(check_send, send_checks, stop_btn, **PRIVATE).success(
            send_handler(run), [text, *run_inputs], run_outputs, api_name="code", **GENERATION_QUEUE
        ),
        # The input box's key (Enter in Follow-up, Shift+Enter elsewhere: see input_box) runs as Run does.
        text.submit(check_send, send_checks, stop_btn, **PRIVATE).success(
            send_handler(run), [text, *run_inputs], run_outputs, **PRIVATE, **GENERATION_QUEUE
        ),
    ]
    stop_follows(stop_btn, sends)
    runs = [*sends, *redo]
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

    wire_new(new_btn, new_session, [conversation, *panes, mode, *mode_outputs])

    def delete(conv: int | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete a session and clear every pane that showed it."""
        if conv:
            studio.delete_conversation(conv, user=user_of(request))
        choices = conversation_choices(studio, user_of(request), "code")
        return (gr.Dropdown(choices=choices, value=None), *emptied())

    delete_btn.click(delete, conversation, [conversation, *panes], api_name="code_delete")
    trash_deletes(chatbot, delete, conversation, [conversation, *panes])

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        """Reopen the most recent session, as the Chat tab does, when the page (re)loads."""
        choices = conversation_choices(studio, user_of(request), "code")
        latest = choices[0][1] if choices else None
        # The last value is the seed: None blanks it (blank = random), as a fresh page has it.
        return (gr.Dropdown(choices=choices, value=latest), *open_session(latest, request)[:-1], None)

    app.load(on_load, None, [conversation, *panes, mode, *mode_outputs, language, *sampling], **PRIVATE)
