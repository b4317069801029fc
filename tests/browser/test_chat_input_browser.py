"""The Chat tab's message box, Stop button and conversation list in a real browser (issue 14).

Enter sends and Shift+Enter adds a line, as the placeholder says; Stop is active only while a run goes; an
empty message is refused with a toast and no traceback in the server's log; the conversation list shows
full titles (no "(#id)") and a search narrows it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import ChatPage
from .shared import BROWSER, expect

pytestmark = BROWSER


def _expect_options(chat: ChatPage, labels: list[str]) -> None:
    """The Conversations dropdown, opened, lists exactly `labels` (newest first); the selected option
    carries a check mark before its label."""
    chat.page.locator("#conversation input").click()
    shown = [re.compile(rf"^\s*(✓\s*)?{re.escape(label)}\s*$") for label in labels]
    expect(chat.page.locator("#conversation").get_by_role("option")).to_have_text(shown)
    chat.page.keyboard.press("Escape")
    chat.page.locator("#conversation input").blur()  # a click on the focused box would close the list


@pytest.mark.browser
def test_enter_sends_and_shift_enter_adds_a_line(chat: ChatPage) -> None:
    box = chat.page.locator("#message textarea")
    expect(box).to_have_attribute("placeholder", re.compile("Enter to send, Shift\\+Enter for a new line"))
    before = chat.generation_count()
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    chat.page.wait_for_timeout(500)  # a send would have queued by now
    assert chat.generation_count() == before, "Shift+Enter must not send"
    expect(chat.user_messages).to_have_count(0)

    row = chat.run(lambda: box.press("Enter"))
    assert row.prompt == "first line\nsecond line" and row.action == "send", row.prompt
    expect(chat.user_messages).to_have_count(1)
    expect(box).to_have_value("")


@pytest.mark.browser
def test_stop_is_active_only_while_a_run_goes(chat: ChatPage) -> None:
    stop = chat.page.locator("#stop")
    expect(stop).to_be_disabled()
    chat.choose("model", re.compile(r"^long "))
    chat.page.locator("#message textarea").fill("Tell me a very long story")
    before = chat.generation_count()
    chat.page.locator("#send").click()
    expect(chat.bot_messages.last).to_have_text(re.compile(r"\S{3,}"))
    expect(stop).to_be_enabled()
    stop.click()
    chat.wait_until(lambda: chat.generation_count() > before, "the stopped row")
    chat.wait_idle()
    assert chat.latest_generation().status == "stopped"
    expect(stop).to_be_disabled()

    # A refused run (nothing to regenerate in a new chat) leaves it inactive.
    chat.new_chat()
    chat.page.locator("#regenerate").click()
    expect(chat.page.locator(".toast-body.error").filter(has_text="nothing to regenerate")).to_have_count(1)
    expect(stop).to_be_disabled()


@pytest.mark.browser
def test_an_empty_message_is_refused_without_a_traceback(chat: ChatPage, capfd: Any) -> None:
    capfd.readouterr()  # what earlier tests printed
    errors = chat.page.locator(".toast-body.error [data-testid=toast-text]")
    box = chat.page.locator("#message textarea")
    box.fill("   ")
    box.press("Enter")
    expect(errors.filter(has_text="the message is empty; type something to send")).to_have_count(1)
    chat.page.locator("#send").click()
    expect(errors.filter(has_text="the message is empty; type something to send")).to_have_count(2)
    logged = capfd.readouterr()
    assert "Traceback" not in logged.err + logged.out, logged.err[-3000:]


@pytest.mark.browser
def test_the_conversation_list_shows_full_titles_and_searches(chat: ChatPage) -> None:
    long_title = (
        "A rather long first message about the migration of Arctic terns across the whole planet, from pole "
        "to pole and back again"
    )
    terns = chat.send(long_title)
    chat.new_chat()
    owls = chat.send("Owls hunt at night")
    title = "A rather long first message about the migration of Arctic terns across the…"
    assert chat.studio.conversations()[1][1] == title, "cut at a word, and says so"
    # Titles alone: no "(#id)" after them.
    _expect_options(chat, [title for _, title in chat.studio.conversations()])
    assert [t for _, t in chat.studio.conversations()[:2]] == ["Owls hunt at night", title]

    search = chat.page.locator("#conversation-search input")
    search.fill("TERNS")  # any case, in the title
    chat.wait_idle()
    _expect_options(chat, [title, "Owls hunt at night"])  # the open conversation stays listed, last
    expect(chat.page.locator("#conversation input")).to_have_value("Owls hunt at night")

    # Nothing open and a search that matches one conversation: only it is listed, and it opens.
    chat.new_chat()
    search.fill("Arctic terns")
    chat.wait_idle()
    _expect_options(chat, [title])
    chat.choose("conversation", title, exact=True)
    chat.wait_idle()
    expect(chat.user_messages.first).to_have_text(long_title)
    assert chat.conversation_id() == terns.conversation_id != owls.conversation_id

    # A new conversation while the search is on: the list stays narrowed (with the open one, last).
    chat.new_chat()
    chat.send("Penguins swim")
    _expect_options(chat, [title, "Penguins swim"])
