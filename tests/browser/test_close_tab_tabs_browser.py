"""Closing the browser tab ends a running job in the Code, Image and Audio tabs too, as in Chat
(tests/browser/test_close_tab_browser.py): the stored row leaves "running" as `stopped`, "the browser
stopped listening", well before the job would have ended on its own.

Code: the scripted model pauses inside its code block (ScriptedChat.gate) until Stop or the test lets it
go. Image: 150 denoising steps of the tiny pipeline (about 8 s). Audio: 300 s of tiny MusicGen (24,000
frames). Each test closes the page while the job runs and polls the row like a supervisor.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from studio.ui.session import CLOSED_REASON

from .conftest import CodePage, ImagePage, ScriptedChat, Server
from .shared import BROWSER, expect
from .test_audio_browser import AudioPage
from .test_close_tab_browser import _running

pytestmark = BROWSER


def _closed_while_running(page: Any, server: Server, prompt: str) -> Any:
    """Wait for the running row of `prompt` (inside the Code tab's template, if any), close the page, and
    return the row once it has finished."""
    deadline = time.monotonic() + 30
    while not (rows := [row for row in _running(server) if prompt in row.prompt]):
        assert time.monotonic() < deadline, "the job never started"
        page.wait_for_timeout(40)
    (running,) = rows
    page.close()
    deadline = time.monotonic() + 30
    while (row := _generation(server, running.id)).status == "running":
        assert time.monotonic() < deadline, "the job of the closed tab is still running after 30 s"
        time.sleep(0.02)
    return row


def _generation(server: Server, generation_id: int) -> Any:
    from sqlmodel import Session

    from studio import storage

    with Session(server.studio.engine) as session:
        return storage.get_generation(session, generation_id=generation_id)


@pytest.mark.browser
def test_closing_the_tab_stops_a_code_run(code: CodePage, server: Server) -> None:
    ScriptedChat.gate = threading.Event()  # the answer stops inside its code block until Stop
    prompt = "a fizzbuzz for a tab about to close"
    code.page.locator("#code-input textarea").fill(prompt)
    code.page.locator("#code-run").click()
    expect(code.bot_messages.last).to_contain_text("fizzbuzz(")  # streaming: the page has part of it
    row = _closed_while_running(code.page, server, prompt)
    assert (row.tab, row.status, row.error) == ("code", "stopped", CLOSED_REASON)
    assert "fizzbuzz(" in (row.output_text or "") and "return out" not in (row.output_text or "")


@pytest.mark.browser
def test_closing_the_tab_stops_an_image_job(image: ImagePage, server: Server) -> None:
    prompt = "a slow picture for a tab about to close"
    image.page.locator("#image-prompt textarea").fill(prompt)
    image.set_slider("Steps", 150)
    image.page.locator("#image-generate").click()
    expect(image.page.locator("#image-notice")).to_contain_text(re.compile(r"Step \d+/150"))
    row = _closed_while_running(image.page, server, prompt)
    assert (row.tab, row.status, row.error, row.files) == ("image", "stopped", CLOSED_REASON, [])


@pytest.mark.browser
def test_closing_the_tab_stops_a_music_job(browser_context: Any, server: Server) -> None:
    audio = AudioPage(browser_context.new_page(), server)
    try:
        audio.open()
        audio.open_section("Music")
        duration = audio.page.locator("#music-duration input[type=number]")
        duration.fill("300")
        duration.press("Enter")
        prompt = "an endless drone for a tab about to close"
        audio.page.locator("#music-prompt textarea").fill(prompt)
        audio.page.locator("#music-generate").click()
        expect(audio.page.locator("#music-notice p")).to_have_text(re.compile(r"^\d+/24000$"))
        row = _closed_while_running(audio.page, server, prompt)
    finally:
        if not audio.page.is_closed():
            audio.page.close()
    assert (row.tab, row.status, row.error, row.files) == ("music", "stopped", CLOSED_REASON, [])
    assert row.params["duration"] == 300
