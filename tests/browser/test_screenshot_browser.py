"""The README's screenshot: the Chat tab in a real browser, after a message and its answer (assets/chat.png).

When the bundled SmolLM2-135M has been pulled (the set-up command and `.ci/run` do it), the page is a studio
of its own on the shipped models.yaml, so the picture shows what a user sees: the real model list and a real
answer (greedy, so the same one every time). Without those weights it falls back to conftest's server and
its tiny random-weight model, whose answer is not words: that picture goes to /tmp (or
$STUDIO_BROWSER_ARTIFACTS), so as not to replace the README's. Either way the test checks that the answer is
shown before it takes the picture; with the bundled model it overwrites assets/chat.png.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the browser tier needs the playwright package (dev extra)")
import yaml
from playwright.sync_api import expect

from studio import sources
from studio.config import DEFAULT_MODELS_FILE, Settings, load_config
from tests.helpers.served import serving

from .conftest import CHROMIUM, ChatPage, Server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

SCREENSHOT = Path(__file__).resolve().parents[2] / "assets" / "chat.png"
ARTIFACTS = Path(os.environ.get("STUDIO_BROWSER_ARTIFACTS", "/tmp"))
BUNDLED = "smollm2-135m"
PROMPT = "What is the capital of France?"


def bundled_ready() -> tuple[bool, Path]:
    cache = Settings.from_env().model_cache  # where the set-up command pulled it
    spec = load_config(DEFAULT_MODELS_FILE).model(BUNDLED)
    return sources.status(spec, cache=cache, base_dir=DEFAULT_MODELS_FILE.parent) == "ready", cache


def looks_different(png: bytes, path: Path) -> bool:
    """False when `path` holds a picture of the same size with at most 0.1 % of its pixels changed.

    Headless Chromium anti-aliases a few pixels differently from run to run; rewriting the file for those
    would leave a changed assets/chat.png in the working tree after every test run.
    """
    if not path.exists():
        return True
    from PIL import Image, ImageChops

    new = Image.open(io.BytesIO(png)).convert("RGB")
    with Image.open(path) as stored:
        old = stored.convert("RGB")
    if new.size != old.size:
        return True
    changed = sum(1 for value in ImageChops.difference(new, old).convert("L").getdata() if value)
    return changed > new.size[0] * new.size[1] // 1000


@pytest.fixture(scope="module")
def shot_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A studio on the shipped models.yaml (the bundled model made greedy) when its weights are here;
    else conftest's server."""
    ready, cache = bundled_ready()
    if not ready:
        yield server
        return
    from studio import Studio

    tmp = tmp_path_factory.mktemp("screenshot")
    shipped = yaml.safe_load(DEFAULT_MODELS_FILE.read_text(encoding="utf-8"))
    for entry in shipped["models"]:
        if entry["id"] == BUNDLED:  # greedy and short: the same answer on every run
            entry["defaults"] = {**entry.get("defaults", {}), "do_sample": False, "max_new_tokens": 48}
    models_file = tmp / "models.yaml"
    models_file.write_text(yaml.safe_dump(shipped, sort_keys=False), encoding="utf-8")
    settings = Settings.from_env(models_file=models_file, data_dir=tmp / "data")
    service = Studio.from_settings(dataclasses.replace(settings, model_cache=cache))
    service.user_id(None)  # the "local" user, before the page's load event and this process race to make it
    service.manager.preload(BUNDLED)  # as `studio serve` does, so the first message does not wait for it
    try:
        with serving(service) as served:
            yield Server(url=served.url, studio=service)
    finally:
        service.close()


@pytest.mark.browser
def test_chat_tab_screenshot(browser_context: Any, shot_server: Server, server: Server) -> None:
    page = browser_context.new_page()
    try:
        chat = ChatPage(page, shot_server)
        chat.open()
        chat.new_chat()
        page.locator("#message textarea").fill(PROMPT)
        row = chat.run(lambda: page.locator("#send").click())
        assert row.status == "ok", row.error
        assert row.prompt == PROMPT
        expect(chat.user_messages).to_have_count(1)
        expect(chat.user_messages.first).to_have_text(PROMPT)
        expect(chat.bot_messages).to_have_count(1)
        answer = chat.bot_messages.first
        expect(answer).to_be_visible()
        if shot_server is server:  # the tiny random model: whatever it said, as stored
            expect(answer).to_contain_text(" ".join(row.output_text.split()))  # then its footer line
            shot = ARTIFACTS / "studio_chat_tiny.png"
        else:
            expect(answer).to_contain_text("Paris")
            shot = SCREENSHOT
        page.mouse.move(0, 0)  # no hover highlight in the picture
        # The whole page (title to buttons), whatever the window's height; transitions finished, not half-way.
        png = page.screenshot(full_page=True, animations="disabled")
        assert len(png) > 10_000, "the screenshot is (nearly) empty"
        if looks_different(png, shot):
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(png)
    finally:
        page.close()
