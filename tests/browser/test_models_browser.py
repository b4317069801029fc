"""The Models tab in a real browser: each model's status in the table, Load with progress, Unload, and
reopening the tab showing what other tabs loaded (the real transformers backend on `tiny`)."""

from __future__ import annotations

from typing import Any

from .conftest import ChatPage, Server
from .shared import BROWSER, expect

pytestmark = BROWSER


def _row(page: Any, model_id: str) -> Any:
    # Gradio's Dataframe draws its rows as ARIA grid rows (the <table> inside is a hidden sizer).
    return page.locator("#models-table [role=row]").filter(has=page.get_by_text(model_id, exact=True))


def test_models_tab_loads_and_unloads_a_model(browser_context: Any, server: Server) -> None:
    server.studio.manager.unload("tiny")
    page = browser_context.new_page()
    try:
        models = ChatPage(page, server)
        models.open()
        page.get_by_role("tab", name="Models", exact=True).click()
        expect(_row(page, "tiny")).to_contain_text("ready")
        models.choose("models-choice", "tiny", exact=True)
        page.locator("#models-load").click()
        expect(page.locator("#models-progress")).to_contain_text("tiny loaded in")
        expect(_row(page, "tiny")).to_contain_text("loaded")
        expect(page.locator("#memory-summary")).to_contain_text("RAM:")
        assert "tiny" in server.studio.manager.loaded()
        page.locator("#models-unload").click()
        expect(page.locator("#models-progress")).to_contain_text("tiny unloaded")
        expect(_row(page, "tiny")).to_contain_text("ready")
        assert "tiny" not in server.studio.manager.loaded()
        # A chat in another tab loads the model; coming back to the Models tab shows it.
        server.studio.manager.preload("tiny")
        page.get_by_role("tab", name="Chat", exact=True).click()
        page.get_by_role("tab", name="Models", exact=True).click()
        expect(_row(page, "tiny")).to_contain_text("loaded")
    finally:
        page.close()
