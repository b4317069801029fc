"""The served app with logins on (fake backends, real Gradio server on loopback): who reaches what.

Anonymous requests are refused on every route but the login page; file routes refuse traversal, the
database, the users file, config, URLs and another user's pictures; user B gets nothing of user A's
through any API endpoint; cross-origin requests and request floods are refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlmodel import Session, select

from studio import storage
from studio.security.guard import RateLimiter
from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.sampling import SAMPLING
from tests.helpers.served import served_studio, served_with_logins

CODE_SETTINGS = ["write", "python", "python", "", ""]
IMAGE_MODEL = """
  - id: fake-image
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {steps: 2, width: 64, height: 64}
  - id: hibari-heart
    tabs: [speech]
    backend: hibari-tts
    source: pip:hibari-tts==0.2.1#hibari/assets/hibari.onnx
"""
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3"}


@dataclass
class Served:
    studio: Studio
    url: str
    users_file: Path
    app: Any


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("secure")
    limit = RateLimiter(600, burst=40)
    models = FAKE_MODELS + IMAGE_MODEL
    with served_with_logins(folder, models, PASSWORDS, rate_limit=limit) as (studio, server, users):
        yield Served(studio, server.url.rstrip("/"), users, server.fastapi)


def login(served: Served, name: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=30)
    reply = client.post("/login", data={"username": name, "password": PASSWORDS[name]})
    assert reply.status_code == 200, reply.text
    return client


def api(served: Served, name: str) -> Client:
    return Client(served.url + "/", auth=(name, PASSWORDS[name]), verbose=False)


def concrete(path: str) -> str:
    """A route template with every parameter filled in ('{api_name}' -> 'chat', 'file={x:path}' -> ...)."""
    return re.sub(r"\{[^}]+\}", "x", path).replace("{", "").replace("}", "")


def all_routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included routers (/gradio_api/...)
        yield from all_routes(inner.routes) if inner is not None else [route]


def test_anonymous_requests_are_refused_on_every_route(served: Served) -> None:
    public = {
        "/",
        "/login",
        "/login/",
        "/logout",
        "/favicon.ico",
        "/theme.css",
        "/robots.txt",
        "/manifest.json",
    }
    checked = 0
    with httpx.Client(base_url=served.url, timeout=30) as anon:
        for route in all_routes(served.app.routes):
            path = getattr(route, "path", "")
            methods = getattr(route, "methods", None) or {"GET"}
            if not path or path in public or path.startswith(("/assets", "/static", "/svelte", "/pwa_icon")):
                continue
            if path.endswith(("theme.css", "login_check", "login_check/", "startup-events")):
                continue
            for method in sorted(methods - {"HEAD", "OPTIONS"}):
                reply = anon.request(method, concrete(path), json={})
                assert reply.status_code in (401, 404), (
                    f"{method} {path}: {reply.status_code} {reply.text[:200]}"
                )
                checked += 1
        # The API and file routes by name, with real arguments.
        for method, path in [
            ("POST", "/gradio_api/call/chat"),
            ("POST", "/gradio_api/queue/join"),
            ("POST", "/gradio_api/upload"),
            ("GET", "/gradio_api/info"),
            ("GET", "/config"),
            ("GET", f"/gradio_api/file={served.users_file}"),
            ("GET", "/gradio_api/file=/etc/hostname"),
            ("GET", "/gradio_api/queue/data?session_hash=x"),
        ]:
            assert anon.request(method, path, json={}).status_code == 401, path
        # The login page itself says nothing about the app: no endpoints, no components.
        page = anon.get("/").text
        assert "rename_conversation" not in page and "api_name" not in page
    assert checked > 30


def test_a_wrong_password_or_unknown_user_is_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for name, password in [("alice", "wrong-password"), ("mallory", "whatever-pass"), ("alice", "")]:
            assert client.post("/login", data={"username": name, "password": password}).status_code != 200
            assert client.get("/config").status_code == 401
        assert login(served, "alice").get("/config").status_code == 200


def picture_of(served: Served, user: str) -> Path:
    final = list(served.studio.image(model_id="fake-image", prompt=f"{user}'s cat", user=user))[-1]
    assert final.status == "ok", final.error
    return final.files[0]


def test_file_routes_refuse_traversal_private_files_and_other_users_media(served: Served) -> None:
    settings = served.studio.settings
    database = settings.database_url.removeprefix("sqlite:///")
    alice_picture = picture_of(served, "alice")
    bob_picture = picture_of(served, "bob")
    stray = settings.media_dir / "notes.txt"
    stray.write_text("not a generated file")
    alice = login(served, "alice")
    refused = [
        "../../../../../../etc/passwd",
        "/etc/passwd",
        f"{settings.media_dir}/../../../../../../etc/passwd",
        f"{settings.media_dir}/../studio.db",
        database,
        f"{database}-wal",
        str(served.users_file),
        str(served.studio.config.path),
        str(settings.model_cache / "x"),
        str(stray),
        str(bob_picture),
        "http://127.0.0.1:1/secret",
        "https://example.com/x.png",
    ]
    for target in refused:
        for route in ("/gradio_api/file=", "/gradio_api/file/"):
            for variant in (target, target.replace("/", "%2F"), target.replace("..", "%2e%2e")):
                reply = alice.get(route + variant)
                assert reply.status_code in (403, 404), f"{route}{variant}: {reply.status_code}"
    own = alice.get(f"/gradio_api/file={alice_picture}")
    assert own.status_code == 200 and own.content.startswith(b"\x89PNG")
    assert login(served, "bob").get(f"/gradio_api/file={bob_picture}").status_code == 200


def test_audio_clips_and_their_pictures_are_only_for_their_owner(served: Served) -> None:
    final = list(served.studio.speech(model_id="hibari-heart", text="Hello Bob.", user="alice"))[-1]
    assert final.status == "ok", final.error
    assert final.file is not None and final.picture is not None
    alice, bob = login(served, "alice"), login(served, "bob")
    for path, magic in ((final.file, b"RIFF"), (final.picture, b"\x89PNG")):
        own = alice.get(f"/gradio_api/file={path}")
        assert own.status_code == 200 and own.content.startswith(magic)
        assert bob.get(f"/gradio_api/file={path}").status_code in (403, 404)


def test_gradio_cached_copies_of_a_picture_are_only_for_its_owner(served: Served) -> None:
    alice = Client(served.url + "/", auth=("alice", PASSWORDS["alice"]), verbose=False, download_files=False)
    gallery, note = alice.predict(
        "a red square", "fake-image", None, 0.75, "", 1.0, "", 2, 1.0, 64, 64, 1, None, "default",
        api_name="/image",
    )  # fmt: skip
    assert gallery, note
    path = gallery[0]["image"]["path"]
    assert not Path(path).is_relative_to(served.studio.settings.media_dir)  # Gradio's copy, in its cache
    assert login(served, "alice").get(f"/gradio_api/file={path}").status_code == 200
    assert login(served, "bob").get(f"/gradio_api/file={path}").status_code == 403


def rows(studio: Studio, **where: Any) -> list[storage.Generation]:
    with Session(studio.engine) as session:
        query = select(storage.Generation)
        for key, value in where.items():
            query = query.where(getattr(storage.Generation, key) == value)
        return list(session.exec(query))


def test_user_b_gets_nothing_of_user_a_through_any_endpoint(served: Served) -> None:
    studio = served.studio
    alice, bob = api(served, "alice"), api(served, "bob")
    _, conv, _, _ = alice.predict("alice's secret plan", None, "fake", "", *SAMPLING, api_name="/chat")
    chat_id = conv["value"]
    code_out = alice.predict("alice's secret code", None, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code")
    code_id = next(v["value"] for v in code_out if isinstance(v, dict) and isinstance(v.get("value"), int))
    alice_rows = {r.id: (r.output_text, r.active) for r in rows(studio)}
    generation = studio.conversation(chat_id, user="alice")[0].generation_id
    alice.predict(generation, "up", api_name="/rate")
    attempts: list[tuple[str, list[Any]]] = [
        ("/chat", ["steal", chat_id, "fake", "", *SAMPLING]),
        ("/regenerate", [chat_id, "fake", "", *SAMPLING]),
        ("/continue", [chat_id, "fake", "", *SAMPLING]),
        ("/rate", [generation, "down"]),
        ("/rate", [generation, "none"]),
        ("/rename_conversation", [chat_id, "pwned"]),
        ("/delete_conversation", [chat_id]),
        ("/code", ["steal", code_id, "fake", *CODE_SETTINGS, *SAMPLING]),
        ("/code_regenerate", [code_id, "fake", *CODE_SETTINGS, *SAMPLING]),
        ("/code_continue", [code_id, "fake", *CODE_SETTINGS, *SAMPLING]),
        ("/code_delete", [code_id]),
        ("/browse_answer", [chat_id, 0, -1]),
    ]
    refused: list[str] = []
    for endpoint, args in attempts:
        try:
            result = bob.predict(*args, api_name=endpoint)
        except Exception as exc:  # refused (the service's "does not exist", or Gradio's choice check)
            refused.append(f"{endpoint}: {exc}")
        else:  # answered: then nothing of alice's is in the answer
            assert "secret" not in repr(result), f"{endpoint} leaked: {result!r}"
    assert len(refused) >= 10, refused
    assert any(r.startswith("/browse_answer:") for r in refused), refused
    # Alice's rows, vote and conversations are untouched; bob sees none of them.
    assert {r.id: (r.output_text, r.active) for r in rows(studio) if r.id in alice_rows} == alice_rows
    assert studio.rating(generation, user="alice") == 1
    assert [t.prompt for t in studio.conversation(chat_id, user="alice")] == ["alice's secret plan"]
    assert dict(studio.conversations(user="alice"))[chat_id] == "alice's secret plan"
    assert "secret" not in repr(
        studio.conversations(user="bob") + studio.conversations(user="bob", tab="code")
    )
    assert all("secret" not in h["prompt"] for h in studio.history(user="bob", limit=1000))
    assert not studio.is_admin("bob") and studio.is_admin("carol")


def test_cross_origin_requests_are_refused(served: Served) -> None:
    alice = login(served, "alice")
    assert alice.get("/config", headers={"Origin": "http://evil.example"}).status_code == 403
    assert alice.post("/gradio_api/queue/join", json={}, headers={"Origin": "null"}).status_code == 403
    assert alice.get("/config", headers={"Origin": served.url}).status_code == 200


def test_a_flood_of_events_from_one_user_is_slowed_down_others_are_not(served: Served) -> None:
    carol = login(served, "carol")
    codes = [carol.post("/gradio_api/queue/join", json={}).status_code for _ in range(60)]
    assert 429 in codes and codes.index(429) >= 30, codes
    # The limit refills (120 a minute): on a loaded machine a token may come back between two posts, so
    # take the next refusal within a few posts rather than the very next answer.
    answers = (carol.post("/gradio_api/queue/join", json={}) for _ in range(20))
    limited = next(a for a in answers if a.status_code == 429)
    assert "retry in" in limited.json()["detail"]
    assert int(limited.headers["retry-after"]) >= 1
    assert login(served, "alice").post("/gradio_api/queue/join", json={}).status_code != 429


def test_monitoring_and_proxy_routes_are_closed(served: Served) -> None:
    alice = login(served, "alice")
    for path in [
        "/monitoring",
        "/gradio_api/monitoring",
        "/gradio_api/proxy=http://127.0.0.1:1/",
        "/gradio_api/runs",
    ]:
        assert alice.get(path).status_code == 404, path


def test_a_full_queue_answers_busy_retry(tmp_path: Path) -> None:
    """Gradio runs PARALLEL_RUNS model events at once (one of them on the CPU, the rest waiting their turn
    in the model manager) and holds `queue_size` more; the next is refused as busy."""
    from studio.ui.conversation import PARALLEL_RUNS

    with served_studio(tmp_path, FAKE_MODELS, queue_size=1, rate_limit=None) as (studio, url):
        client = Client(url, verbose=False)
        slow = [False, 0.7, 0.9, 50, 1.0, 4096, 1, None]  # the fake's SLOW words: about 20 s unless stopped
        jobs = []
        deadline = time.monotonic() + 30
        for i in range(PARALLEL_RUNS):  # one by one: a queue of 1 refuses jobs that arrive together
            # A client per job: a session has one run key, and Stop below must reach every run.
            user = Client(url, verbose=False)
            jobs.append(user.submit(f"SLOW {i}", None, "fake", "", *slow, api_name="/chat"))
            while sum(studio.manager.jobs("cpu")) <= i and time.monotonic() < deadline:
                time.sleep(0.01)
        assert studio.manager.jobs("cpu") == (1, PARALLEL_RUNS - 1)  # one runs, the others wait their turn
        jobs.append(
            client.submit("SLOW queued", None, "fake", "", *slow, api_name="/chat")
        )  # waits in Gradio
        time.sleep(0.3)
        with pytest.raises(Exception, match=r"(?i)queue is full"):
            client.predict("three", None, "fake", "", *SAMPLING, api_name="/chat")
        deadline = time.monotonic() + 20
        while any(not job.done() for job in jobs) and time.monotonic() < deadline:
            for key in list(studio._runs):  # Stop every run, waiting or running
                studio.cancel(key)
            time.sleep(0.05)
        assert all(job.done() for job in jobs)
        assert client.predict("four", None, "fake", "", *SAMPLING, api_name="/chat")  # room again
