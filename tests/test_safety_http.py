"""Blocked outputs over HTTP, with logins on (real Gradio server on loopback, fake painter, the real bundled
checkers): a withheld picture's file is refused to everyone but admins (its owner included), the Image tab's
API hands back the blurred placeholder, and the audit log's API is for admins only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from sqlmodel import Session

from studio import storage
from studio.security.guard import RateLimiter
from studio.service import Studio
from tests.helpers.served import served_with_logins
from tests.test_safety import CHECKERS

MODELS = f"""
models:
  - id: fake-image
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {{steps: 1, width: 64, height: 64}}
{CHECKERS}
safety:
  checkers: [profanity, nsfw-image]
  policy: {{image: block}}
  thresholds: {{sexual: 0.0}}
"""
PASSWORDS = {"alice": "alice-password-1", "carol": "carol-password-3"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    folder = tmp_path_factory.mktemp("safety-http")
    limit = RateLimiter(600, burst=40)
    with served_with_logins(folder, MODELS, PASSWORDS, rate_limit=limit) as (studio, server, _):
        yield studio, server.url.rstrip("/")


def login(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    assert client.post("/login", data={"username": name, "password": PASSWORDS[name]}).status_code == 200
    return client


def test_a_withheld_picture_is_served_to_admins_only(served: tuple[Studio, str]) -> None:
    studio, url = served
    alice = Client(url + "/", auth=("alice", PASSWORDS["alice"]), verbose=False, download_files=False)
    gallery, note = alice.predict(
        "a red square", "fake-image", None, 0.75, "", 1.0, "", 2, 1.0, 64, 64, 1, None, "default",
        api_name="/image",
    )  # fmt: skip
    assert "Blocked by the safety check" in note and "sexual" in note
    assert gallery and all(Path(item["image"]["path"]).name.startswith("studio-withheld") for item in gallery)
    (entry,) = studio.safety_log(user="carol")
    original = studio.media_path(_file_of(studio, entry["generation_id"]))
    assert original.is_file()
    for route in ("/gradio_api/file=", "/gradio_api/file/"):
        assert login(url, "alice").get(f"{route}{original}").status_code in (403, 404)  # not even its owner
    admin = login(url, "carol").get(f"/gradio_api/file={original}")
    assert admin.status_code == 200 and admin.content.startswith(b"\x89PNG")


def _file_of(studio: Studio, generation_id: int) -> str:
    with Session(studio.engine) as session:
        row = storage.get_generation(session, generation_id=generation_id)
        assert row is not None and row.status == "blocked"
        return row.files[0]


def test_the_audit_log_api_is_for_admins_only(served: tuple[Studio, str]) -> None:
    _, url = served
    alice = Client(url + "/", auth=("alice", PASSWORDS["alice"]), verbose=False)
    note, _ = alice.predict(api_name="/safety_log")
    assert "only an admin" in note
    carol = Client(url + "/", auth=("carol", PASSWORDS["carol"]), verbose=False)
    note, log = carol.predict(api_name="/safety_log")
    assert note == "" and log["data"] and log["data"][0][4] == "block"
