"""The Gradio app: `build_app(studio)` composes one `build_<tab>_tab(studio)` per file; `launch` serves it.

Owns: the page layout, the shared GPU queue and the launch settings (logins, share link, monitoring
off, only the media dir served, upload and queue size limits, the guard middleware of
`studio.security.guard`). Ignores: storage, models and torch; handlers only
translate between Gradio values and `Studio` calls.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from studio.security import guard
from studio.security.sessions import SessionTokens
from studio.service import Studio
from studio.ui.audio import build_audio_tab
from studio.ui.chat import build_chat_tab
from studio.ui.code import build_code_tab
from studio.ui.entry import guard_inputs
from studio.ui.image import build_image_tab
from studio.ui.library import build_library_tab
from studio.ui.models import build_models_tab
from studio.ui.safety import build_safety_panel
from studio.ui.train import build_train_tab

log = logging.getLogger(__name__)

TITLE = "Studio"
MAX_UPLOAD = "25mb"  # init images are refused above 20 MB by the service; this stops bigger bodies early


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
                build_safety_panel(studio, app)
            with gr.Tab("Train", id="train"):  # after Chat and Code: it refreshes their model lists
                build_train_tab(studio, app)
            # Last: it fills the other tabs' controls (found by elem id) for re-runs and switches tabs.
            with gr.Tab("Library", id="library"):
                build_library_tab(studio, app, tabs)
    # Model-running events share the "generation" id (ui/conversation.py); the manager serialises each device.
    app.queue(default_concurrency_limit=1, max_size=64)
    guard_inputs(app)  # every event's raw values: size and type first (ui/entry.py)
    return app


def launch(
    app: gr.Blocks,
    studio: Studio,
    *,
    host: str,
    port: int,
    block: bool = True,
    accounts: Any = None,
    share: bool = False,
    queue_size: int | None = None,
    rate_limit: Any = "env",
    logins: Any = "default",
) -> Any:
    """Serve the app; returns (fastapi app, local url, share url or None) when not blocking.

    `accounts` (a `security.accounts.UserStore`) turns on logins; `share` asks Gradio for a public link;
    `rate_limit` is a `studio.security.guard.RateLimiter`, None for none, or "env" for $STUDIO_RATE_LIMIT;
    `logins` a `studio.security.limits.LoginGate` ("default": the built-in login limits).
    """
    studio.accounts = accounts
    studio.recover_interrupted()
    # The studio's temp files and Gradio's upload cache: swept now and on a schedule (by age and size).
    studio.start_janitor([Path(gr.utils.get_upload_folder()), Path(tempfile.gettempdir()) / "studio-code"])
    if queue_size is not None:
        app.queue(default_concurrency_limit=1, max_size=queue_size)
    exposed = share or host not in ("127.0.0.1", "localhost", "::1")
    studio.set_exposed(exposed)  # the safety policy's default: block when exposed, flag for one local user
    policy = guard.policy_for(
        studio, auth=accounts is not None, exposed=exposed, rate_limit=rate_limit, host=host, logins=logins
    )
    settings = studio.settings
    # uvicorn believes X-Forwarded-For from the addresses in FORWARDED_ALLOW_IPS (127.0.0.1 unless set), so
    # any local process, or a proxy that passes the header on, could pick the address the login limits
    # count. Only STUDIO_TRUSTED_PROXIES are believed; Gradio makes uvicorn's Config without the option.
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxies)
    result = app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        auth=accounts.login if accounts is not None else None,  # hashes in a worker pool, off the event loop
        auth_message="Log in with the account an admin made for you (`studio users add NAME`).",
        share=share,
        enable_monitoring=False,
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        strict_cors=True,
        allowed_paths=[str(studio.settings.media_dir)],
        blocked_paths=guard.blocked_paths(studio),
        max_file_size=MAX_UPLOAD,
        app_kwargs={"middleware": [Middleware(guard.Guard, policy=policy)]},
        show_error=True,
        quiet=True,
        footer_links=["api"],
    )
    fastapi, _, share_url = result
    if policy.hosts is not None:
        policy.hosts.add_url(share_url)  # the share link's host reaches us through Gradio's tunnel
    if accounts is not None:  # sessions end with their account, password, logout or lifetimes
        fastapi.tokens = SessionTokens(accounts, idle=settings.session_idle, absolute=settings.session_max)
    if block:
        log.info("serving on %s", result[1])
        app.block_thread()
    return result
