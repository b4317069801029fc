"""HTML and script in a model's answer, in a real browser behind a login: shown or dropped, never run.

Its own server (logins on, through `studio.ui.launch` and the guard middleware), in the tier's shared
Chromium. The model is a stand-in that answers
with hostile markup; the page is checked for any sign it ran (a global set, a dialog, a live element).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from studio.backends import Backend, Request, TextDelta, register, unregister
from studio.backends.params import ChatParams
from tests.browser.shared import BROWSER
from tests.helpers.fakes import fake_weights

pytestmark = BROWSER

HOSTILE = (
    "Here you go: <script>window.__xss = 'script'</script>"
    '<img src="x" onerror="window.__xss = \'img\'">'
    "<iframe srcdoc=\"<script>parent.__xss='iframe'</script>\"></iframe>"
    '<a href="javascript:window.__xss=\'link\'" id="evil-link">click me</a>'
    "<svg onload=\"window.__xss = 'svg'\"></svg>"
    "\n\n```html\n<script>alert('shown as code')</script>\n```\n"
)


class HostileChat(Backend):
    """Answers every prompt with HOSTILE, as a model could (prompt injection, training data)."""

    kind = "hostile-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[TextDelta, None, None]:
        yield TextDelta(HOSTILE)


@pytest.fixture(scope="module")
def xss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from studio import Settings
    from studio.security.accounts import UserStore, add_user
    from studio.service import Studio
    from tests.helpers.served import serving

    register(HostileChat)
    folder = tmp_path_factory.mktemp("xss")
    (folder / "models.yaml").write_text(
        f"models:\n  - id: hostile\n    tabs: [chat, code]\n    backend: hostile-chat\n    source: {folder}\n"
    )
    add_user(folder / "users.json", "alice", "alice-password")
    studio = Studio.from_settings(
        Settings.from_env(models_file=folder / "models.yaml", data_dir=folder / "d")
    )
    try:
        with serving(studio, accounts=UserStore(folder / "users.json")) as served:
            yield served.url, studio
    finally:
        studio.close()
        unregister(HostileChat.kind)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A page of the tier's shared Chromium (one Playwright per session: a second one cannot start)."""
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()


def test_html_and_script_in_model_output_are_not_executed(xss_server: tuple[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    url, studio = xss_server
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    # The login page works through the guard (which empties the API description it would embed).
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill("wrong-password")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
    page.get_by_label("username").fill("alice")  # the form forgets the name after a failure
    page.get_by_label("password").fill("alice-password")
    page.get_by_role("button", name="Login").click()
    page.locator("#message textarea").fill("say something nasty")
    page.locator("#send").click()
    bot = page.locator("#chatbot [data-testid=bot]").last
    expect(bot).to_contain_text("Here you go")
    expect(bot).to_contain_text("alert('shown as code')")  # code is shown as text
    page.wait_for_timeout(500)  # time for an onerror / onload handler to fire, were one left
    chat = page.locator("#chatbot")
    assert page.evaluate("() => window.__xss") is None and not dialogs
    assert chat.locator("script, iframe, [onerror], [onload]").count() == 0
    assert chat.locator("a[href^='javascript:']").count() == 0
    # Stored as the model wrote it (nothing is lost), only rendered safely.
    assert studio.history(user="alice")[0]["text"] == HOSTILE


HOSTILE_PROMPT = "make it nasty <img src=x onerror=\"window.__xss='prompt'\"><script>window.__xss=1</script>"
LIVE = "script, iframe, [onerror], [onload], a[href^='javascript:']"


def test_html_and_script_in_the_code_and_library_panes_are_not_executed(
    xss_server: tuple[str, Any], page: Any
) -> None:
    """The Code tab's panes (conversation, code view, explanation) and the Library's table and details show
    a hostile answer and a hostile prompt as text or drop the markup; nothing runs."""
    from playwright.sync_api import expect

    url, studio = xss_server
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.locator("#message textarea").or_(page.get_by_label("username")).first.wait_for()
    if page.get_by_label("username").count():  # the shared browser may hold alice's login already
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill("alice-password")
        page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Code", exact=True).click()
    page.locator("#code-input textarea").fill(HOSTILE_PROMPT)
    page.locator("#code-run").click()
    expect(page.locator("#code-chatbot [data-testid=bot]").last).to_contain_text("Here you go")
    expect(page.locator("#code-view .cm-content")).to_contain_text("<script>alert('shown as code')</script>")
    page.wait_for_timeout(500)  # time for an onerror / onload handler to fire, were one left
    for pane in ("#code-chatbot", "#code-view", "#code-explanation"):
        assert page.locator(pane).locator(LIVE).count() == 0, pane

    page.get_by_role("tab", name="Library", exact=True).click()
    page.locator("#library-search textarea").fill("nasty")
    page.locator("#library-find").click()
    expect(page.locator("#library-count")).to_contain_text("1 generation(s)")
    page.locator("#library-table").get_by_test_id("cell-0-6").click()
    expect(page.locator("#library-details")).to_contain_text("Here you go")
    page.wait_for_timeout(500)
    for pane in ("#library-table", "#library-details"):
        assert page.locator(pane).locator(LIVE).count() == 0, pane
    assert page.evaluate("() => window.__xss") is None and not dialogs
    (turn,) = studio.history(user="alice", tab="code")
    assert turn["text"] == HOSTILE, "stored as the model wrote it"
