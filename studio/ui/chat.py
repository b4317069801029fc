"""The Chat tab: conversations, streaming chat, Stop, regenerate, edit, continue, votes, sampling.

Owns: the tab's layout, what a chat run shows while it streams and when it ends, editing a turn, the answer
pager's buttons, and the conversation list (search, open, rename, delete, reopen the latest on load).
Ignores: validation (the service does it for browser and API alike) and what Chat shares with Code
(studio/ui/conversation.py, turns.py: the message footer, Stop's state, the pager's events).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.service import Action, Studio, StudioError
from studio.ui.best_of import best_of_controls, with_best_of
from studio.ui.compare import compare_panel
from studio.ui.conversation import (
    GENERATION_QUEUE,
    PARAM_NAMES,
    PRIVATE,
    conversation_choices,
    model_choices,
    model_picker,
    params_from,
    refused,
    render,
    sampling_panel,
    tab_models,
    user_of,
)
from studio.ui.feedback import feedback_panel, rate_api
from studio.ui.session import StopOnClose, run_key_state, stop_button
from studio.ui.turns import (
    ENTER_SENDS,
    Streamed,
    browse_api,
    closing_notes,
    follow_model_defaults,
    send_handler,
    stop_active,
    stop_follows,
    stop_on,
    trash_deletes,
    wire_answer_pager,
    wire_new,
    wire_redo,
)


def build_chat_tab(studio: Studio, app: gr.Blocks) -> None:
    if (start := tab_models(studio, "chat")) is None:
        return  # no model for the tab: it says so
    models, default, defaults = start
    run_key = run_key_state(app)  # identifies this browser session's running job for Stop

    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            search = gr.Textbox(
                label="Search conversations",
                placeholder="Words in a title, a message or an answer",
                max_lines=1,
                elem_id="conversation-search",
            )
            conversation = gr.Dropdown(
                label="Conversations", choices=[], value=None, interactive=True, elem_id="conversation"
            )
            new_btn = gr.Button("New chat", elem_id="new-chat")
            title = gr.Textbox(label="Rename to", max_lines=1, elem_id="rename-title")
            with gr.Row():
                rename_btn = gr.Button("Rename", size="sm", elem_id="rename")
                delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="delete")
        with gr.Column(scale=4):
            model = model_picker(studio, "chat", models, default, "model")
            with gr.Accordion("System prompt", open=False):
                system_prompt = gr.Textbox(
                    value=defaults.get("system_prompt", ""),
                    lines=3,
                    show_label=False,
                    elem_id="system-prompt",
                )
            chatbot = gr.Chatbot(
                label="Chat", editable="user", height=460, elem_id="chatbot", buttons=["copy"]
            )
            with gr.Row():
                # Browse the kept answers of the last turn, or of the answer clicked in the chat.
                prev_btn = gr.Button(
                    "‹ Previous answer", size="sm", scale=0, min_width=150, elem_id="answer-prev"
                )
                next_btn = gr.Button(
                    "Next answer ›", size="sm", scale=0, min_width=150, elem_id="answer-next"
                )
            notice = gr.Markdown(elem_id="notice")
            feedback = feedback_panel(studio, "chat")
            message = gr.Textbox(
                placeholder=ENTER_SENDS,
                # Gradio 6 sends on Enter only for a one-line box (Shift+Enter then adds a line, and the box
                # grows to max_lines); with lines > 1 it is the reverse, which the placeholder would belie.
                lines=1,
                max_lines=12,
                show_label=False,
                elem_id="message",
            )
            with gr.Row():
                # Off for a model that is not downloaded (the Models tab pulls it).
                runnable = studio.can_run(default)
                send_btn = gr.Button("Send", variant="primary", interactive=runnable, elem_id="send")
                stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="stop")
                regen_btn = gr.Button("Regenerate", interactive=runnable, elem_id="regenerate")
                continue_btn = gr.Button("Continue", interactive=runnable, elem_id="continue")
            sampling = sampling_panel(defaults, "chat")
            best = best_of_controls(studio, "chat")
            compare_panel(studio, "chat")

    follow_model_defaults(studio, model, sampling, "chat", [send_btn, regen_btn, continue_btn])
    run_inputs = [conversation, model, system_prompt, run_key, *sampling, *best]
    run_outputs = [chatbot, conversation, message, notice]
    closing = StopOnClose(studio, app)  # a closed tab stops its run at once

    @closing.track
    def run(
        action: Action,
        text: str | None,
        conv: int | None,
        model_id: str,
        system: str,
        key: str,
        *values: Any,
        request: gr.Request | None = None,
        turn: int | None = None,  # the edited turn (edit only)
    ) -> Iterator[Any]:
        user = user_of(request)
        turns = studio.conversation(conv, user=user) if conv else []
        index = len(turns) if action == "send" else (len(turns) - 1 if turn is None else turn)
        shown = turns[:index]
        prompt = (
            text if action in ("send", "edit") else (turns[index].prompt if 0 <= index < len(turns) else "")
        )
        try:
            updates = studio.chat(
                model_id=model_id,
                message=text,
                params=with_best_of(params_from(values[: len(sampling)], system), *values[len(sampling) :]),
                conversation_id=conv,
                action=action,
                turn_index=turn,
                user=user,
                run_key=key,
            )
            stream, last_status = Streamed(updates, model_id, shown, prompt, studio.load_note(model_id)), None
            for _, pending, status in stream:
                yield pending, gr.skip(), gr.skip(), status if status != last_status else gr.skip()
                last_status = status
        except StudioError as exc:
            raise refused(exc) from None
        final = stream.final
        assert final is not None and final.generation_id is not None
        conv_id = final.conversation_id
        notes = closing_notes(final)
        yield (
            # As stored: the new turn replaced turn `index` and those after it, and has its numbers now.
            render(studio.conversation(conv_id, user=user) if conv_id else [*shown]),
            gr.Dropdown(choices=conversation_choices(studio, user), value=conv_id)
            if conv != conv_id
            else gr.skip(),
            "" if final.status != "error" else gr.skip(),
            " ".join(notes),
        )

    # Gradio injects `request` / event data by position, so they come before `*args`.
    def edit(request: gr.Request, data: gr.EditData, *args: Any) -> Iterator[Any]:
        index = data.index if isinstance(data.index, int) else data.index[0]
        yield from run("edit", str(data.value), *args, request=request, turn=index // 2)

    # In the browser, refuse what the service would refuse before the run starts: a run that fails puts
    # Gradio's "Error" overlay over the chatbot, the conversation list and the message box (the toast alone
    # is enough). API callers call the runs directly and still get the service's errors.
    def check_message(text: Any, model_id: str) -> Any:
        try:
            studio.check_weights(model_id)
            studio.check_prompt(text)
        except StudioError as exc:
            raise refused(exc) from None
        return stop_active()

    gpu = GENERATION_QUEUE
    send = send_handler(run)
    sends = [
        send_btn.click(check_message, [message, model], stop_btn, **PRIVATE).success(
            send, [message, *run_inputs], run_outputs, api_name="chat", **gpu
        ),
        message.submit(check_message, [message, model], stop_btn, **PRIVATE).success(
            send, [message, *run_inputs], run_outputs, **PRIVATE, **gpu
        ),
    ]
    io = (run_inputs, run_outputs)
    redo = wire_redo(
        studio, run, stop_btn, (regen_btn, continue_btn), chatbot, conversation, io, "conversation"
    )
    stop_on(stop_btn, chatbot.edit)
    edited = chatbot.edit(edit, run_inputs, run_outputs, **PRIVATE, **gpu)
    stop_follows(stop_btn, [*sends, edited])
    stop_button(studio, stop_btn, run_key)
    feedback.chatbot_votes(chatbot, conversation, notice)
    gr.api(rate_api(studio), api_name="rate")
    gr.api(browse_api(studio), api_name="browse_answer")

    browsed = wire_answer_pager(studio, chatbot, conversation, (prev_btn, next_btn))
    # A new answer or another conversation: the pager goes back to the last turn.
    for ran in [*sends, *redo, edited]:
        ran.then(lambda: None, None, browsed, queue=False, **PRIVATE)
    conversation.change(lambda: None, None, browsed, queue=False, **PRIVATE)

    def open_conversation(conv: int | None, request: gr.Request) -> Any:
        return render(studio.conversation(conv, user=user_of(request))) if conv else render([])

    conversation.input(open_conversation, conversation, chatbot, **PRIVATE)

    def find(query: str, conv: int | None, request: gr.Request) -> Any:
        """Narrow the list to the conversations containing `query`. The open one stays listed (last): the
        dropdown refuses a value outside its choices, and the next Send would fail."""
        user = user_of(request)
        try:
            choices = conversation_choices(studio, user, query=query or "")
        except StudioError as exc:
            raise refused(exc) from None
        if conv and conv not in [cid for _, cid in choices]:
            choices += [choice for choice in conversation_choices(studio, user) if choice[1] == conv]
        return gr.Dropdown(choices=choices, value=conv)

    # `change`, not `input`: Gradio 6 fires a Textbox's `input` from its key handler, so a paste or a
    # browser's autofill would not search.
    search.change(find, [search, conversation], conversation, **PRIVATE)

    def new_chat() -> tuple[Any, Any, str]:
        return gr.Dropdown(value=None), render([]), ""

    wire_new(new_btn, new_chat, [conversation, chatbot, notice])

    def rename(conv: int | None, new_title: str, request: gr.Request) -> tuple[Any, str]:
        if not conv:
            raise gr.Error("Open a conversation first.", print_exception=False)
        try:
            studio.rename_conversation(conv, new_title, user=user_of(request))
        except StudioError as exc:
            raise refused(exc) from None
        return gr.Dropdown(choices=conversation_choices(studio, user_of(request)), value=conv), ""

    renamed = rename_btn.click(
        rename, [conversation, title], [conversation, title], api_name="rename_conversation"
    )

    def delete(conv: int | None, request: gr.Request) -> tuple[Any, Any]:
        if conv:
            studio.delete_conversation(conv, user=user_of(request))
        return gr.Dropdown(choices=conversation_choices(studio, user_of(request)), value=None), render([])

    listed = [
        *sends,
        *redo,
        edited,
        renamed,
        delete_btn.click(delete, conversation, [conversation, chatbot], api_name="delete_conversation"),
        trash_deletes(chatbot, delete, conversation, [conversation, chatbot]),
    ]

    def refind(query: str, conv: int | None, request: gr.Request) -> Any:
        return find(query, conv, request) if (query or "").strip() else gr.skip()

    for event in listed:  # they list every conversation: keep the list to the search while there is one
        event.then(refind, [search, conversation], conversation, **PRIVATE)

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        """Reopen the most recent conversation, with its votes, when the page (re)loads."""
        choices = conversation_choices(studio, user_of(request))
        latest = choices[0][1] if choices else None
        fresh = model_choices(studio.models("chat"))
        return (
            gr.Dropdown(choices=choices, value=latest),
            open_conversation(latest, request),
            gr.Dropdown(choices=fresh),
            None,  # blank seed = random: Gradio's Number would otherwise start at 0
        )

    app.load(on_load, None, [conversation, chatbot, model, sampling[PARAM_NAMES.index("seed")]], **PRIVATE)
