"""What belongs to whom on the served app with logins (fake backends, real Gradio server, real HTTP):
Gradio session hashes, uploads and export zips, loading models, the reserved name `local`, cookies, file
modes, a users file gone bad, and a full database disk.

Each test is an attack or fault that the first version let through: bob read alice's live stream with her
session hash, fetched her uploads and export zips, and unloaded the model she used; an account named
`local` took over the CLI's data; the database and media were readable by every local account; a full
disk showed SQLAlchemy's text.
"""

from __future__ import annotations

import io
import json
import stat
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlalchemy import event, text

from studio import cli
from studio.errors import StudioError
from studio.security.accounts import UsersError, UserStore, add_user
from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.sampling import SAMPLING
from tests.helpers.served import served_with_logins, serving, studio_at

SLOW = [False, 0.7, 0.9, 50, 1.0, 4096, 1, None]  # the fake's SLOW words: about 20 s unless stopped
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3"}
IMAGE_MODEL = """
  - id: fake-image
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {steps: 2, width: 64, height: 64}
"""


@dataclass
class Served:
    studio: Studio
    url: str
    users: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("owners")
    with served_with_logins(folder, FAKE_MODELS + IMAGE_MODEL, PASSWORDS) as (studio, server, users):
        yield Served(studio, server.url.rstrip("/"), users)


def login(served: Served, name: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=30)
    reply = client.post("/login", data={"username": name, "password": PASSWORDS[name]})
    assert reply.status_code == 200, reply.text
    return client


def api(served: Served, name: str, **options: Any) -> Client:
    return Client(served.url + "/", auth=(name, PASSWORDS[name]), verbose=False, **options)


def test_a_session_hash_is_only_for_the_user_who_first_used_it(served: Served) -> None:
    alice = api(served, "alice")
    job = alice.submit("alice's live secret", None, "fake", "", *SLOW, api_name="/chat")
    try:
        deadline = time.monotonic() + 30
        while not served.studio._runs and time.monotonic() < deadline:  # her answer is streaming
            time.sleep(0.02)
        bob = login(served, "bob")
        stolen = alice.session_hash
        assert bob.get(f"/gradio_api/queue/data?session_hash={stolen}").status_code == 403
        assert bob.get(f"/gradio_api/heartbeat/{stolen}").status_code == 403
        joined = bob.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": stolen})
        assert joined.status_code == 403
        assert bob.post("/gradio_api/cancel", json={"session_hash": stolen, "fn_index": 0}).status_code == 403
        # Bob's own hashes work as before.
        mine = bob.post(
            "/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "bobs-own"}
        )
        assert mine.status_code != 403
    finally:
        for key in list(served.studio._runs):
            served.studio.cancel(key)
        job.result(timeout=30) if not job.done() else None


def test_uploads_are_served_only_to_their_uploader(served: Served) -> None:
    alice, bob = login(served, "alice"), login(served, "bob")
    reply = alice.post("/gradio_api/upload", files={"files": ("notes.txt", b"alice's private notes")})
    assert reply.status_code == 200
    path = reply.json()[0]
    assert alice.get(f"/gradio_api/file={path}").content == b"alice's private notes"
    assert bob.get(f"/gradio_api/file={path}").status_code == 403


def rated_turn(studio: Studio, user: str, message: str) -> int:
    final = list(studio.chat(model_id="fake", message=message, user=user))[-1]
    assert final.status == "ok" and final.generation_id
    studio.rate(final.generation_id, "up", user=user)
    return final.generation_id


def zip_text(content: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())


