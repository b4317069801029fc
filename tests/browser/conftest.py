"""Browser tier fixtures: one Studio server and one Chromium per session, a fresh page per test.

The server runs the real app (`studio.ui.build_app` + `studio.ui.launch`) on a free loopback port with
two tiny random-weight chat models built in code: `tiny` (12 new tokens, the Chat tab's default, also in
the Code tab) and `long` (4000 new tokens and a large context, so Stop has something to interrupt), and a
tiny random-weight Stable Diffusion pipeline, `tiny-sd` (the Image tab's only model: 64x64 in 3 steps). The
Audio tab has the real bundled voice (`hibari-heart`) and a tiny random-weight MusicGen (`tiny-musicgen`).
The Code tab's default is `scripted`: a stand-in backend (`ScriptedChat`, below) that streams a fixed Markdown
answer with a fenced Python block, because random weights almost never write fences. It checks the UI's
wiring only; the real backend in the Code tab is covered by one test here and by the other tiers.
Chromium is Debian's, driven by Playwright without `playwright install`.
"""

from __future__ import annotations

# The offline and thread variables are set by tests/conftest.py, which pytest loads first.
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from studio.backends import Backend, Request, TextDelta, Usage, register, unregister
from studio.backends.params import ChatParams
from tests.helpers.fakes import fake_weights
from tests.helpers.served import serving

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


# What the scripted model answers: a first answer, and a refinement when the prompt asks for type hints.
SCRIPTED_CODE = (
    "def fizzbuzz(n):\n"
    '    """FizzBuzz from 1 to n."""\n'
    "    out = []\n"
    "    for i in range(1, n + 1):\n"
    '        out.append("Fizz" * (i % 3 == 0) + "Buzz" * (i % 5 == 0) or str(i))\n'
    "    return out"
)
SCRIPTED_HINTED_CODE = (
    "def fizzbuzz(n: int) -> list[str]:\n"
    '    """FizzBuzz from 1 to n."""\n'
    "    out: list[str] = []\n"
    "    for i in range(1, n + 1):\n"
    '        out.append("Fizz" * (i % 3 == 0) + "Buzz" * (i % 5 == 0) or str(i))\n'
    "    return out"
)
SCRIPTED_EXPLANATION = "It counts from 1 to n and replaces multiples of 3 and 5 with Fizz and Buzz."
SCRIPTED_HINTED_EXPLANATION = "The same function, now with type hints on the argument and the result."


def scripted_answer(code: str, explanation: str) -> str:
    return f"Here is the function:\n\n```python\n{code}\n```\n\n{explanation}\n"


class ScriptedChat(Backend):
    """Streams a fixed Markdown answer word by word (whitespace kept), honouring `request.stop`.

    A prompt that mentions type hints gets the hinted version. While `gate` holds an unset Event, the
    stream pauses inside the code block (after one visible update) until a test sets it, so a test can
    look at the page mid-stream.
    """

    kind = "scripted-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    gate: ClassVar[threading.Event | None] = None
    PAUSE_AFTER = "fizzbuzz("  # the first piece of the code block

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[TextDelta | Usage, None, None]:
        if "type hints" in request.prompt:
            answer = scripted_answer(SCRIPTED_HINTED_CODE, SCRIPTED_HINTED_EXPLANATION)
        else:
            answer = scripted_answer(SCRIPTED_CODE, SCRIPTED_EXPLANATION)
        if request.continue_from is not None:
            answer = " More."
        sent = 0
        for piece in re.split(r"(?<=\s)(?=\S)", answer):
            if request.stop.is_set():
                break
            gate = type(self).gate
            if gate is not None and piece.startswith(self.PAUSE_AFTER):
                # Let the UI's throttle pass this piece (at most 20 updates a second), then wait for the test.
                request.stop.wait(0.12)
                yield TextDelta(piece)
                sent += 1
                deadline = time.monotonic() + TIMEOUT_MS / 1000
                while not gate.wait(0.02) and not request.stop.is_set() and time.monotonic() < deadline:
                    pass
                continue
            yield TextDelta(piece)
            sent += 1
        yield Usage(prompt_tokens=len(request.prompt.split()), completion_tokens=sent)


