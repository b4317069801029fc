"""What the Chat tab shows of a stored answer, in a real browser (issue 14): the kept answers of a
regenerated turn browsed with `‹ 2/3 ›` (the browsed one becoming the active turn), each answer's token
count, speed and seed, and a notice when an answer stopped at max_new_tokens.
"""

from __future__ import annotations

import re

import pytest

from .conftest import ChatPage
from .shared import BROWSER, expect

pytestmark = BROWSER


def _active(chat: ChatPage, conv: int) -> list[int]:
    return [turn.generation_id for turn in chat.studio.conversation(conv)]


@pytest.mark.browser
def test_browse_the_kept_answers_and_make_one_active(chat: ChatPage) -> None:
    # Sampled (a fresh seed each run), so the three answers differ: a later turn follows one answer's text.
    chat.page.get_by_text("Sampling", exact=True).first.click()
    chat.page.locator("#chat-do_sample input").check()
    first = chat.send("Browse my answers")
    conv = first.conversation_id
    second = chat.run(lambda: chat.page.locator("#regenerate").click())
    third = chat.run(lambda: chat.page.locator("#regenerate").click())
    texts = {row.output_text for row in (first, second, third)}
    assert len(texts) == 3 and second.params["do_sample"] is True, texts
    answer = chat.bot_messages.last
    expect(answer).to_contain_text("‹ 3/3 ›")
    assert _active(chat, conv) == [third.id]

    chat.page.locator("#answer-prev").click()
    expect(answer).to_contain_text("‹ 2/3 ›")
    chat.wait_until(lambda: _active(chat, conv) == [second.id], "the second answer to become active")
    assert chat.generation(third.id).active is False, "the answer browsed away stays stored, inactive"
    chat.page.locator("#answer-prev").click()
    expect(answer).to_contain_text("‹ 1/3 ›")
    chat.wait_until(lambda: _active(chat, conv) == [first.id], "the first answer to become active")
    chat.page.locator("#answer-prev").click()  # already the first: it stays
    expect(answer).to_contain_text("‹ 1/3 ›")
    chat.page.locator("#answer-next").click()
    expect(answer).to_contain_text("‹ 2/3 ›")
    chat.wait_until(lambda: _active(chat, conv) == [second.id], "the second answer to become active again")

    # The browsed answer is the one the conversation goes on from, and it survives a reload.
    follow_up = chat.send("And then?")
    assert follow_up.history[-1] == {"role": "assistant", "content": second.output_text}
    chat.reload()
    expect(chat.bot_messages.first).to_contain_text("‹ 2/3 ›")
    expect(chat.bot_messages).to_have_count(2)

    # Clicking the first answer makes the buttons act on it: its third answer drops the follow-up, which was
    # asked after the second, and going back to the second brings the follow-up back.
    chat.bot_messages.first.click()
    chat.page.locator("#answer-next").click()
    expect(chat.bot_messages).to_have_count(1)
    expect(chat.bot_messages.first).to_contain_text("‹ 3/3 ›")
    chat.wait_until(lambda: _active(chat, conv) == [third.id], "the third answer alone")
    chat.page.locator("#answer-prev").click()
    expect(chat.bot_messages).to_have_count(2)
    chat.wait_until(
        lambda: _active(chat, conv) == [second.id, follow_up.id], "the branch of the second answer"
    )

    # A turn with one answer has nothing to browse: a toast says so.
    chat.bot_messages.last.click()
    chat.page.locator("#answer-next").click()
    error = chat.page.locator(".toast-body.error").filter(has_text="no other kept answer")
    expect(error).to_have_count(1)


@pytest.mark.browser
def test_each_answer_shows_its_numbers_and_the_token_limit(chat: ChatPage) -> None:
    chat.page.get_by_text("Sampling", exact=True).first.click()
    limit = chat.page.get_by_label("number input for Max new tokens").first
    for _ in range(20):  # the model's defaults, set as the page loads, may land after a first fill
        limit.fill("3")
        limit.press("Enter")
        limit.blur()
        chat.page.wait_for_timeout(250)
        if limit.input_value() == "3":
            break
    expect(limit).to_have_value("3")
    expect(chat.page.locator("#chat-max_new_tokens input[type=range]")).to_have_value("3")
    row = chat.send("Count to ten")
    assert row.status == "ok" and row.completion_tokens == 3 and row.seed is not None
    footer = chat.bot_messages.last.locator("sub")
    expect(footer).to_contain_text("3 tokens")
    expect(footer).to_contain_text(re.compile(r"\d+\.\d tokens/s"))
    expect(footer).to_contain_text(f"seed {row.seed}")
    expect(footer).to_contain_text("stopped at max_new_tokens")
    notice = "The answer stopped at the limit of 3 new tokens (max_new_tokens)"
    expect(chat.page.locator("#notice")).to_contain_text(notice)
    assert any(note.startswith(notice) for note in row.notices), "the notice is stored with the answer"