def test_exports_hold_the_users_own_votes_and_are_served_only_to_them(served: Served, tmp_path: Path) -> None:
    studio = served.studio
    rated_turn(studio, "alice", "alice exports this")
    rated_turn(studio, "bob", "bob keeps this")
    note, file = api(served, "alice", download_files=False).predict(
        "sft", "", "", 0, False, api_name="/export"
    )
    assert note.startswith("Exported"), note
    content = login(served, "alice").get(f"/gradio_api/file={file['path']}")
    assert content.status_code == 200
    exported = zip_text(content.content)
    assert "alice exports this" in exported and "bob keeps this" not in exported
    assert login(served, "bob").get(f"/gradio_api/file={file['path']}").status_code == 403
    # Everyone's data: the admin only.
    with pytest.raises(StudioError, match="only an admin"):
        studio.export("sft", tmp_path / "bob", all_users=True, user="bob")
    studio.export("sft", tmp_path / "carol", all_users=True, user="carol")
    everything = "\n".join(p.read_text() for p in (tmp_path / "carol").rglob("*.jsonl"))
    assert "alice exports this" in everything and "bob keeps this" in everything
    own = "\n".join(p.read_text() for p in _exported(studio, tmp_path / "alice", "alice"))
    assert "alice exports this" in own and "bob keeps this" not in own


def _exported(studio: Studio, folder: Path, user: str) -> list[Path]:
    studio.export("sft", folder, user=user)
    return list(folder.rglob("*.jsonl"))


def test_only_admins_load_and_unload_models(served: Served) -> None:
    bob, carol = api(served, "bob"), api(served, "carol")
    progress, *_ = bob.predict("fake-2", api_name="/load_model")
    assert "only an admin" in progress and "fake-2" not in served.studio.manager.loaded()
    progress, *_ = carol.predict("fake-2", api_name="/load_model")
    assert "fake-2" in served.studio.manager.loaded(), progress
    progress, *_ = bob.predict("fake-2", api_name="/unload_model")
    assert "only an admin" in progress and "fake-2" in served.studio.manager.loaded()
    progress, *_ = carol.predict("fake-2", api_name="/unload_model")
    assert "unloaded" in progress and "fake-2" not in served.studio.manager.loaded()


def test_the_login_cookie_is_samesite_lax(served: Served) -> None:
    reply = httpx.post(f"{served.url}/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    cookies = reply.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all("samesite=lax" in c.lower() for c in cookies), cookies
    assert reply.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("name", ["local", "LOCAL", "Local"])
def test_the_account_name_local_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsersError, match="reserved"):
        add_user(tmp_path / "users.json", name, "long enough password")
    (tmp_path / "users.json").write_text(json.dumps({"users": {name: {"salt": "00", "hash": "00"}}}))
    with pytest.raises(UsersError, match="reserved"):
        UserStore(tmp_path / "users.json")


def test_database_media_and_backups_are_private(tmp_path: Path) -> None:
    studio = studio_at(tmp_path, FAKE_MODELS + IMAGE_MODEL)
    try:
        final = list(studio.image(model_id="fake-image", prompt="a cat", user="alice"))[-1]
        assert final.status == "ok"
        settings = studio.settings
        database = Path(settings.database_url.removeprefix("sqlite:///"))
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
        assert mode(settings.data_dir) == 0o700 and mode(settings.media_dir) == 0o700
        assert mode(database) == 0o600 and mode(database.with_name(database.name + "-wal")) == 0o600
        assert mode(final.files[0]) == 0o600
        backup = tmp_path / "backup.db"
        assert cli.main(["backup", str(backup), "--data-dir", str(settings.data_dir)]) == 0
        assert mode(backup) == 0o600
    finally:
        studio.close()


def test_a_full_database_disk_gives_a_short_message(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    add_user(users, "alice", PASSWORDS["alice"])
    studio = studio_at(tmp_path, FAKE_MODELS)
    with studio.engine.connect() as connection:
        pages = connection.execute(text("PRAGMA page_count")).scalar()

    @event.listens_for(studio.engine, "connect")
    def _no_room(dbapi_connection: Any, _record: Any) -> None:  # the file may not grow: SQLITE_FULL
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    studio.engine.dispose()
    try:
        with serving(studio, accounts=UserStore(users), rate_limit=None) as server:
            alice = Client(server.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
            with pytest.raises(Exception) as raised:
                alice.predict("x" * 90_000, None, "fake", "", *SAMPLING, api_name="/chat")
        message = str(raised.value)
        assert "disk is full" in message, message
        assert not any(word in message for word in ("sqlite", "SQL", "OperationalError", "[parameters")), (
            message
        )
    finally:
        studio.close()
