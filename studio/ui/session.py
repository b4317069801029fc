"""Stopping a tab's running job: its Stop button, and its browser tab closing.

Owns: the per-session run key, the Stop button that cancels by it, which Gradio session runs which job (by
run key) and the `unload` event that cancels them. Gradio closes a run's generator only when the run sends
its next update, and a model can go seconds without one (the streamer holds text until a word ends; a long
prefill; a slow denoising step or a MusicGen window). The page's heartbeat connection drops at once when
the tab closes and fires `unload`, which stops the job then.
Ignores: how the job stops (the service's `cancel`).
"""

from __future__ import annotations

import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from studio.service import Studio

CLOSED_REASON = "the browser stopped listening"


class StopOnClose:
    """Decorate a tab's generator handler (it takes `request` and the run's `key`) with `track`."""

    def __init__(self, studio: Studio, app: gr.Blocks) -> None:
        self.studio = studio
        self._running: dict[str, set[str]] = {}  # Gradio session hash -> run keys of its running jobs
        self._lock = threading.Lock()
        app.unload(self.closed)

    def track(self, handler: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        signature = inspect.signature(handler)

        # functools.wraps keeps the handler's signature visible to Gradio (it injects gr.Request by it).
        @functools.wraps(handler)
        def tracked(*args: Any, **kwargs: Any) -> Iterator[Any]:
            named = signature.bind_partial(*args, **kwargs).arguments
            session = getattr(named.get("request"), "session_hash", None)
            key = named.get("key")
            if session and key:
                with self._lock:
                    self._running.setdefault(session, set()).add(key)
            try:
                yield from handler(*args, **kwargs)
            finally:
                if session and key:
                    with self._lock:
                        self._running.get(session, set()).discard(key)

        return tracked

    def closed(self, request: gr.Request) -> None:
        with self._lock:
            keys = self._running.pop(request.session_hash or "", set())
        for key in keys:
            self.studio.cancel(key, reason=CLOSED_REASON)


def run_key_state(app: gr.Blocks) -> gr.State:
    """A fresh run key per browser session, the handle Stop and a closed tab cancel a job by.

    Set by a private load event: `gr.State(callable)` would publish its load function as a public
    `/lambda_N` API endpoint. API callers get no key; the service then makes one per run."""
    state = gr.State(None)
    app.load(lambda: uuid.uuid4().hex, None, state, api_visibility="private", queue=False)
    return state


def stop_button(studio: Studio, button: Any, run_key: gr.State) -> None:
    """Make `button` cancel this session's running job. Not queued: it would wait behind the job it stops."""

    def stop(key: str) -> None:
        studio.cancel(key)

    button.click(stop, run_key, None, queue=False, api_visibility="private")
