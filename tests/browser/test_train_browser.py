"""The Train tab in a real browser: a tiny SFT run started from the tab on votes made through the service,
its progress and loss curve moving while it trains, then a chat with the new variant, which the Chat tab
lists without a reload (the real transformers backend on `tiny`, the adapter on its shared base)."""

from __future__ import annotations

import re
from typing import Any

from .conftest import ChatPage, Server
from .shared import BROWSER, expect

pytestmark = BROWSER

STEPS = 40
STEP = re.compile(rf"step (\d+) of {STEPS}")


def test_a_tiny_run_from_the_train_tab_then_a_chat_with_the_variant(chat: ChatPage, server: Server) -> None:
    studio = server.studio
    made: list[int] = []
    variant = None
    for i in range(5):  # liked answers: SFT's data
        *_, turn = studio.chat(model_id="tiny", message=f"Something to learn, number {i}.")
        studio.rate(turn.generation_id, "up")
        made.append(turn.conversation_id)
    page: Any = chat.page
    try:
        page.get_by_role("tab", name="Train", exact=True).click()
        page.locator("#train-method").get_by_text("SFT: liked answers").click()
        page.locator("#train-settings").get_by_text("Settings").click()
        max_steps = page.locator("#train-max-steps input")
        for _ in range(20):  # the accordion's first opening may mount the box again, at 0, after a fill
            max_steps.fill(str(STEPS))
            max_steps.press("Tab")  # commit the number before Start reads it
            page.wait_for_timeout(250)
            if max_steps.input_value() == str(STEPS):
                break
        expect(max_steps).to_have_value(str(STEPS))
        page.locator("#train-start").click()
        progress = page.locator("#train-progress")
        expect(progress).to_contain_text(STEP)
        seen = {int(m.group(1))} if (m := STEP.search(progress.inner_text())) else set()
        while "is ready" not in (text := progress.inner_text()):  # the step count moves as it trains
            if m := STEP.search(text):
                seen.add(int(m.group(1)))
            page.wait_for_timeout(50)
        assert len(seen) >= 2 and max(seen) > min(seen), f"the progress never moved: {sorted(seen)}"
        found = re.search(r"(tiny\+sft-\d+)", progress.inner_text())
        assert found, progress.inner_text()
        variant = found.group(1)
        expect(page.locator("#train-loss").locator("canvas, svg").first).to_be_visible()  # the curve drawn
        expect(page.locator("#train-metrics")).to_contain_text("Latest: loss")
        # The Chat tab has the variant already (no reload), and it answers through the real backend.
        page.get_by_role("tab", name="Chat", exact=True).click()
        chat.choose("model", re.compile(re.escape(variant)))
        row = chat.send("Hello, variant")
        assert row.model_id == variant and row.status == "ok", row.error
        expect(chat.user_messages.last).to_contain_text("Hello, variant")  # random weights: any reply
    finally:
        for conversation_id in made:  # leave the shared server as the other tests expect it
            studio.delete_conversation(conversation_id)
        if variant:
            studio.delete_variant(variant)
