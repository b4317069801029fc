"""Shipped buttons with no browser test before (issue 21, item 7): the Library's Open conversation and
Delete, and an init image uploaded in the Image tab (image-to-image from a file the person picks)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from .conftest import ChatPage, ImagePage
from .shared import BROWSER, expect

pytestmark = BROWSER


def _stored(chat: ChatPage, generation_id: int) -> Any:
    from sqlmodel import Session

    from studio import storage

    with Session(chat.studio.engine) as session:
        return storage.get_generation(session, generation_id=generation_id)


def _find_in_library(chat: ChatPage, words: str, generation_id: int) -> None:
    page = chat.page
    page.get_by_role("tab", name="Library", exact=True).click()
    page.locator("#library-search textarea").fill(words)
    page.locator("#library-find").click()
    expect(page.locator("#library-count")).to_contain_text("1 generation(s)")
    page.locator("#library-table").get_by_test_id("cell-0-6").click()  # row 0, the prompt column
    expect(page.locator("#library-details")).to_contain_text(f"#{generation_id}")


@pytest.mark.browser
def test_open_a_conversation_from_the_library_then_delete_its_turn(chat: ChatPage) -> None:
    page = chat.page
    prompt = "Library kingfisher open me"
    row = chat.send(prompt)
    conversation = chat.conversation_id()
    chat.new_chat()  # the Chat tab now shows an empty chat; Open brings the conversation back

    _find_in_library(chat, "kingfisher", row.id)
    page.locator("#library-open").click()
    expect(page.get_by_role("tab", name="Chat", exact=True)).to_have_attribute("aria-selected", "true")
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first).to_contain_text(prompt)
    expect(chat.bot_messages.first).to_contain_text(" ".join((row.output_text or "").split())[:20])
    assert chat.conversation_id() == conversation

    _find_in_library(chat, "kingfisher", row.id)
    page.locator("#library-delete").click()
    expect(page.locator(".toast-body")).to_contain_text(f"Deleted #{row.id}")
    chat.wait_until(lambda: _stored(chat, row.id) is None, "the deleted row")
    expect(page.locator("#library-count")).to_contain_text("0 generation(s)")
    expect(page.locator("#library-details")).to_have_text("Select a row to see it in full.")


@pytest.mark.browser
def test_an_uploaded_init_image_starts_an_image_to_image_job(image: ImagePage, tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "init.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    picture.write_bytes(buffer.getvalue())
    image.page.get_by_text("Image to image", exact=True).click()  # the accordion the upload box is in
    with image.page.expect_file_chooser() as chooser:  # as a person does: click the box, pick the file
        image.page.locator("#image-init").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(picture))
    expect(image.page.locator("#image-init img")).to_have_count(1)  # the upload is shown
    (row,) = image.generate("a red square, repainted", Images=1)
    assert row.status == "ok" and row.params["img2img"] is True, (row.status, row.error, row.params)
    assert image.file_of(row).exists()