@dataclass
class Server:
    url: str
    studio: Any  # studio.Studio


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    import torch

    torch.set_num_threads(1)
    from studio import Settings, Studio
    from tests.helpers.tiny_audio import build_tiny_musicgen
    from tests.helpers.tiny_chat import build_tiny_chat_model, build_tiny_sd_pipeline

    register(ScriptedChat)  # for this server only; unregistered at the end
    tmp = tmp_path_factory.mktemp("browser")
    scripted = tmp / "scripted"
    scripted.mkdir()  # the scripted backend reads nothing; a local source only has to exist
    tiny = build_tiny_chat_model(tmp / "tiny")
    long = build_tiny_chat_model(tmp / "long", context=4352)
    tiny_sd = build_tiny_sd_pipeline(tmp / "tiny-sd")
    tiny_musicgen = build_tiny_musicgen(tmp / "tiny-musicgen")
    # Greedy decoding of a random tied-embedding model repeats its last prompt token ("\n", invisible in the
    # chatbot); a repetition penalty makes the replies visible text, still deterministic.
    models_file = tmp / "models.yaml"
    models_file.write_text(
        "models:\n"
        "  - id: scripted\n"
        "    tabs: [code]\n"
        "    backend: scripted-chat\n"
        f"    source: {scripted}\n"
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
        "  - id: tiny-sd\n"
        "    tabs: [image]\n"
        "    backend: diffusers\n"
        f"    source: {tiny_sd}\n"
        "    defaults: {steps: 3, width: 64, height: 64, guidance: 5.0}\n"
        # The Audio tab: the real bundled voice (installed with hibari-tts) and a tiny MusicGen.
        "  - id: hibari-heart\n"
        "    tabs: [speech]\n"
        "    backend: hibari-tts\n"
        "    source: pip:hibari-tts==0.2.1#hibari/assets/hibari.onnx\n"
        "  - id: tiny-musicgen\n"
        "    tabs: [music]\n"
        "    backend: musicgen\n"
        f"    source: {tiny_musicgen}\n"
        "    defaults: {duration: 1.5}\n"
    )
    service = Studio.from_settings(Settings.from_env(models_file=models_file, data_dir=tmp / "data"))
    # Create the "local" user before two threads (the page's load event and this test process) race to:
    # Studio.user_id's get-or-create is not safe under concurrency on a fresh database (UNIQUE user.name).
    service.user_id(None)
    try:
        with serving(service) as served:
            yield Server(url=served.url, studio=service)
    finally:
        service.close()
        unregister(ScriptedChat.kind)


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
            expect(self.page.locator("#conversation input")).to_have_value(latest[0][1])
        self.page.wait_for_function(_IDLE_JS, timeout=TIMEOUT_MS)  # the Chat tab's, also from CodePage

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
        """The id of the conversation the list shows: the newest one with the shown title (the list shows
        titles only, so a test that reopens an older conversation gives it a title of its own)."""
        return self._conversation_titled(self.page.locator("#conversation input").input_value(), "chat")

    def _conversation_titled(self, title: str, tab: str) -> int | None:
        return next((cid for cid, shown in self.studio.conversations(tab=tab) if shown == title), None)

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

    def choose(self, dropdown_id: str, option: str | re.Pattern[str], *, exact: bool = False) -> None:
        self.page.locator(f"#{dropdown_id} input").click()
        self.page.get_by_role("option", name=option, exact=exact).click()

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
        _screenshot_if_failed(page, request)
        page.close()


def _screenshot_if_failed(page: Any, request: pytest.FixtureRequest) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot = Path(os.environ.get("STUDIO_BROWSER_ARTIFACTS", "/tmp")) / f"{request.node.name}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failed page: {shot}")
        except Exception as exc:  # the page may be gone; the test failure matters more
            print(f"no screenshot: {exc}")


