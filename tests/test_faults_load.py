"""Load: many clients at once, every turn and vote stored exactly once, no "database is locked".

50 clients x 20 turns (each turn also voted on) straight into the service from 50 threads, on the fake
backend: more write concurrency than the app allows, since its GPU queue runs one generation at a time.
Through the real served app: 50 API clients at once on the fake backend, and 5 clients x 4 turns on
a tiny random-weight model through the real transformers backend. The full 50 x 20 through the API is
tests/test_load_api.py (raw HTTP clients: `gradio_client` costs ~90 ms a call here, twice the server's own
time per turn); `python benchmarks/load_api.py` compares the two kinds of client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from sqlmodel import Session, select

from studio import Settings, storage
from studio.service import Studio
from studio.ui import build_app, launch
from tests.conftest import FAKE_MODELS, tiny_models_yaml, write_models
from tests.helpers.net import free_port

SAMPLING = [False, 0.7, 0.9, 50, 1.0, 8, 1, None]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Studio, str]]:
    folder = tmp_path_factory.mktemp("load")
    tiny = tiny_models_yaml(tiny_model_dir).replace("models:\n", "")
    settings = Settings.from_env(models_file=write_models(folder, FAKE_MODELS + tiny), data_dir=folder / "d")
    studio = Studio.from_settings(settings)
    studio.user_id(None)
    app = build_app(studio)
    port = free_port()
    launch(app, studio, host="127.0.0.1", port=port, block=False, queue_size=256, rate_limit=None)
    yield studio, f"http://127.0.0.1:{port}/"
    app.close()
    studio.close()


def run_clients(url: str, model: str, clients: int, turns: int) -> tuple[list[int], list[str], float]:
    """Each client holds one conversation of `turns` turns; returns conversation ids, errors, seconds."""
    conversations: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients)

    def client(n: int) -> None:
        api = Client(url, verbose=False)
        ready.wait()
        conv = None
        try:
            for turn in range(turns):
                _, update, _, _ = api.predict(f"c{n} t{turn}", conv, model, "", *SAMPLING, api_name="/chat")
                if isinstance(update, dict) and "value" in update:  # set on a new conversation, skipped after
                    conv = update["value"]
        except Exception as exc:
            with lock:
                errors.append(f"client {n}: {exc}")
        with lock:
            conversations.append(conv or 0)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return conversations, errors, time.perf_counter() - started


def check_stored(studio: Studio, conversations: list[int], turns: int, model: str) -> None:
    with Session(studio.engine) as session:
        rows = session.exec(select(storage.Generation).where(storage.Generation.model_id == model)).all()
    assert len(rows) == len(conversations) * turns  # none lost, none doubled
    assert len(set(conversations)) == len(conversations)  # one conversation per client
    for conv in conversations:
        turned = studio.conversation(conv)
        client = turned[0].prompt.split()[0]
        assert [t.prompt for t in turned] == [f"{client} t{i}" for i in range(turns)]
    problems = [r.error for r in rows if r.status != "ok"]
    assert not problems, problems[:3]


def test_fifty_clients_twenty_turns_and_votes_each_lose_and_double_nothing(
    fake_studio: Studio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fake_studio.user_id(None)
    conversations: list[int] = []
    errors: list[str] = []
    ready = threading.Barrier(50)

    def client(n: int) -> None:
        ready.wait()
        conv = None
        try:
            for turn in range(20):
                *_, final = fake_studio.chat(model_id="fake", message=f"c{n} t{turn}", conversation_id=conv)
                assert final.status == "ok", final.error
                conv = final.conversation_id
                fake_studio.rate(final.generation_id or 0, "up" if turn % 2 else "down")
        except Exception as exc:
            errors.append(f"client {n}: {exc!r}")
        conversations.append(conv or 0)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    assert not errors, errors[:3]
    check_stored(fake_studio, conversations, 20, "fake")
    with Session(fake_studio.engine) as session:
        assert len(session.exec(select(storage.Rating)).all()) == 1000
    assert "database is locked" not in caplog.text
    print(f"\n50 clients x 20 turns + votes (service, fake backend): {1000 / seconds:.0f} turns/s")


def test_fifty_api_clients_at_once_lose_and_double_nothing(
    served: tuple[Studio, str], caplog: pytest.LogCaptureFixture
) -> None:
    studio, url = served
    caplog.set_level(logging.WARNING)
    conversations, errors, seconds = run_clients(url, "fake", clients=50, turns=1)
    assert not errors, errors[:3]
    check_stored(studio, conversations, 1, "fake")
    assert "database is locked" not in caplog.text
    print(f"\n50 API clients x 1 turn (fake backend): {50 / seconds:.0f} turns/s, {seconds:.1f} s")


@pytest.mark.tiny
def test_concurrent_clients_on_a_real_tiny_model(
    served: tuple[Studio, str], caplog: pytest.LogCaptureFixture
) -> None:
    studio, url = served
    caplog.set_level(logging.WARNING)
    conversations, errors, seconds = run_clients(url, "tiny", clients=5, turns=4)
    assert not errors, errors[:3]
    check_stored(studio, conversations, 4, "tiny")
    assert "database is locked" not in caplog.text
    print(f"\n5 clients x 4 turns (tiny transformers model): {20 / seconds:.1f} turns/s, {seconds:.1f} s")
