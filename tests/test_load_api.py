"""Load through the served app, as issue 7 states it: 50 concurrent API clients x 20 turns each.

The real app (`build_app` + `launch`: Gradio's queue, the model manager's device queue, the
security guard, a real SQLite file) on a free loopback port, the fake chat backend for speed. 50 clients in
a separate process (tests/api_clients.py: one Gradio session each, raw queue protocol) start together,
each holding one conversation of 20 turns through `/chat`. Then: exactly 1000 stored turns, none doubled,
each conversation's turns in order, every turn "ok", no client error and no "database is locked" in the
server's logs or the clients' output. Bounded: the clients get 120 s in all (37-46 s here).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.served import serving, studio_at
from tests.test_faults_load import check_stored

ROOT = Path(__file__).resolve().parents[1]
CLIENTS, TURNS = 50, 20
BOUND_S = 120.0  # a bound against hangs, far above the time it takes (see the README); not a speed test


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Studio, str]]:
    studio = studio_at(tmp_path, FAKE_MODELS)
    studio.user_id(None)
    try:
        # Room for every client's job in the queue; no per-user rate limit (all 50 clients are one user here).
        with serving(studio, queue_size=CLIENTS * 2, rate_limit=None) as server:
            yield studio, server.url
    finally:
        studio.close()


def test_fifty_api_clients_twenty_turns_each_lose_and_double_nothing(
    served: tuple[Studio, str], caplog: pytest.LogCaptureFixture
) -> None:
    studio, url = served
    caplog.set_level(logging.WARNING)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tests.helpers.api_clients", url, str(CLIENTS), str(TURNS), "fake"]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{CLIENTS} clients x {TURNS} turns did not finish within {BOUND_S:.0f} s")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    conversations, errors, seconds = result["conversations"], result["errors"], result["seconds"]
    assert not errors, errors[:3]
    assert len(conversations) == CLIENTS and 0 not in conversations, conversations
    check_stored(studio, conversations, TURNS, "fake")  # 1000 rows, one conversation each, in order, all ok
    with Session(studio.engine) as session:
        rows = session.exec(select(storage.Generation)).all()
    assert len(rows) == CLIENTS * TURNS
    assert len({(r.conversation_id, r.turn_index) for r in rows}) == CLIENTS * TURNS  # no turn stored twice
    assert all(r.active for r in rows)
    assert "database is locked" not in caplog.text + done.stderr
    turns = CLIENTS * TURNS
    print(
        f"\n{CLIENTS} API clients x {TURNS} turns (fake backend): {turns} turns in {seconds:.1f} s, "
        f"{turns / seconds:.1f} turns/s, {1000 * seconds / turns:.0f} ms a turn"
    )
