"""The Chat tab in a real browser: what a user clicks, checked against what the studio stored.

One server and one Chromium serve the whole module (see conftest.py); each test opens a fresh tab and starts
from New chat. Replies come from tiny random-weight models: the tests check structure (rows, statuses, votes,
which turn is active), never the wording.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import ChatPage
from .shared import BROWSER, expect, expect_no_error_overlay

pytestmark = BROWSER

SCREENSHOT = Path("/tmp/studio_chat.png")


def _text(locator: Any) -> str:
    """An answer's text as shown, whitespace collapsed, without the footer line (its numbers) under it."""
    shown = locator.evaluate(
        "el => { const copy = el.cloneNode(true); copy.querySelectorAll('sub').forEach(s => s.remove());"
        " document.body.appendChild(copy); const text = copy.innerText; copy.remove(); return text; }"
    )
    return " ".join(str(shown).split())


def _conversations(chat: ChatPage) -> list[int]:
    return [cid for cid, _ in chat.studio.conversations()]


@pytest.mark.browser
def test_send_vote_reload_and_change_vote(chat: ChatPage) -> None:
    row = chat.send("Hello from the browser tier")
    conv = chat.conversation_id()
    assert conv is not None and conv == row.conversation_id, (
        "the Conversations dropdown shows the conversation"
    )
    assert row.status == "ok" and row.action == "send" and row.prompt == "Hello from the browser tier"
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_have_text("Hello from the browser tier")
    expect(chat.bot_messages).to_have_count(1)
    reply = " ".join(row.output_text.split())
    assert reply, "the tiny model's reply should be visible text (see the repetition penalty in conftest)"
    chat.wait_until(lambda: _text(chat.bot_messages.first) == reply, "the reply in the chat")
    expect(chat.bot_messages.first.locator("sub")).to_contain_text(f"seed {row.seed}")

    # Like the reply: stored as +1 for that generation, and the button shows as selected.
    chat.bot_buttons().get_by_role("button", name="Like", exact=True).click()
    chat.wait_until(lambda: chat.studio.conversation(conv)[0].rating == 1, "the +1 vote to be stored")
    expect(chat.bot_buttons().get_by_role("button", name="Liked", exact=True)).to_be_visible()

    # Reload: on_load reopens the latest conversation with its vote.
    chat.reload()
    assert chat.conversation_id() == conv
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_have_text("Hello from the browser tier")
    liked = chat.bot_buttons().get_by_role("button", name="Liked", exact=True)
    expect(liked).to_be_visible()
    expect(chat.bot_buttons().get_by_role("button", name="Dislike", exact=True)).to_be_visible()
    chat.page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Change the vote to Dislike: the stored rating follows, still one rating for that generation.
    chat.bot_buttons().get_by_role("button", name="Dislike", exact=True).click()
    chat.wait_until(lambda: chat.studio.conversation(conv)[0].rating == -1, "the vote to change to -1")
    expect(chat.bot_buttons().get_by_role("button", name="Disliked", exact=True)).to_be_visible()
    expect(chat.bot_buttons().get_by_role("button", name="Like", exact=True)).to_be_visible()
    assert [t.generation_id for t in chat.studio.conversation(conv)] == [row.id]


@pytest.mark.browser
def test_stop_ends_a_long_generation_early(chat: ChatPage) -> None:
    # Choosing the model loads its models.yaml defaults into the Sampling controls (4000 new tokens).
    chat.choose("model", re.compile(r"^long "))
    chat.page.get_by_text("Sampling", exact=True).click()
    expect(chat.page.get_by_label("number input for Max new tokens")).to_have_value("4000")

    before = chat.generation_count()
    chat.page.locator("#message textarea").fill("Tell me a very long story")
    chat.page.locator("#send").click()
    # Wait until tokens are streaming (more than the "…" placeholder), then press Stop.
    expect(chat.bot_messages.last).to_have_text(re.compile(r"\S{3,}"))
    chat.page.locator("#stop").click()
    chat.wait_until(lambda: chat.generation_count() > before, "the stopped generation row")
    chat.wait_idle()

    row = chat.latest_generation()
    assert row.model_id == "long" and row.params["max_new_tokens"] == 4000
    assert row.status == "stopped", (row.status, row.error)
    assert row.completion_tokens is not None and 0 < row.completion_tokens < 4000, row.completion_tokens
    assert chat.studio.conversation(row.conversation_id)[0].status == "stopped"
    expect(chat.bot_messages.last).to_contain_text("[stopped]")
    expect(chat.page.locator("#notice")).to_contain_text("Stopped.")


