"""A closed browser tab stops that tab's running job (studio/ui/closing.py); the browser proof for Chat is
tests/browser/test_close_tab_browser.py, this checks the bookkeeping every tab shares."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gradio as gr

from studio.ui.session import CLOSED_REASON, StopOnClose


class Recorder:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str | None]] = []

    def cancel(self, key: str, *, reason: str | None = None) -> bool:
        self.cancelled.append((key, reason))
        return True


def test_closing_a_tab_cancels_only_its_own_running_jobs() -> None:
    studio = Recorder()
    with gr.Blocks() as app:
        closing = StopOnClose(studio, app)  # type: ignore[arg-type]

    @closing.track
    def generate(request: gr.Request, text: str, key: str, *values: Any) -> Iterator[str]:
        yield f"{text} 1"
        yield f"{text} 2"

    tab_a, tab_b = SimpleNamespace(session_hash="a"), SimpleNamespace(session_hash="b")
    run_a = generate(tab_a, "hi", "key-a", 0.5)
    run_b = generate(tab_b, "yo", "key-b")
    assert next(run_a) == "hi 1" and next(run_b) == "yo 1"  # both running
    closing.closed(tab_a)  # type: ignore[arg-type]
    assert studio.cancelled == [("key-a", CLOSED_REASON)]  # B's job goes on
    assert list(run_b) == ["yo 2"]
    closing.closed(tab_b)  # type: ignore[arg-type]
    assert studio.cancelled == [("key-a", CLOSED_REASON)]  # B's job had finished: nothing to stop
    run_a.close()


def test_gradio_still_sees_the_handlers_own_signature() -> None:
    with gr.Blocks() as app:
        closing = StopOnClose(Recorder(), app)  # type: ignore[arg-type]

        @closing.track
        def generate(request: gr.Request, text: str, key: str) -> Iterator[str]:
            yield text

        box, key, out = gr.Textbox(), gr.State("k"), gr.Textbox()
        gr.Button().click(generate, [box, key], out)
    fn = app.fns[max(app.fns)]  # the click event: Gradio injects gr.Request by the wrapped signature
    assert fn.inputs == [box, key] and fn.fn is generate
    assert list(inspect.signature(generate).parameters) == ["request", "text", "key"]
