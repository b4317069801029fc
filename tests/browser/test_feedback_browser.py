"""Feedback that can be trusted, in a real browser: the "why?" panel offers the reasons that fit the vote,
the A/B verdict buttons wait for two finished answers (and a comparison adds nothing to the Chat list),
and the Library says which runs failed or were replaced and how each one ran."""

from __future__ import annotations

import re

from sqlmodel import Session

from studio import storage

from .shared import BROWSER, expect

pytestmark = BROWSER

POSITIVE = ["helpful", "accurate", "well written", "creative", "other"]
NEGATIVE = ["inaccurate", "unsafe", "off-topic", "low quality", "other"]


def _reasons(page, prefix: str) -> list[str]:
    """The reason checkboxes the panel offers, in order."""
    labels = page.locator(f"#{prefix}-feedback-reasons label")
    return [text.strip() for text in labels.all_inner_texts()]


def test_the_why_panel_fits_the_vote(chat) -> None:
    page, studio = chat.page, chat.studio
    row = chat.send("Why panel hello")
    chat.bot_buttons().get_by_role("button", name="Like", exact=True).click()
    chat.wait_until(lambda: studio.rating(row.id) == 1, "the 👍 vote")
    heading = page.locator("#chat-feedback-heading")
    expect(heading).to_have_text("👍 Why did you like this answer? (optional)")
    expect(page.locator("#chat-feedback-reasons")).to_contain_text("well written")
    assert _reasons(page, "chat") == POSITIVE
    assert "#" not in heading.inner_text()  # words the user sees, not row ids
    page.locator("#chat-feedback-reasons").get_by_label("helpful").check()
    page.locator("#chat-feedback-save").click()
    chat.wait_until(lambda: studio.vote_detail(row.id)["reasons"] == ["helpful"], "the reason")
    expect(page.locator("#chat-feedback-note")).to_have_text("Saved with your vote on this answer.")

    chat.bot_buttons().get_by_role("button", name="Dislike", exact=True).click()
    chat.wait_until(lambda: studio.rating(row.id) == -1, "the 👎 vote")
    expect(heading).to_have_text("👎 Why did you dislike this answer? (optional)")
    expect(page.locator("#chat-feedback-reasons")).to_contain_text("unsafe")
    assert _reasons(page, "chat") == NEGATIVE
    assert studio.vote_detail(row.id)["reasons"] == []  # the 👍 reason went with the 👍


def test_verdicts_wait_for_two_finished_answers(chat) -> None:
    page, studio = chat.page, chat.studio
    conversations = studio.conversations()
    buttons = [page.locator(f"#chat-compare-vote-{v}") for v in ("a", "b", "tie", "both_bad")]
    page.locator("#chat-compare").get_by_text("Compare A/B").click()
    for button in buttons:
        expect(button).to_be_disabled()  # nothing to judge yet
    chat.choose("chat-compare-model-b", re.compile(r"^tiny "))
    # Too long for tiny's 256-token context: both sides fail, and no verdict can be given on them.
    page.locator("#chat-compare-prompt textarea").fill("words " * 400)
    before = chat.generation_count()
    page.locator("#chat-compare-run").click()
    chat.wait_until(lambda: chat.generation_count() == before + 2, "both failed sides")
    expect(page.locator("#chat-compare-status")).to_contain_text("Failed: A the message is too long")
    expect(page.locator("#chat-compare-status")).to_contain_text("No vote on this pair")
    for button in buttons:
        expect(button).to_be_disabled()

    page.locator("#chat-compare-prompt textarea").fill("A fair comparison")
    page.locator("#chat-compare-seed-a input").fill("1")
    page.locator("#chat-compare-seed-b input").fill("2")
    page.locator("#chat-compare-run").click()
    chat.wait_until(lambda: chat.generation_count() == before + 4, "both finished sides")
    expect(page.locator("#chat-compare-status")).to_contain_text("Which is better?")
    for button in buttons:
        expect(button).to_be_enabled()
    buttons[2].click()
    expect(page.locator("#chat-compare-status")).to_contain_text("Recorded: tie")
    assert studio.conversations() == conversations  # the comparisons are not chats
    chat.reload()
    page.locator("#conversation input").click()
    expect(page.get_by_role("option", name=re.compile("comparison|words words"))).to_have_count(0)


def _stored(studio, **fields) -> int:
    with Session(studio.engine, expire_on_commit=False) as session:
        row = storage.Generation(user_id=studio.user_id(None), tab="chat", model_id="tiny", **fields)
        return storage.record_generation(session, generation=row).id or 0


def test_the_library_shows_status_replaced_turns_and_how_each_ran(chat) -> None:
    page, studio = chat.page, chat.studio
    params = {"temperature": 0.3, "max_new_tokens": 12, "seed": 41}
    failed = _stored(studio, prompt="kestrel failed", status="error", error="the model ran out of memory")
    replaced = _stored(
        studio, prompt="kestrel replaced", output_text="old answer", active=False, seed=41, params=params,
        prompt_tokens=5, completion_tokens=11, duration_ms=2000.0, first_token_ms=1000.0,
    )  # fmt: skip
    done = _stored(studio, prompt="kestrel done", output_text="fine answer", seed=7)
    page.get_by_role("tab", name="Library", exact=True).click()
    page.locator("#library-search textarea").fill("kestrel")
    page.locator("#library-find").click()
    table = page.locator("#library-table")
    expect(page.locator("#library-count")).to_contain_text("3 generation(s)")
    statuses = {done: "done", replaced: "done, replaced", failed: "failed"}
    for index, gid in enumerate([done, replaced, failed]):  # newest first
        expect(table.get_by_test_id(f"cell-{index}-0")).to_have_text(str(gid))
        expect(table.get_by_test_id(f"cell-{index}-4")).to_have_text(statuses[gid])

    table.get_by_test_id("cell-1-6").click()
    details = page.locator("#library-details")
    expect(details).to_contain_text(f"#{replaced}")
    for text in ("done, replaced", "Replaced: this answer was regenerated", "seed 41",
                 "5 prompt + 11 new tokens", "2.00 s (first token after 1.00 s)", "10.0 tokens/s",
                 "max_new_tokens 12", "temperature 0.3"):  # fmt: skip
        expect(details).to_contain_text(text)
    table.get_by_test_id("cell-2-6").click()
    expect(details).to_contain_text("failed")
    expect(details).to_contain_text("Error: the model ran out of memory")
