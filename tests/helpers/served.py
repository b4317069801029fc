"""The real app served on loopback, for tests that call it as API clients and browsers do.

Owns: writing a models.yaml (`write_models`), a Studio over one with its own data folder (`studio_at`), and
the real Gradio app (`studio.ui.build_app` + `launch`) served for a Studio on a free port (`serving`).
Ignores: what the tests call and check. Gradio is imported only when a test serves the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import Settings
from studio.service import Studio
from tests.helpers.net import free_port


def write_models(folder: Path, body: str) -> Path:
    path = folder / "models.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def studio_at(folder: Path, models: str) -> Studio:
    """A Studio over the models.yaml `models`, written in `folder`, with its data in `folder/d`."""
    return Studio.from_settings(
        Settings.from_env(models_file=write_models(folder, models), data_dir=folder / "d")
    )


@dataclass
class Server:
    url: str  # http://127.0.0.1:<port>/
    fastapi: Any  # the FastAPI app Gradio serves (its routes, its middleware)


@contextmanager
def serving(studio: Studio, **launch_options: Any) -> Iterator[Server]:
    """Serve the real app for `studio` until the block ends (`launch_options`: queue_size, rate_limit,
    accounts...); the studio stays the caller's to close."""
    from studio.ui import build_app, launch

    app = build_app(studio)
    port = free_port()
    fastapi, _, _ = launch(app, studio, host="127.0.0.1", port=port, block=False, **launch_options)
    try:
        yield Server(f"http://127.0.0.1:{port}/", fastapi)
    finally:
        app.close()


@contextmanager
def served_studio(folder: Path, models: str, **launch_options: Any) -> Iterator[tuple[Studio, str]]:
    """A Studio over `models` (`studio_at`) served (`serving`): (studio, url); both closed at the end."""
    studio = studio_at(folder, models)
    try:
        with serving(studio, **launch_options) as server:
            yield studio, server.url
    finally:
        studio.close()


@contextmanager
def served_with_logins(
    folder: Path,
    models: str,
    passwords: dict[str, str],
    *,
    settings: dict[str, Any] | None = None,
    **launch_options: Any,
) -> Iterator[tuple[Studio, Server, Path]]:
    """A Studio over `models` served behind logins: `passwords`' accounts in `folder`/users.json ("carol"
    is an admin), `settings` replaced before the app is built, `rate_limit` none unless given. Yields
    (studio, server, users file); the studio is closed at the end."""
    import dataclasses

    from studio.security.accounts import UserStore, add_user

    users = folder / "users.json"
    for name, password in passwords.items():
        add_user(users, name, password, admin=name == "carol")
    studio = studio_at(folder, models)
    if settings:
        studio.settings = dataclasses.replace(studio.settings, **settings)
    launch_options.setdefault("rate_limit", None)
    try:
        with serving(studio, accounts=UserStore(users), **launch_options) as server:
            yield studio, server, users
    finally:
        studio.close()
