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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gradio_client import Client
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio
from tests.conftest import FAKE_MODELS, tiny_models_yaml
from tests.helpers.sampling import sampling
from tests.helpers.served import serving, studio_at
from tests.helpers.threads import together

SAMPLING = sampling(max_new_tokens=8)


@contextmanager
def served_for_load(folder: Path, models: str) -> Iterator[tuple[Studio, str]]:
    studio = studio_at(folder, models)
    studio.user_id(None)
    try:
        with serving(studio, queue_size=256, rate_limit=None) as server:
            yield studio, server.url
    finally:
        studio.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    """The fake backend only (fast tier)."""
    with served_for_load(tmp_path_factory.mktemp("load"), FAKE_MODELS) as served:
        yield served


@pytest.fixture(scope="module")
def served_tiny(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[Studio, str]]:
    """The tiny checkpoint through the real transformers backend (`tiny` tier)."""
    with served_for_load(tmp_path_factory.mktemp("load-tiny"), tiny_models_yaml(tiny_model_dir)) as served:
        yield served


def run_clients(url: str, model: str, clients: int, turns: int) -> tuple[list[int], list[str], float]:
    """Each client holds one conversation of `turns` turns; returns conversation ids, errors, seconds."""
    conversations: list[int] = []

    def client(n: int, ready: Callable[[], object]) -> None:
        api = Client(url, verbose=False)
        ready()
        conv = None
        try:
            for turn in range(turns):
                _, update, _, _ = api.predict(f"c{n} t{turn}", conv, model, "", *SAMPLING, api_name="/chat")
                if isinstance(update, dict) and "value" in update:  # set on a new conversation, skipped after
                    conv = update["value"]
        finally:
            conversations.append(conv or 0)

    errors, seconds = together(clients, client)
    return conversations, errors, seconds


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

    def client(n: int, ready: Callable[[], object]) -> None:
        ready()
        conv = None
        try:
            for turn in range(20):
                *_, final = fake_studio.chat(model_id="fake", message=f"c{n} t{turn}", conversation_id=conv)
                assert final.status == "ok", final.error
                conv = final.conversation_id
                fake_studio.rate(final.generation_id or 0, "up" if turn % 2 else "down")
        finally:
            conversations.append(conv or 0)

    errors, seconds = together(50, client)
    assert not errors, errors[:3]
    check_stored(fake_studio, conversations, 20, "fake")
    with Session(fake_studio.engine) as session:
        assert len(session.exec(select(storage.Rating)).all()) == 1000
    assert "database is locked" not in caplog.text
    print(f"\n50 clients x 20 turns + votes (service, fake backend): {1000 / seconds:.0f} turns/s")


def clients_lose_nothing(
    served: tuple[Studio, str], caplog: pytest.LogCaptureFixture, model: str, clients: int, turns: int
) -> float:
    """`clients` API clients at once, `turns` turns each, on `model`: every turn stored once, in order, no
    client error, no "database is locked"; returns the seconds they took."""
    studio, url = served
    caplog.set_level(logging.WARNING)
    conversations, errors, seconds = run_clients(url, model, clients=clients, turns=turns)
    assert not errors, errors[:3]
    check_stored(studio, conversations, turns, model)
    assert "database is locked" not in caplog.text
    return seconds


def test_fifty_api_clients_at_once_lose_and_double_nothing(
    served: tuple[Studio, str], caplog: pytest.LogCaptureFixture
) -> None:
    seconds = clients_lose_nothing(served, caplog, "fake", clients=50, turns=1)
    print(f"\n50 API clients x 1 turn (fake backend): {50 / seconds:.0f} turns/s, {seconds:.1f} s")


@pytest.mark.tiny
def test_concurrent_clients_on_a_real_tiny_model(
    served_tiny: tuple[Studio, str], caplog: pytest.LogCaptureFixture
) -> None:
    seconds = clients_lose_nothing(served_tiny, caplog, "tiny", clients=5, turns=4)
    print(f"\n5 clients x 4 turns (tiny transformers model): {20 / seconds:.1f} turns/s, {seconds:.1f} s")
