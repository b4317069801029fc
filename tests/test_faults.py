"""Faults and load: nothing acknowledged is lost, nothing is stored twice, the studio recovers.

Races of identical votes, kill -9 of a server during vote bursts and during a generation, a simulated
CUDA out-of-memory error and an unrecoverable one, and a backup taken while writing. Servers are
subprocesses on loopback (tests/faults_server.py); the database is a real SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlmodel import Session, select

from studio import Settings, cli, storage
from studio.backends import Backend, Request, TextDelta, register, unregister
from studio.backends.params import ChatParams
from studio.cli.admin import backup
from studio.manager import faults
from studio.service import Studio
from tests.conftest import FAKE_MODELS, write_models
from tests.helpers import faults_server  # noqa: F401  (registers the `fatal-chat` kind its models.yaml names)
from tests.helpers.fakes import fake_weights
from tests.helpers.threads import together

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODELS = (
    FAKE_MODELS + "  - id: fatal\n    tabs: [chat]\n    backend: fatal-chat\n    source: fake/fatal\n"
)
ROUNDS, BURST = 20, 1000


class Zygote:
    """One `tests.helpers.faults_server --zygote` process: it forks each server (imports paid once)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.faults_server", "--zygote"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def fork(self, *args: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(args) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


class Server:
    """A tests/faults_server.py process over one data dir (forked by the zygote, or started anew)."""

    started: ClassVar[list[Server]] = []  # killed at the end of each test, whatever happened

    def __init__(self, folder: Path, zygote: Zygote | None = None) -> None:
        port_file = folder / f"port-{time.monotonic_ns()}"
        args = (str(folder / "models.yaml"), str(folder / "d"), str(port_file))
        self.proc: subprocess.Popen[bytes] | None = None
        if zygote is not None:
            self.pid = zygote.fork(*args)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.faults_server", *args],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            self.pid = self.proc.pid
        Server.started.append(self)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert self.alive(), "the server died at start"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        self.port = int(port_file.read_text())

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def post(self, path: str, conn: HTTPConnection | None = None) -> tuple[int, str]:
        conn = conn or HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[Path]:
    write_models(tmp_path, SERVER_MODELS)
    yield tmp_path
    for server in Server.started:
        server.kill()
    Server.started.clear()


def settings_of(folder: Path) -> Settings:
    return Settings.from_env(models_file=folder / "models.yaml", data_dir=folder / "d")


def integrity(folder: Path) -> str:
    db = sqlite3.connect(folder / "d" / "studio.db")
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def make_generations(studio: Studio, count: int, user: str = "local") -> list[int]:
    uid = studio.user_id(user)
    with Session(studio.engine) as session:
        rows = [
            storage.Generation(user_id=uid, tab="chat", model_id="fake", prompt=f"p{i}") for i in range(count)
        ]
        session.add_all(rows)
        session.commit()
        return [r.id or 0 for r in rows]


def votes(folder: Path) -> dict[int, int]:
    db = sqlite3.connect(folder / "d" / "studio.db")
    try:
        return dict(db.execute("SELECT generation_id, value FROM rating").fetchall())
    finally:
        db.close()


def test_twenty_parallel_identical_votes_store_one_row(fake_studio: Studio) -> None:
    (generation,) = make_generations(fake_studio, 1)

    def vote(_: int, ready: Callable[[], object]) -> None:
        ready()
        fake_studio.rate(generation, "up")

    errors, _ = together(20, vote)
    with Session(fake_studio.engine) as session:
        stored = session.exec(select(storage.Rating)).all()
    assert not errors and [(r.generation_id, r.value) for r in stored] == [(generation, 1)]


def test_kill_9_during_vote_bursts_loses_no_acknowledged_vote(server_dir: Path) -> None:
    studio = Studio.from_settings(settings_of(server_dir))
    generations = make_generations(studio, BURST)
    studio.close()
    rng = random.Random(7)
    ever_acked: set[int] = set()
    figures = []
    zygote = Zygote()
    for round_ in range(ROUNDS):
        value, vote = (1, "up") if round_ % 2 == 0 else (-1, "down")
        order = generations[:]
        rng.shuffle(order)
        kill_after = rng.randint(10, 100)
        acked: list[int] = []
        lock = threading.Lock()
        server = Server(server_dir, zygote)
        todo = iter(order)

        def client(
            server: Server = server,
            todo: Iterator[int] = todo,
            acked: list[int] = acked,
            lock: threading.Lock = lock,
            vote: str = vote,
        ) -> None:
            conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                while True:
                    with lock:
                        gid = next(todo, None)
                    if gid is None:
                        return
                    status, _ = server.post(f"/rate?generation={gid}&user=local&vote={vote}", conn)
                    if status == 200:
                        with lock:
                            acked.append(gid)
            except (OSError, HTTPException):
                return  # the server was killed (mid-reply: IncompleteRead)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        while len(acked) < kill_after and any(t.is_alive() for t in threads):
            time.sleep(0.002)
        server.kill()
        for t in threads:
            t.join()
        assert integrity(server_dir) == "ok"
        stored = votes(server_dir)
        assert all(stored.get(gid) == value for gid in acked), f"round {round_}: an acknowledged vote is lost"
        ever_acked |= set(acked)
        assert ever_acked <= set(stored)
        figures.append(len(acked))
    zygote.close()
    assert min(figures) >= 10
    print(f"\n{ROUNDS} kills during bursts of {BURST} votes; votes acknowledged before each kill: {figures}")