@pytest.mark.browser
def test_regenerate_replaces_the_turn_and_continue_extends_it(chat: ChatPage) -> None:
    first = chat.send("Regenerate me")
    conv = first.conversation_id

    regen = chat.run(lambda: chat.page.locator("#regenerate").click())
    assert regen.id != first.id
    assert (regen.action, regen.turn_index, regen.parent_id) == ("regenerate", 0, first.id)
    assert regen.conversation_id == conv
    assert regen.prompt == "Regenerate me" and regen.status == "ok"
    assert chat.generation(first.id).active is False, "the regenerated reply stays stored but inactive"
    assert [t.generation_id for t in chat.studio.conversation(conv)] == [regen.id]
    expect(chat.user_messages).to_have_count(1)
    expect(chat.bot_messages).to_have_count(1)
    shown_before = _text(chat.bot_messages.first)

    cont = chat.run(lambda: chat.page.locator("#continue").click())
    assert (cont.action, cont.turn_index, cont.parent_id) == ("continue", 0, regen.id)
    assert cont.output_text.startswith(regen.output_text)
    assert len(cont.output_text) > len(regen.output_text)
    assert cont.completion_tokens and cont.completion_tokens > 0
    assert chat.generation(regen.id).active is False
    assert [t.generation_id for t in chat.studio.conversation(conv)] == [cont.id]
    expect(chat.bot_messages).to_have_count(1)
    shown = " ".join(cont.output_text.split())
    chat.wait_until(lambda: _text(chat.bot_messages.first) == shown, "the continued reply in the chat")
    assert _text(chat.bot_messages.first).startswith(shown_before)

    # The chatbot's own Retry icon is a regenerate too.
    retry = chat.run(lambda: chat.bot_buttons().get_by_role("button", name="Retry").click())
    assert (retry.action, retry.turn_index, retry.parent_id) == ("regenerate", 0, cont.id)
    assert [t.generation_id for t in chat.studio.conversation(conv)] == [retry.id]
    expect(chat.bot_messages).to_have_count(1)


@pytest.mark.browser
def test_empty_message_shows_an_error_and_stores_nothing(chat: ChatPage) -> None:
    # Error toasts stay up for 10 s, so each click adds one message.
    errors = chat.page.locator(".toast-body.error [data-testid=toast-text]")
    before_rows, before_convs = chat.generation_count(), _conversations(chat)

    # Nothing to regenerate or continue in a new chat.
    chat.page.locator("#regenerate").click()
    expect(errors.filter(has_text="nothing to regenerate")).to_have_count(1)
    chat.page.locator("#continue").click()
    expect(errors.filter(has_text="nothing to continue")).to_have_count(1)
    assert chat.generation_count() == before_rows and _conversations(chat) == before_convs
    expect(chat.page.locator("#chatbot .message-row")).to_have_count(0)

    # An empty (or blank) message in an open conversation: a toast, no row, the conversation stays in view.
    row = chat.send("A real message first")
    for shown, text in enumerate(("", "   \n  "), start=1):
        chat.page.locator("#message textarea").fill(text)
        chat.page.locator("#send").click()
        expect(errors.filter(has_text="the message is empty")).to_have_count(shown)
    assert chat.generation_count() == before_rows + 1
    assert [t.generation_id for t in chat.studio.conversation(row.conversation_id)] == [row.id]
    assert chat.conversation_id() == row.conversation_id
    expect(chat.user_messages).to_have_count(1)
    # No "Error" overlay hides the chat, the conversation list or the message box (only the toast reports it).
    expect_no_error_overlay(chat.page, ("chatbot", "conversation", "message"), "an empty message")


