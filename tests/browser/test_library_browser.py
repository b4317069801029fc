"""The feedback loop in a real browser: votes with a reason in the Chat and Image tabs, an A/B comparison
in the Chat tab, then the Library: search, a vote with a reason, re-run in the right tab, export download.
One page for all of it: with a second page for the Image tab the test took 50 s, on one page 12-20 s (the
same session on the same busy cores; docs/testing.md)."""

from __future__ import annotations

import re
import zipfile

import pytest
from sqlmodel import Session, select

from studio import storage

pytestmark = pytest.mark.browser


def ratings(studio) -> dict[int, tuple[int, str | None, str | None]]:
    with Session(studio.engine) as s:
        return {r.generation_id: (r.value, r.reason, r.comment) for r in s.exec(select(storage.Rating))}


def test_vote_compare_search_rerun_and_export(chat) -> None:
    from playwright.sync_api import expect

    from .conftest import ImagePage

    studio = chat.studio
    # 1. Thumbs up in the Chat tab.
    row = chat.send("Library zebrafinch hello")
    chat.bot_buttons().get_by_role("button", name="Like", exact=True).click()
    chat.wait_until(lambda: ratings(studio).get(row.id, (0,))[0] == 1, "the chat vote")
    # The "why?" panel appears after the vote; its reason and comment are stored with it.
    panel = chat.page.locator("#chat-feedback").first  # Gradio gives a group's id to two divs
    expect(panel).to_contain_text("Why did you like this answer?")
    panel.get_by_label("other").check()
    chat.page.locator("#chat-feedback-comment textarea").fill("friendly")
    chat.page.locator("#chat-feedback-save").click()
    chat.wait_until(lambda: ratings(studio).get(row.id) == (1, "other", "friendly"), "the chat reason")

    # 2. Thumbs down in the Image tab, on the same page: with a second page the whole test ran 2.5-4x slower.
    chat.page.get_by_role("tab", name="Image", exact=True).click()
    image = ImagePage(chat.page, chat.server)
    image.page.locator("#image-prompt textarea").wait_for()
    image.wait_idle()
    [picture] = image.generate("library fox", Images=1)
    image.select(picture.id)
    image.page.locator("#image-dislike").click()
    image.wait_until(lambda: ratings(studio).get(picture.id, (0,))[0] == -1, "the image vote")
    image.page.locator("#image-feedback").first.get_by_label("unsafe").check()
    image.page.locator("#image-feedback-save").click()
    image.wait_until(lambda: ratings(studio).get(picture.id) == (-1, "unsafe", None), "the image reason")
    image.page.locator("#image-dislike").click()  # a double click keeps the vote and its reason
    expect(image.page.locator("#image-feedback-note")).to_have_text("")
    assert ratings(studio).get(picture.id) == (-1, "unsafe", None)

    # 3. A/B in the Chat tab: one model, two seeds, sampling on; B wins.
    page = chat.page
    page.get_by_role("tab", name="Chat", exact=True).click()
    page.locator("#chat-compare").get_by_text("Compare A/B").click()
    page.locator("#chat-compare-prompt textarea").fill("Library compare prompt")
    page.locator("#chat-compare-seed-a input").fill("1")
    page.locator("#chat-compare-seed-b input").fill("2")
    before = chat.generation_count()
    with Session(studio.engine) as s:  # other browser tests on this server may have voted A/B already
        votes_before = len(s.exec(select(storage.Preference)).all())
    page.locator("#chat-compare-run").click()
    chat.wait_until(lambda: chat.generation_count() == before + 2, "both candidates")
    expect(page.locator("#chat-compare-status")).to_contain_text("Which is better?")
    page.locator("#chat-compare-vote-b").click()
    expect(page.locator("#chat-compare-status")).to_contain_text("Recorded: b is better")
    with Session(studio.engine) as s:
        *_, vote = votes = s.exec(select(storage.Preference).order_by(storage.Preference.id)).all()
    assert len(votes) == votes_before + 1 and vote.choice == "b" and vote.tab == "chat"

    # 4. The Library: search finds the chat turn; vote it down with a reason and a comment.
    page.get_by_role("tab", name="Library", exact=True).click()
    page.locator("#library-search textarea").fill("zebrafinch")
    page.locator("#library-find").click()
    table = page.locator("#library-table")
    expect(page.locator("#library-count")).to_contain_text("1 generation(s)")
    table.get_by_test_id("cell-0-6").click()  # row 0, the prompt column
    expect(page.locator("#library-details")).to_contain_text(f"#{row.id}")
    page.locator("#library-reasons").get_by_label("inaccurate").check()
    page.locator("#library-comment textarea").fill("wrong on purpose")
    page.locator("#library-down").click()
    chat.wait_until(lambda: ratings(studio).get(row.id) == (-1, "inaccurate", "wrong on purpose"), "the vote")
    expect(page.locator("#library-details")).to_contain_text("👎")

    # 5. Re-run with these settings: back in the Chat tab with the prompt in the message box.
    page.locator("#library-rerun").click()
    expect(page.locator("#message textarea")).to_have_value("Library zebrafinch hello")
    expect(page.get_by_role("tab", name="Chat", exact=True)).to_have_attribute("aria-selected", "true")

    # 6. Export KTO from the Library: a zip with TRL's columns comes back.
    page.get_by_role("tab", name="Library", exact=True).click()
    page.locator("#library-export").get_by_text("Export for training").click()
    page.locator("#library-format input").click()
    page.get_by_role("option", name="kto", exact=True).click()
    page.locator("#library-export-run").click()
    expect(page.locator("#library-export-note")).to_contain_text(re.compile(r"Exported kto: \d+ train"))
    link = page.locator("#library-export-file a").first
    with page.expect_download() as download:
        link.click()
    with zipfile.ZipFile(download.value.path()) as z:
        first = z.read("train.jsonl").splitlines()[0]
    assert b'"prompt"' in first and b'"completion"' in first and b'"label"' in first