def test_kill_9_mid_generation_is_marked_interrupted_after_restart(server_dir: Path) -> None:
    studio = Studio.from_settings(settings_of(server_dir))
    server = Server(server_dir)
    threading.Thread(target=lambda: _quietly(server.post, "/chat?prompt=SLOW%20story"), daemon=True).start()
    deadline = time.monotonic() + 30
    while not _running(studio):
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.02)
    server.kill()
    assert _running(studio), "a CLI-style Studio beside the server marks nothing"
    studio.close()
    Server(server_dir)  # the restart marks the leftover
    restarted = Studio.from_settings(settings_of(server_dir))
    with Session(restarted.engine) as session:
        (row,) = session.exec(select(storage.Generation)).all()
    assert row.status == "interrupted" and "stopped while" in (row.error or "")
    assert row.prompt == "SLOW story"
    assert [h["status"] for h in restarted.history()] == ["interrupted"]
    assert integrity(server_dir) == "ok"
    restarted.close()


def _running(studio: Studio) -> bool:
    with Session(studio.engine) as session:
        return bool(
            session.exec(select(storage.Generation).where(storage.Generation.status == "running")).all()
        )


def _quietly(fn: Any, *args: Any) -> None:
    with contextlib.suppress(OSError):
        fn(*args)


def test_an_unrecoverable_gpu_error_exits_non_zero_after_recording_the_turn(server_dir: Path) -> None:
    server = Server(server_dir)
    with contextlib.suppress(OSError):  # the process ends without answering
        server.post("/chat?prompt=hello&model=fatal")
    assert server.proc is not None and server.proc.wait(timeout=30) == faults.FATAL_EXIT_CODE
    restarted = Studio.from_settings(settings_of(server_dir))
    (turn,) = restarted.history()
    assert (
        turn["status"] == "error" and "illegal memory access" in turn["error"] and turn["text"] == "partial "
    )
    restarted.close()


class OutOfMemoryOnce(Backend):
    """Raises torch's real OutOfMemoryError on its first generation, then answers."""

    kind = "oom-once"
    tabs = frozenset({"chat"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    failures = 1

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Iterator[TextDelta]:
        import torch

        if type(self).failures:
            type(self).failures -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield TextDelta("fine now")


@pytest.fixture
def oom_studio(make_studio: Any) -> Iterator[Studio]:
    register(OutOfMemoryOnce)
    OutOfMemoryOnce.failures = 1
    yield make_studio(
        FAKE_MODELS + "  - id: big\n    tabs: [chat]\n    backend: oom-once\n    source: fake/big\n"
    )
    unregister(OutOfMemoryOnce.kind)


def test_out_of_memory_gives_a_clear_error_frees_idle_models_and_the_next_request_works(
    oom_studio: Studio,
) -> None:
    *_, warm = oom_studio.chat(model_id="fake", message="hi")
    assert warm.status == "ok" and "fake" in oom_studio.manager.loaded()
    *_, failed = oom_studio.chat(model_id="big", message="draw me a galaxy")
    assert failed.status == "error" and failed.error is not None
    assert failed.error.startswith("out of memory") and "try again" in failed.error
    assert oom_studio.manager.loaded() == []  # idle models were unloaded, the failed one too
    *_, retried = oom_studio.chat(model_id="big", message="draw me a galaxy")
    assert retried.status == "ok" and retried.text == "fine now"
    assert [h["status"] for h in oom_studio.history()] == ["ok", "error", "ok"]


def test_backup_while_writing_is_a_consistent_copy(fake_studio: Studio, tmp_path: Path) -> None:
    make_generations(fake_studio, 2000)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            make_generations(fake_studio, 20)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert backup(fake_studio.settings, tmp_path / "copy.db") == 0
    finally:
        stop.set()
        writer.join()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM generation").fetchone()[0] >= 2000
    copy.close()
    assert backup(fake_studio.settings, tmp_path / "copy.db") == 2  # never overwrites
    data_dir = str(fake_studio.settings.data_dir)
    assert cli.main(["backup", str(tmp_path / "again.db"), "--data-dir", data_dir]) == 0


def test_a_turn_is_stored_running_at_its_start_and_shown_only_once_finished(fake_studio: Studio) -> None:
    updates = fake_studio.chat(
        model_id="fake", message="SLOW tale", params={"max_new_tokens": 4096}, run_key="k"
    )
    next(updates)  # the first words: the turn has begun
    with Session(fake_studio.engine) as session:
        (row,) = storage.list_generations(session, include_running=True)
        assert row.status == "running" and not row.active and row.prompt == "SLOW tale"
        assert storage.count_generations(session) == 0  # readers see finished turns only
    assert fake_studio.history() == [] and fake_studio.conversations() == []
    assert fake_studio.cancel("k")
    *_, final = updates
    assert final.status == "stopped" and final.generation_id == row.id
    (turn,) = fake_studio.conversation(final.conversation_id or 0)
    assert turn.generation_id == row.id and turn.status == "stopped"
    assert fake_studio.recover_interrupted() == 0  # nothing left running
