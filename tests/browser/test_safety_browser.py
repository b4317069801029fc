"""The safety stage in a real browser, on a studio of its own (block in Chat and Image, the real bundled
checkers): a chat answer that turns abusive is withheld (the abusive sentence never shows) with the reason,
and a picture the checker blocks shows as the blurred placeholder with the reason.

The chat model is a scripted stand-in (a clean first sentence, then insults: tests/test_safety.py), the
painter a fake; the sexual threshold is 0 so that the real picture checker blocks any picture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from studio.backends import register, unregister
from tests.helpers.served import serving, studio_at
from tests.test_safety import CHECKERS, ScriptedAbuse

from .conftest import ChatPage, ImagePage, Server
from .shared import BROWSER, expect

pytestmark = BROWSER

MODELS = f"""
models:
  - id: abuser
    tabs: [chat]
    backend: scripted-abuse
    source: fake/abuser
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {{steps: 1, width: 64, height: 64}}
{CHECKERS}
safety:
  checkers: [profanity, nsfw-image]
  policy: {{chat: block, image: block}}
  thresholds: {{sexual: 0.0}}
"""


@pytest.fixture(scope="module")
def safe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    register(ScriptedAbuse)
    studio = studio_at(tmp_path_factory.mktemp("safety-browser"), MODELS)
    try:
        with serving(studio) as served:
            yield Server(url=served.url, studio=studio)
    finally:
        studio.close()
        unregister(ScriptedAbuse.kind)


@pytest.mark.browser
def test_a_blocked_answer_and_a_blocked_picture(browser_context: Any, safe_server: Server) -> None:
    page = browser_context.new_page()
    try:
        chat = ChatPage(page, safe_server)
        chat.open()
        row = chat.send("Say hello")
        assert row.status == "blocked"
        expect(chat.bot_messages.last).to_contain_text("[withheld by the safety check: profanity]")
        expect(page.locator("#notice")).to_contain_text("Blocked by the safety check")
        assert "moron" not in page.locator("#chatbot").inner_text()

        image = ImagePage(page, safe_server)
        image._loaded()
        (picture,) = image.generate("a red square")
        assert picture.status == "blocked"
        expect(page.locator("#image-notice")).to_contain_text("Blocked by the safety check")
        expect(image.grid_images.first).to_have_attribute("src", re.compile("studio-withheld"))
        assert image.grid_captions()[0] == f"#{picture.id} withheld by the safety check"
    finally:
        page.close()