@pytest.mark.browser
def test_new_chat_and_reopening_an_earlier_conversation(chat: ChatPage) -> None:
    first = chat.send("The first conversation")
    chat.new_chat()  # asserts the chatbot is empty and no conversation is selected
    second = chat.send("The second conversation")
    assert second.conversation_id != first.conversation_id
    assert chat.conversation_id() == second.conversation_id
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_have_text("The second conversation")

    # Reopen the first one from the Conversations dropdown.
    chat.choose("conversation", "The first conversation", exact=True)
    chat.wait_idle()
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_have_text("The first conversation")
    assert chat.conversation_id() == first.conversation_id

    # Sending now continues that conversation.
    follow_up = chat.send("A follow-up in the first conversation")
    assert follow_up.conversation_id == first.conversation_id and follow_up.turn_index == 1
    assert [t.prompt for t in chat.studio.conversation(first.conversation_id)] == [
        "The first conversation",
        "A follow-up in the first conversation",
    ]
    expect(chat.user_messages).to_have_count(2)
    expect(chat.bot_messages).to_have_count(2)

    # A vote on the second reply lands on the second turn only.
    chat.bot_buttons(1).get_by_role("button", name="Like", exact=True).click()
    conv = first.conversation_id
    chat.wait_until(lambda: chat.studio.conversation(conv)[1].rating == 1, "the vote on the second turn")
    assert chat.studio.conversation(conv)[0].rating is None

    # The chatbot's own Clear (trash) icon deletes the open conversation, as its picture says (it used to
    # mean "new chat"), rather than only hiding it.
    chat.page.locator("#chatbot").get_by_role("button", name="Clear").click()
    expect(chat.page.locator("#chatbot .message-row")).to_have_count(0)
    expect(chat.page.locator("#conversation input")).to_have_value("")
    chat.wait_until(lambda: first.conversation_id not in _conversations(chat), "the conversation's deletion")
    assert second.conversation_id in _conversations(chat)
    third = chat.send("After clearing")
    assert third.conversation_id not in (first.conversation_id, second.conversation_id)
    assert third.turn_index == 0 and third.history == []


@pytest.mark.browser
def test_editing_a_user_message_reruns_that_turn(chat: ChatPage) -> None:
    first = chat.send("Original question")
    second = chat.send("Second question")
    conv = first.conversation_id
    expect(chat.user_messages).to_have_count(2)

    # Edit the first user message: its turn is rerun and the later turn is dropped from the conversation.
    chat.page.locator("#chatbot .message-buttons-right").first.get_by_role("button", name="Edit").click()
    editor = chat.page.locator("#chatbot textarea.edit-textarea")
    expect(editor).to_have_value("Original question")
    editor.fill("Edited question")
    user_bar = chat.page.locator("#chatbot .message-buttons-right").first
    edited = chat.run(lambda: user_bar.get_by_role("button", name="Submit").click())
    assert (edited.action, edited.turn_index, edited.parent_id) == ("edit", 0, first.id)
    assert edited.conversation_id == conv
    assert edited.prompt == "Edited question" and edited.status == "ok"
    assert chat.generation(first.id).active is False and chat.generation(second.id).active is False
    assert [t.generation_id for t in chat.studio.conversation(conv)] == [edited.id]
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_have_text("Edited question")
    expect(chat.bot_messages).to_have_count(1)


@pytest.mark.browser
def test_blank_seed_stays_blank_so_runs_get_random_seeds(chat: ChatPage) -> None:
    """Gradio's Number starts at 0 when it mounts; the page must show it blank ("blank = random")."""
    chat.page.get_by_text("Sampling", exact=True).first.click()
    seed = chat.page.get_by_label("Seed (blank = random)").first
    expect(seed).to_be_visible()
    expect(seed).to_have_value("")
    first = chat.send("seed check one")
    second = chat.send("seed check two")
    assert first.seed != second.seed, "each run draws its own seed when the box is blank"


@pytest.mark.browser
def test_a_second_user_waits_for_the_cpu_and_sees_the_place_in_line(
    chat: ChatPage, browser_context: Any, server: Any
) -> None:
    """Two tabs (two users' sessions) on local models: the second waits its turn on the device, says so in
    its notice line, and runs once the first is stopped."""
    chat.choose("model", re.compile(r"^long "))
    chat.page.locator("#message textarea").fill("Tell me a very long story")
    chat.page.locator("#send").click()
    expect(chat.bot_messages.last).to_have_text(re.compile(r"\S{3,}"))  # the first job holds the CPU

    other = ChatPage(browser_context.new_page(), server)
    try:
        other.open()
        other.new_chat()
        before = other.generation_count()
        other.page.locator("#message textarea").fill("Hello from the second tab")
        other.page.locator("#send").click()
        expect(other.page.locator("#notice")).to_contain_text("Waiting for the CPU: 1 job ahead")
        assert other.generation_count() == before and chat.studio.manager.jobs("cpu") == (1, 1)

        # Forced: on a busy machine the first job may have written all its tokens by now, and an idle Stop
        # is inactive (a click on it then does nothing, as intended).
        chat.page.locator("#stop").click(force=True)
        other.wait_until(lambda: other.generation_count() >= before + 2, "both rows (stopped, then ok)")
        other.wait_idle()
        rows = [other.latest_generation()]
        assert rows[0].model_id == "tiny" and rows[0].status == "ok", (rows[0].status, rows[0].error)
        expect(other.page.locator("#notice")).not_to_contain_text("Waiting")
        assert chat.studio.manager.jobs("cpu") == (0, 0)
    finally:
        other.page.close()
