"""The Code tab in a real browser: what a user clicks, checked against what the studio stored.

Most tests run the `scripted` model (see conftest.py): it streams a fixed answer with a fenced Python block,
so extraction, the syntax check, the explanation and the download are checked exactly. One test runs
the real tiny transformers model in the Code tab and checks structure only.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from studio.formats.code import MODES, render_prompt

from .conftest import (
    SCRIPTED_CODE,
    SCRIPTED_EXPLANATION,
    SCRIPTED_HINTED_CODE,
    SCRIPTED_HINTED_EXPLANATION,
    CodePage,
    ScriptedChat,
)
from .shared import BROWSER, expect, expect_no_error_overlay

pytestmark = BROWSER

SCREENSHOT = Path("/tmp/studio_code.png")
TASK = "a function that returns FizzBuzz from 1 to n"
SNIPPET = "def add(a, b):\n    return a - b"


def _label(code: CodePage, elem_id: str) -> Any:
    return code.page.locator(f"#{elem_id} [data-testid=block-info]")


def _open_template(code: CodePage) -> Any:
    """Open the Prompt template accordion (its textbox is rendered only when open)."""
    box = code.page.locator("#code-template textarea")
    if not box.is_visible():
        code.page.get_by_text("Prompt template", exact=True).click()
    expect(box).to_be_visible()
    return box


@pytest.mark.browser
def test_write_streams_extracts_checks_and_downloads(code: CodePage) -> None:
    page = code.page
    expect(page.locator("#code-mode input")).to_have_value("Write code")
    expect(page.locator("#code-language input")).to_have_value("Python")
    expect(page.locator("#code-model input")).to_have_value("scripted (ready)")
    expect(page.locator("#code-download")).to_be_hidden()

    # The scripted model pauses inside the code block until the gate opens: the page shows the partial answer.
    before = code.generation_count()
    gate = ScriptedChat.gate = threading.Event()
    try:
        page.locator("#code-input textarea").fill(TASK)
        page.locator("#code-run").click()
        expect(code.bot_messages).to_have_count(1)
        expect(code.bot_messages.first).to_contain_text("def fizzbuzz(n):")
        expect(code.bot_messages.first).not_to_contain_text("return out")
        expect(page.locator("#code-view .cm-content")).to_contain_text("def fizzbuzz(n):")
        expect(page.locator("#code-download")).to_be_hidden()
        assert code.generation_count() == before, "nothing is stored while the answer streams"
    finally:
        gate.set()
        ScriptedChat.gate = None
    code.wait_until(lambda: code.generation_count() > before, "the code generation row")
    code.wait_idle()

    row = code.latest_generation()
    assert (row.tab, row.model_id, row.status, row.action) == ("code", "scripted", "ok", "send")
    assert row.params["code"]["mode"] == "write" and row.params["code"]["language"] == "python"
    assert row.params["code"]["input"] == TASK and row.params["code"]["template"] is None
    assert row.prompt == render_prompt("write", language="python", text=TASK), "the model saw the template"
    conv = code.conversation_id()
    assert conv is not None and conv == row.conversation_id and conv in code.code_conversations()
    assert conv not in [cid for cid, _ in code.studio.conversations()], "code sessions stay out of Chat"

    # The chat shows the request as typed (not the filled template) and the whole answer.
    expect(code.user_messages).to_have_count(1)
    expect(code.user_messages.first).to_have_text(TASK)
    expect(code.bot_messages.first).to_contain_text("return out")
    expect(code.bot_messages.first).to_contain_text(SCRIPTED_EXPLANATION)

    # The code view: only the code (no fences, no prose), highlighted as Python.
    expect(page.locator("#code-view .cm-content")).to_have_attribute("data-language", "python")
    assert code.code_text() == SCRIPTED_CODE
    assert page.locator("#code-view .cm-line span").count() > 0, "keywords are highlighted (token spans)"
    expect(page.locator("#code-check")).to_have_text("✅ Python syntax OK")
    # The explanation shows once, in the conversation: no second pane repeats it.
    expect(page.get_by_text(SCRIPTED_EXPLANATION)).to_have_count(1)
    expect(page.locator("#code-explanation")).to_be_hidden()
    expect(page.locator("#code-notice")).not_to_contain_text("no code block")

    # Download: a .py file holding exactly the extracted code.
    expect(page.locator("#code-download")).to_be_visible()
    name, content = code.download()
    assert name.endswith(".py"), name
    assert content == SCRIPTED_CODE + "\n"

    # Later messages refine this answer.
    expect(page.locator("#code-mode input")).to_have_value("Follow-up")
    expect(page.locator("#code-input textarea")).to_have_value("")
    expect(_label(code, "code-input")).to_have_text(MODES["follow-up"].input_label)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


@pytest.mark.browser
def test_stop_keeps_the_partial_answer(code: CodePage) -> None:
    page = code.page
    before = code.generation_count()
    ScriptedChat.gate = threading.Event()  # never opened: the answer waits inside its code block
    page.locator("#code-input textarea").fill(TASK)
    page.locator("#code-run").click()
    expect(page.locator("#code-view .cm-content")).to_contain_text("def fizzbuzz(n):")
    expect(page.locator("#code-stop")).to_be_enabled()
    page.locator("#code-stop").click()
    code.wait_until(lambda: code.generation_count() > before, "the stopped generation row")
    code.wait_idle()

    row = code.latest_generation()
    assert (row.tab, row.status) == ("code", "stopped"), (row.status, row.error)
    assert "def fizzbuzz(n):" in row.output_text and "return out" not in row.output_text
    expect(code.bot_messages.last).to_contain_text("[stopped]")
    expect(page.locator("#code-notice")).to_contain_text("Stopped.")
    expect(page.locator("#code-notice")).to_contain_text("stopped inside a code block")
    assert code.code_text().startswith("def fizzbuzz(n):")


@pytest.mark.browser
def test_modes_switch_their_controls_and_templates(code: CodePage) -> None:
    page = code.page
    error_box = page.locator("#code-error textarea")
    source = page.locator("#code-source-language input")
    template = _open_template(code)
    expect(template).to_have_value(MODES["write"].template)
    expect(error_box).to_be_hidden()
    expect(source).to_be_hidden()

    for mode in ("fix", "translate", "explain", "tests", "follow-up", "write"):
        spec = MODES[mode]
        code.choose("code-mode", spec.label, exact=True)
        expect(page.locator("#code-mode input")).to_have_value(spec.label)
        expect(template, f"the {mode} template").to_have_value(spec.template)
        expect(_label(code, "code-input")).to_have_text(spec.input_label)
        if mode == "fix":
            expect(error_box).to_be_visible()
        else:
            expect(error_box, f"no error box in {mode}").to_be_hidden()
        if mode == "translate":
            expect(source).to_be_visible()
            expect(source).to_have_value("JavaScript")
        else:
            expect(source, f"no source language in {mode}").to_be_hidden()

    # An edited template is what the model sees, and it is stored with the turn.
    code.choose("code-mode", "Explain code")
    expect(template).to_have_value(MODES["explain"].template)  # before typing over it
    custom = "Explain this {language} code in one line:\n{input}"
    template.fill(custom)
    row = code.send(SNIPPET)
    assert row.tab == "code" and row.params["code"]["mode"] == "explain"
    assert row.params["code"]["template"] == custom
    assert row.prompt == f"Explain this Python code in one line:\n{SNIPPET}"


@pytest.mark.browser
def test_fix_mode_sends_the_error_then_follow_up_hides_it(code: CodePage) -> None:
    page = code.page
    code.choose("code-mode", "Debug / fix")
    page.locator("#code-error textarea").fill("add(1, 2) returns -1")
    row = code.send(SNIPPET)
    assert row.params["code"]["mode"] == "fix" and row.params["code"]["error"] == "add(1, 2) returns -1"
    assert "add(1, 2) returns -1" in row.prompt and SNIPPET in row.prompt
    # After the answer the mode is Follow-up, and its controls are shown: no fix-only error box.
    expect(page.locator("#code-mode input")).to_have_value("Follow-up")
    expect(_label(code, "code-input")).to_have_text(MODES["follow-up"].input_label)
    expect(page.locator("#code-error textarea")).to_be_hidden()


@pytest.mark.browser
def test_follow_up_continues_the_session_and_votes(code: CodePage) -> None:
    first = code.send(TASK)
    conv = first.conversation_id
    expect(code.page.locator("#code-mode input")).to_have_value("Follow-up")

    second = code.send("add type hints")
    assert second.conversation_id == conv and second.turn_index == 1 and second.action == "send"
    assert second.params["code"]["mode"] == "follow-up" and second.prompt == "add type hints"
    assert second.history[0]["content"] == first.prompt, "the first turn is the model's context"
    turns = code.studio.conversation(conv)
    assert [t.generation_id for t in turns] == [first.id, second.id]
    assert code.conversation_id() == conv

    expect(code.user_messages).to_have_count(2)
    expect(code.user_messages.nth(0)).to_have_text(TASK)
    expect(code.user_messages.nth(1)).to_have_text("add type hints")
    expect(code.bot_messages).to_have_count(2)
    assert code.code_text() == SCRIPTED_HINTED_CODE, "the code view follows the latest answer"
    expect(code.page.get_by_text(SCRIPTED_HINTED_EXPLANATION)).to_have_count(1)
    name, content = code.download()
    assert name.endswith(".py") and content == SCRIPTED_HINTED_CODE + "\n"

    # Thumbs-up on the second answer: +1 on that generation only.
    code.bot_buttons(1).get_by_role("button", name="Like", exact=True).click()
    code.wait_until(lambda: code.studio.conversation(conv)[1].rating == 1, "the vote on the second answer")
    assert code.studio.conversation(conv)[0].rating is None
    expect(code.bot_buttons(1).get_by_role("button", name="Liked", exact=True)).to_be_visible()


@pytest.mark.browser
def test_empty_input_shows_an_error_and_stores_nothing(code: CodePage) -> None:
    errors = code.page.locator(".toast-body.error [data-testid=toast-text]")
    before_rows, before_convs = code.generation_count(), code.code_conversations()

    for shown, text in enumerate(("", "   \n  "), start=1):
        code.page.locator("#code-input textarea").fill(text)
        code.page.locator("#code-run").click()
        expect(errors.filter(has_text="nothing to send")).to_have_count(shown)
    # Nothing to redo in a new session.
    code.page.locator("#code-regenerate").click()
    expect(errors.filter(has_text="nothing to regenerate")).to_have_count(1)
    code.page.locator("#code-continue").click()
    expect(errors.filter(has_text="nothing to continue")).to_have_count(1)

    assert code.generation_count() == before_rows and code.code_conversations() == before_convs
    expect(code.page.locator("#code-chatbot .message-row")).to_have_count(0)
    expect(code.page.locator("#code-conversation input")).to_have_value("")
    # Only the toasts report it: no "Error" overlay hides the panes or the input box.
    panes = ("code-chatbot", "code-conversation", "code-input", "code-view", "code-explanation")
    expect_no_error_overlay(code.page, panes, "a refused run")


@pytest.mark.browser
def test_new_session_and_reopening_an_earlier_one(code: CodePage) -> None:
    page = code.page
    first = code.send(f"{TASK}, the first session")  # a title of its own, to pick it from the list
    expect(page.locator("#code-download")).to_be_visible()

    code.new_session()  # asserts the chat is empty and no session is selected
    assert code.code_text() == ""
    expect(page.locator("#code-check")).to_have_text("")
    expect(code.bot_messages).to_have_count(0)
    expect(page.locator("#code-download")).to_be_hidden()
    expect(page.locator("#code-mode input")).to_have_value("Write code")

    # A second session in another language and mode.
    code.choose("code-language", "JavaScript", exact=True)
    code.choose("code-mode", "Explain code")
    second = code.send("function add(a, b) { return a + b; }")
    assert second.conversation_id != first.conversation_id
    assert second.params["code"]["language"] == "javascript"
    expect(page.locator("#code-check")).to_have_text("")  # no JavaScript checker

    # Reopen the first one (from another mode): its chat, code, check, language and download come back, and
    # the controls are Follow-up's, ready to refine it.
    code.choose("code-mode", "Debug / fix")
    template = _open_template(code)
    expect(template).to_have_value(MODES["fix"].template)
    code.choose("code-conversation", f"{TASK}, the first session", exact=True)
    code.wait_idle()
    assert code.conversation_id() == first.conversation_id
    expect(code.user_messages).to_have_count(1)
    expect(code.user_messages.first).to_have_text(f"{TASK}, the first session")
    expect(page.locator("#code-language input")).to_have_value("Python")
    expect(page.locator("#code-mode input")).to_have_value("Follow-up")
    expect(template).to_have_value(MODES["follow-up"].template)
    expect(_label(code, "code-input")).to_have_text(MODES["follow-up"].input_label)
    expect(page.locator("#code-error textarea")).to_be_hidden()
    expect(page.locator("#code-check")).to_have_text("✅ Python syntax OK")
    expect(code.bot_messages.first).to_contain_text(SCRIPTED_EXPLANATION)
    expect(page.locator("#code-view .cm-content")).to_have_attribute("data-language", "python")
    assert code.code_text() == SCRIPTED_CODE
    name, content = code.download()
    assert name == f"studio-{first.id}.py" and content == SCRIPTED_CODE + "\n"

    # And the second one: its language comes back too.
    code.choose("code-conversation", "function add(a, b) { return a + b; }", exact=True)
    code.wait_idle()
    expect(code.user_messages.first).to_have_text("function add(a, b) { return a + b; }")
    expect(page.locator("#code-language input")).to_have_value("JavaScript")
    name, _ = code.download()
    assert name == f"studio-{second.id}.js"

    # A follow-up now continues the reopened session.
    third = code.send("add type hints")
    assert third.conversation_id == second.conversation_id and third.turn_index == 1

    # The chatbot's own Clear (trash) icon deletes the open session (it used to mean "new session").
    page.locator("#code-chatbot").get_by_role("button", name="Clear").click()
    expect(page.locator("#code-chatbot .message-row")).to_have_count(0)
    expect(page.locator("#code-conversation input")).to_have_value("")
    code.wait_until(lambda: second.conversation_id not in code.code_conversations(), "the session's deletion")
    assert first.conversation_id in code.code_conversations()
    fourth = code.send(TASK)
    assert fourth.conversation_id != first.conversation_id  # SQLite may give it the deleted session's id
    assert fourth.turn_index == 0 and fourth.history == []


@pytest.mark.browser
def test_the_real_tiny_model_in_the_code_tab(code: CodePage) -> None:
    page = code.page
    # Choosing a model loads its models.yaml defaults, with the Code tab's cooler temperature.
    code.choose("code-model", re.compile(r"^tiny "))
    page.get_by_text("Sampling", exact=True).filter(visible=True).click()
    max_new_tokens = page.get_by_label("number input for Max new tokens").filter(visible=True)
    expect(max_new_tokens).to_have_value("12")
    code.choose("code-mode", "Explain code")
    row = code.send(SNIPPET)
    assert (row.tab, row.model_id, row.status) == ("code", "tiny", "ok"), (row.status, row.error)
    assert row.params["code"]["mode"] == "explain" and row.params["code"]["input"] == SNIPPET
    assert row.params["max_new_tokens"] == 12 and row.params["do_sample"] is False
    assert row.params["temperature"] == 0.2
    assert row.completion_tokens and row.completion_tokens > 0
    assert code.conversation_id() == row.conversation_id
    expect(code.user_messages).to_have_count(1)
    expect(code.bot_messages).to_have_count(1)
    result = code.studio.code_result(row.output_text, "python")
    if not result.blocks:  # random weights rarely write fences: the answer is shown as text
        expect(page.locator("#code-notice")).to_contain_text("no code block")
        expect(page.locator("#code-download")).to_be_hidden()


@pytest.mark.browser
def test_keys_in_the_input_box_and_the_latest_session_on_reload(code: CodePage) -> None:
    page = code.page
    box = page.locator("#code-input textarea")
    expect(page.locator("#code-stop")).to_be_disabled()  # nothing to stop yet
    # Writing code (pasted or typed): Enter adds a line and runs nothing; Shift+Enter runs.
    before = code.generation_count()
    box.click()
    box.type("a function that returns FizzBuzz")
    box.press("Enter")
    box.type("from 1 to n, with a reload")
    expect(box).to_have_value("a function that returns FizzBuzz\nfrom 1 to n, with a reload")
    page.wait_for_timeout(500)  # a run would have queued by now
    assert code.generation_count() == before, "Enter adds a line while writing code"
    first = code.run(lambda: box.press("Shift+Enter"))
    assert first.params["code"]["input"] == "a function that returns FizzBuzz\nfrom 1 to n, with a reload"

    # A follow-up is a chat message: Shift+Enter adds a line, Enter sends (as its placeholder says).
    expect(page.locator("#code-mode input")).to_have_value("Follow-up")
    expect(box).to_have_attribute("placeholder", "Message (Enter to send, Shift+Enter for a new line)")
    box.click()
    box.type("add type hints")
    box.press("Shift+Enter")
    box.type("and keep the docstring")
    page.wait_for_timeout(500)
    assert code.generation_count() == before + 1, "Shift+Enter adds a line in a follow-up"
    second = code.run(lambda: box.press("Enter"))
    assert second.params["code"]["input"] == "add type hints\nand keep the docstring"
    assert second.conversation_id == first.conversation_id and second.turn_index == 1
    assert code.code_text() == SCRIPTED_HINTED_CODE
    expect(page.locator("#code-stop")).to_be_disabled()  # the run is over

    # Reloading the page reopens this session in the Code tab, as the Chat tab reopens its conversation.
    code.reload()  # waits for the Code tab's load event to select the latest session
    assert code.conversation_id() == first.conversation_id
    expect(code.user_messages).to_have_count(2)
    expect(code.user_messages.last).to_contain_text("and keep the docstring")
    assert code.code_text() == SCRIPTED_HINTED_CODE
    expect(page.locator("#code-mode input")).to_have_value("Follow-up")
    expect(page.locator("#code-download")).to_be_visible()

    # Regenerate keeps the old answer, but this tab has no pager: the footer gives the numbers, no "‹ 2/2 ›".
    again = code.run(lambda: page.locator("#code-regenerate").click())
    assert again.action == "regenerate" and code.studio.conversation(again.conversation_id)[-1].answers == 2
    expect(code.bot_messages.last.locator("sub")).to_contain_text(f"seed {again.seed}")
    expect(code.bot_messages.last).not_to_contain_text("‹")
