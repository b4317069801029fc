"""The Gradio app: `build_app(studio)` composes one `build_<tab>_tab(studio)` per file; `launch` serves it.

Owns: the page layout, the shared GPU queue and the launch settings (monitoring off, the data dir
blocked from file routes, upload size limit). Ignores: storage, models and torch; handlers only
translate between Gradio values and `Studio` calls.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from studio.service import Studio
from studio.ui.audio import build_audio_tab
from studio.ui.chat import build_chat_tab
from studio.ui.code import build_code_tab
from studio.ui.image import build_image_tab
from studio.ui.library import build_library_tab
from studio.ui.models import build_models_tab

log = logging.getLogger(__name__)

TITLE = "Studio"


def build_app(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}: create with models running on your own machine")
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                build_chat_tab(studio, app)
            with gr.Tab("Code", id="code"):
                build_code_tab(studio, app)
            with gr.Tab("Image", id="image"):
                build_image_tab(studio, app)
            with gr.Tab("Audio", id="audio"):
                build_audio_tab(studio, app)
            with gr.Tab("Models", id="models") as models_tab:
                build_models_tab(studio, app, models_tab)
            # Last: it fills the other tabs' controls (found by elem id) for re-runs and switches tabs.
            with gr.Tab("Library", id="library"):
                build_library_tab(studio, app, tabs)
    # Model-running events share the "generation" id (ui/common.py); the manager serialises each device.
    app.queue(default_concurrency_limit=1, max_size=64)
    return app


def launch(app: gr.Blocks, studio: Studio, *, host: str, port: int, block: bool = True) -> Any:
    """Serve the app; returns (fastapi app, local url, share url) when not blocking."""
    settings = studio.settings
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    # Only generated media is served; the database, the model cache and the config never are.
    database = settings.database_url.removeprefix("sqlite:///")
    blocked = [database, f"{database}-wal", f"{database}-shm"]
    blocked += [str(settings.model_cache), str(studio.config.path)]
    result = app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        enable_monitoring=False,
        allowed_paths=[str(settings.media_dir)],
        blocked_paths=blocked,
        max_file_size="25mb",
        show_error=True,
        quiet=not block,
        footer_links=["api"],
    )
    return result