# Like _IDLE_JS, for the Code tab's outputs.
_CODE_IDLE_JS = """() => document.querySelector('#code-chatbot [data-testid=status-tracker]') !== null
    && ['#code-chatbot', '#code-conversation', '#code-notice', '#code-view', '#code-check',
        '#code-explanation', '#code-mode', '#code-input'].every(sel => {
        const tracker = document.querySelector(sel + ' [data-testid=status-tracker]');
        return tracker === null || tracker.classList.contains('hide');
    })"""


class CodePage(ChatPage):
    """The Code tab as a user sees it (opened from the Chat tab the page starts on)."""

    def _loaded(self) -> None:
        super()._loaded()  # the Chat tab's load event, which also fills the Code sessions list
        self.page.get_by_role("tab", name="Code", exact=True).click()
        self.page.locator("#code-input textarea").wait_for()
        latest = self.studio.conversations(tab="code")
        if latest:  # the Code tab's load event reopens its latest session too
            from playwright.sync_api import expect

            expect(self.page.locator("#code-conversation input")).to_have_value(latest[0][1])
        self.wait_idle()

    def wait_idle(self) -> None:
        self.page.wait_for_function(_CODE_IDLE_JS, timeout=TIMEOUT_MS)

    @property
    def user_messages(self) -> Any:
        return self.page.locator("#code-chatbot [data-testid=user]")

    @property
    def bot_messages(self) -> Any:
        return self.page.locator("#code-chatbot [data-testid=bot]")

    def bot_buttons(self, index: int = -1) -> Any:
        bars = self.page.locator("#code-chatbot .message-buttons-left")
        return bars.last if index == -1 else bars.nth(index)

    def conversation_id(self) -> int | None:
        return self._conversation_titled(self.page.locator("#code-conversation input").input_value(), "code")

    def code_text(self) -> str:
        """The code view's text, line by line as CodeMirror shows it."""
        return str(
            self.page.evaluate(
                "() => Array.from(document.querySelectorAll('#code-view .cm-line'))"
                ".map(line => line.textContent).join('\\n')"
            )
        )

    def new_session(self) -> None:
        from playwright.sync_api import expect

        self.page.locator("#code-new").click()
        expect(self.page.locator("#code-chatbot .message-row")).to_have_count(0)
        expect(self.page.locator("#code-conversation input")).to_have_value("")
        self.wait_idle()

    def send(self, text: str) -> Any:
        def click() -> None:
            self.page.locator("#code-input textarea").fill(text)
            self.page.locator("#code-run").click()

        return self.run(click)

    def download(self) -> tuple[str, str]:
        """Click Download: (the suggested file name, the file's text)."""
        with self.page.expect_download() as info:
            self.page.locator("#code-download").click()
        download = info.value
        return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")

    def code_conversations(self) -> list[int]:
        return [cid for cid, _ in self.studio.conversations(tab="code")]


