"""Browser tier fixtures: one Studio server and one Chromium per session, a fresh page per test.

The server runs the real app (`studio.ui.build_app` + `studio.ui.launch`) on a free loopback port with
two tiny random-weight chat models built in code: `tiny` (12 new tokens, the default) and `long` (4000
new tokens and a large context, so Stop has something to interrupt). Chromium is Debian's, driven by
Playwright without `playwright install`.
"""

from __future__ import annotations

# The offline and thread variables are set by tests/conftest.py, which pytest loads first.
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000  # generous for 2 busy cores; passing steps take well under a second

# True when no output of the chat events shows a pending/generating status tracker.
_IDLE_JS = """() => document.querySelector('#chatbot [data-testid=status-tracker]') !== null
    && ['#chatbot', '#conversation', '#model', '#notice'].every(sel => {
        const tracker = document.querySelector(sel + ' [data-testid=status-tracker]');
        return tracker === null || tracker.classList.contains('hide');
    })"""


@dataclass
class Server:
    url: str
    studio: Any  # studio.Studio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    import torch

    torch.set_num_threads(1)
    import studio.ui
    from studio import Settings, Studio
    from studio.testing import build_tiny_chat_model

    tmp = tmp_path_factory.mktemp("browser")
    tiny = build_tiny_chat_model(tmp / "tiny")
    long = build_tiny_chat_model(tmp / "long", context=4352)
    # Greedy decoding of a random tied-embedding model repeats its last prompt token ("\n", invisible in the
    # chatbot); a repetition penalty makes the replies visible text, still deterministic.
    models_file = tmp / "models.yaml"
    models_file.write_text(
        "models:\n"
        "  - id: tiny\n"
        "    tabs: [chat, code]\n"
        "    backend: transformers-chat\n"
        f"    source: {tiny}\n"
        "    defaults: {max_new_tokens: 12, do_sample: false, repetition_penalty: 1.5}\n"
        "  - id: long\n"
        "    tabs: [chat]\n"
        "    backend: transformers-chat\n"
        f"    source: {long}\n"
        "    defaults: {max_new_tokens: 4000, do_sample: false, repetition_penalty: 1.5}\n"
    )
    service = Studio.from_settings(Settings.from_env(models_file=models_file, data_dir=tmp / "data"))
    # Create the "local" user before two threads (the page's load event and this test process) race to:
    # Studio.user_id's get-or-create is not safe under concurrency on a fresh database (UNIQUE user.name).
    service.user_id(None)
    app = studio.ui.build_app(service)
    port = _free_port()
    studio.ui.launch(app, service, host="127.0.0.1", port=port, block=False)
    try:
        yield Server(url=f"http://127.0.0.1:{port}/", studio=service)
    finally:
        app.close()
        service.close()


@pytest.fixture(scope="session")
def browser_context(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class ChatPage:
    """The Chat tab as a user sees it, plus the stored rows behind it."""

    def __init__(self, page: Any, server: Server) -> None:
        self.page = page
        self.server = server
        self.studio = server.studio

    # -- page state --------------------------------------------------------------------------------
    def open(self) -> None:
        self.page.goto(self.server.url)
        self._loaded()

    def reload(self) -> None:
        self.page.reload()
        self._loaded()

    def _loaded(self) -> None:
        """Wait for the page and its load event, which reopens the most recent conversation."""
        from playwright.sync_api import expect

        self.page.locator("#message textarea").wait_for()
        latest = self.studio.conversations()
        if latest:  # a deterministic sign that the load event has finished
            selected = re.compile(rf"\(#{latest[0][0]}\)$")
            expect(self.page.locator("#conversation input")).to_have_value(selected)
        self.wait_idle()

    def wait_idle(self) -> None:
        self.page.wait_for_function(_IDLE_JS, timeout=TIMEOUT_MS)

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
        """Poll a server-side condition while letting the browser run."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            self.page.wait_for_timeout(40)

    @property
    def user_messages(self) -> Any:
        return self.page.locator("#chatbot [data-testid=user]")

    @property
    def bot_messages(self) -> Any:
        return self.page.locator("#chatbot [data-testid=bot]")

    def bot_buttons(self, index: int = -1) -> Any:
        """The button bar under the assistant message `index` (copy, retry, dislike, like)."""
        bars = self.page.locator("#chatbot .message-buttons-left")
        return bars.last if index == -1 else bars.nth(index)

    def conversation_id(self) -> int | None:
        label = self.page.locator("#conversation input").input_value()
        match = re.search(r"\(#(\d+)\)$", label)
        return int(match.group(1)) if match else None

    # -- actions -----------------------------------------------------------------------------------
    def new_chat(self) -> None:
        self.page.locator("#new-chat").click()
        from playwright.sync_api import expect

        expect(self.page.locator("#chatbot .message-row")).to_have_count(0)
        expect(self.page.locator("#conversation input")).to_have_value("")

    def run(self, click: Callable[[], None]) -> Any:
        """Do something that runs the model; wait until its row is stored and the page has the result."""
        before = self.generation_count()
        click()
        self.wait_until(lambda: self.generation_count() > before, "the generation row")
        self.wait_idle()
        return self.latest_generation()

    def send(self, text: str) -> Any:
        def click() -> None:
            self.page.locator("#message textarea").fill(text)
            self.page.locator("#send").click()

        return self.run(click)

    def choose(self, dropdown_id: str, option: str | re.Pattern[str]) -> None:
        self.page.locator(f"#{dropdown_id} input").click()
        self.page.get_by_role("option", name=option).click()

    # -- storage -----------------------------------------------------------------------------------
    def generation_count(self) -> int:
        from sqlmodel import Session

        from studio import storage

        with Session(self.studio.engine) as session:
            return storage.count_generations(session)

    def generation(self, generation_id: int) -> Any:
        from sqlmodel import Session

        from studio import storage

        with Session(self.studio.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
            assert row is not None, f"generation {generation_id} is not stored"
            return row

    def latest_generation(self) -> Any:
        from sqlmodel import Session

        from studio import storage

        with Session(self.studio.engine) as session:
            return storage.list_generations(session, limit=1)[0]


@pytest.fixture
def chat(browser_context: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[ChatPage]:
    """A fresh tab on the app, with an empty chat (New chat clicked)."""
    page = browser_context.new_page()
    chat_page = ChatPage(page, server)
    try:
        chat_page.open()
        chat_page.new_chat()
        yield chat_page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            shot = Path(os.environ.get("STUDIO_BROWSER_ARTIFACTS", "/tmp")) / f"{request.node.name}.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failed page: {shot}")
            except Exception as exc:  # the page may be gone; the test failure matters more
                print(f"no screenshot: {exc}")
        page.close()