@pytest.fixture
def code(browser_context: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[CodePage]:
    """A fresh tab on the app with the Code tab open on a new session."""
    page = browser_context.new_page()
    code_page = CodePage(page, server)
    try:
        code_page.open()
        code_page.new_session()
        yield code_page
    finally:
        ScriptedChat.gate = None
        _screenshot_if_failed(page, request)
        page.close()


# Like _IDLE_JS, for the Image tab's outputs.
_IMAGE_IDLE_JS = """() => document.querySelector('#image-gallery [data-testid=status-tracker]') !== null
    && ['#image-gallery', '#image-notice', '#image-info', '#image-init', '#image-prompt', '#image-seed',
        '#image-model', '#image-model-note'].every(sel => {
        const tracker = document.querySelector(sel + ' [data-testid=status-tracker]');
        return tracker === null || tracker.classList.contains('hide');
    })"""


class ImagePage(ChatPage):
    """The Image tab as a user sees it (opened from the Chat tab the page starts on), on `tiny-sd`."""

    def _loaded(self) -> None:
        from playwright.sync_api import expect

        super()._loaded()  # the Chat tab's load event; the Image tab's (gallery, blank seed) runs with it
        self.page.get_by_role("tab", name="Image", exact=True).click()
        self.page.locator("#image-prompt textarea").wait_for()
        self.wait_idle()
        expect(self.page.locator("#image-seed input")).to_have_value("")  # the load event blanked it
        expect(self.grid_images).to_have_count(len(self.studio.recent_images()))

    def wait_idle(self) -> None:
        self.page.wait_for_function(_IMAGE_IDLE_JS, timeout=TIMEOUT_MS)

    # -- controls ----------------------------------------------------------------------------------
    def slider(self, label: str) -> Any:
        """The number box of the slider labelled `label` (Steps, Guidance, Width, Height, Images)."""
        return self.page.get_by_label(f"number input for {label}", exact=True).filter(visible=True)

    def set_slider(self, label: str, value: float) -> None:
        from playwright.sync_api import expect

        box = self.slider(label)
        box.fill(str(value))
        box.press("Enter")
        expect(box).to_have_value(str(value))

    def generate(self, prompt: str | None = None, **sliders: float) -> list[Any]:
        """Set the prompt and sliders (by label), click Generate; the new rows once stored and shown."""
        if prompt is not None:
            self.page.locator("#image-prompt textarea").fill(prompt)
        for label, value in sliders.items():
            self.set_slider(label, value)
        last = self.last_image_id()
        self.page.locator("#image-generate").click()
        self.wait_until(lambda: self.last_image_id() > last, "the image generation rows")
        self.wait_idle()
        return self.image_rows(after=last)

    # -- the gallery -------------------------------------------------------------------------------
    @property
    def grid_images(self) -> Any:
        """The gallery's grid pictures, in gallery order (their alt text is the caption)."""
        return self.page.locator("#image-gallery .grid-container button.thumbnail-item img")

    def grid_captions(self) -> list[str]:
        return [str(alt) for alt in self.grid_images.evaluate_all("imgs => imgs.map(img => img.alt)")]

    def select(self, generation_id: int) -> None:
        """Click the picture of a generation: in the grid, or in the strip under an open preview."""
        from playwright.sync_api import expect

        gallery = self.page.locator("#image-gallery")
        caption = f'^="#{generation_id} "'  # captions read "#<generation id> seed <seed>"
        if gallery.locator(".preview").count():  # the strip's pictures carry the caption as their title
            thumb = gallery.locator(f".thumbnails button.thumbnail-item:has(img[title{caption}])")
        else:
            thumb = gallery.locator(f".grid-container button.thumbnail-item:has(img[alt{caption}])")
        thumb.click()
        expect(gallery.locator('[data-testid="detailed-image"]')).to_have_attribute(
            "alt", re.compile(rf"^#{generation_id} ")
        )
        expect(self.page.locator("#image-info")).to_contain_text(f"#{generation_id} ")

    # -- storage -----------------------------------------------------------------------------------
    def image_rows(self, *, after: int = 0) -> list[Any]:
        """Image generation rows with ids above `after`, oldest first."""
        from sqlmodel import Session

        from studio import storage

        with Session(self.studio.engine) as session:
            rows = storage.list_generations(session, tab="image", limit=1000)
        return sorted((row for row in rows if (row.id or 0) > after), key=lambda row: row.id)

    def last_image_id(self) -> int:
        rows = self.image_rows()
        return rows[-1].id if rows else 0

    def file_of(self, row: Any) -> Path:
        assert len(row.files) == 1, row.files
        return Path(self.studio.media_path(row.files[0]))


@pytest.fixture
def image(browser_context: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[ImagePage]:
    """A fresh tab on the app with the Image tab open."""
    page = browser_context.new_page()
    image_page = ImagePage(page, server)
    try:
        image_page.open()
        yield image_page
    finally:
        _screenshot_if_failed(page, request)
        page.close()
