"""Faults against the real app: `studio serve` (the CLI's serve path: build_app, launch, recovery at start)
in a subprocess, killed with -9 during a vote burst and a generation, then started again; and a fatal GPU
error (torch's own `AcceleratorError`) that ends the served process with exit status 70.

The models: the fake chat backend, a tiny random-weight chat checkpoint through the real transformers
backend (`long`: 4000 new tokens, so a generation is in progress when the kill comes), and `fatal`
(tests/helpers/faults_server.py), whose generation raises torch.AcceleratorError after a first piece.
Votes and turns go through the app's Gradio queue over raw HTTP, as a browser's do; a vote counts as
acknowledged once its event completed with "ok". tests/test_faults.py runs the same kills 20 times on a
small HTTP front of the service (a Gradio start costs seconds; these start it three times).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from sqlmodel import Session

from studio import Settings, storage
from studio.manager import faults
from studio.service import Studio
from tests.conftest import FAKE_MODELS, write_models
from tests.helpers import faults_server  # noqa: F401  (registers `fatal-chat`, for the Studio made here)
from tests.helpers.api_clients import call, endpoint
from tests.helpers.net import free_port
from tests.helpers.sampling import BEST_OF_OFF, sampling

ROOT = Path(__file__).resolve().parent.parent
LONG_SAMPLING = sampling(max_new_tokens=4000, repetition_penalty=1.5)  # greedy, visible text, 4000 tokens


class Served:
    """One `studio serve` process over `folder`'s models.yaml and data dir (its output in a log file)."""

    started: ClassVar[list[Served]] = []

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(folder / f"serve-{self.port}.log", "wb")  # noqa: SIM115  (closed in kill/exit)
        command = ["serve", "--models", str(folder / "models.yaml"), "--data-dir", str(folder / "d")]
        command += ["--port", str(self.port)]  # warms the first chat model (`fake`), as users start it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.faults_server", "--serve", *command],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        Served.started.append(self)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"studio serve died at start:\n{self.output()}"
            assert time.monotonic() < deadline, f"studio serve did not answer:\n{self.output()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "config", timeout=5).status_code == 200:
                    break
            time.sleep(0.1)

    def output(self) -> str:
        return (self.folder / f"serve-{self.port}.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()  # closing twice is allowed


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """models.yaml: the fake chat models and `fatal`; every `studio serve` started is killed at the end."""
    write_models(
        tmp_path, FAKE_MODELS + "  - id: fatal\n    tabs: [chat]\n    backend: fatal-chat\n    source: f\n"
    )
    yield tmp_path
    for served in Served.started:
        served.kill()
    Served.started.clear()


def query(folder: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(folder / "d" / "studio.db", timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def start_chat(url: str, model: str, message: str, params: list) -> threading.Thread:
    """A chat turn through the queue in a thread, as the Send button sends it; its errors are dropped."""
    fn_index, session = endpoint(url, "chat"), uuid.uuid4().hex

    def run() -> None:
        with contextlib.suppress(Exception), httpx.Client(timeout=120) as http:
            call(http, url, fn_index, [message, None, model, "", session, *params, *BEST_OF_OFF], session)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def vote_burst(served: Served, generations: list[int], vote: str, kill_after: int) -> list[int]:
    """Four clients vote on `generations` through /rate; -9 once `kill_after` votes are acknowledged."""
    fn_index = endpoint(served.url, "rate")
    todo, acked, lock = iter(generations), [], threading.Lock()

    def client() -> None:
        session = uuid.uuid4().hex
        with contextlib.suppress(Exception), httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    gid = next(todo, None)
                if gid is None:
                    return
                if call(http, served.url, fn_index, [gid, vote, "", ""], session) == ["ok"]:
                    with lock:
                        acked.append(gid)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acked) < kill_after and any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, f"only {len(acked)} votes acknowledged in 120 s"
        time.sleep(0.005)
    served.kill()
    for thread in threads:
        thread.join(60)
    return acked


@pytest.mark.tiny
@pytest.mark.timeout(600)
def test_kill_9_of_studio_serve_loses_no_acknowledged_vote_and_the_restart_marks_the_turn_interrupted(
    folder: Path,
) -> None:
    from tests.helpers.tiny_chat import build_tiny_chat_model

    long = build_tiny_chat_model(folder / "long", context=4352)  # room for 4000 new tokens
    with open(folder / "models.yaml", "a", encoding="utf-8") as models:
        models.write(f"  - {{id: long, tabs: [chat], backend: transformers-chat, source: {long}}}\n")
    settings = Settings.from_env(models_file=folder / "models.yaml", data_dir=folder / "d")
    with contextlib.closing(Studio.from_settings(settings)) as studio:  # rows to vote on, as "local"'s
        uid = studio.user_id(None)
        with Session(studio.engine) as session:
            rows = [
                storage.Generation(user_id=uid, tab="chat", model_id="fake", prompt=f"p{n}")
                for n in range(400)
            ]
            session.add_all(rows)
            session.commit()
            generations = [row.id or 0 for row in rows]

    first = Served(folder)
    start_chat(first.url, "long", "tell me a long story", LONG_SAMPLING)
    deadline = time.monotonic() + 60
    while not query(folder, "SELECT id FROM generation WHERE model_id = 'long' AND status = 'running'"):
        assert time.monotonic() < deadline, f"the generation never started:\n{first.output()}"
        time.sleep(0.05)
    up = vote_burst(first, generations, "up", kill_after=40)  # killed mid-generation and mid-burst
    assert len(up) >= 40
    assert query(folder, "PRAGMA integrity_check") == [("ok",)]
    stored = dict(query(folder, "SELECT generation_id, value FROM rating"))
    assert [gid for gid in up if stored.get(gid) != 1] == [], "an acknowledged vote is lost"
    still = query(folder, "SELECT status, error FROM generation WHERE model_id = 'long'")
    assert still == [("running", None)], "the kill came after the generation ended"

    second = Served(folder)  # the restart marks the turn the kill cut short
    ((status, error, prompt),) = query(
        folder, "SELECT status, error, prompt FROM generation WHERE model_id = 'long'"
    )
    assert status == "interrupted" and "stopped while" in (error or "") and prompt == "tell me a long story"
    down = vote_burst(second, generations[::-1], "down", kill_after=40)  # a second kill, on the restart
    assert query(folder, "PRAGMA integrity_check") == [("ok",)]
    stored = dict(query(folder, "SELECT generation_id, value FROM rating"))
    assert [gid for gid in down if stored.get(gid) != -1] == [], "an acknowledged vote is lost"
    assert [gid for gid in up if gid not in stored] == [], "a vote of before the first kill is gone"
    print(f"\nvotes acknowledged before each kill -9 of studio serve: {len(up)}, {len(down)}")


@pytest.mark.timeout(300)
def test_a_fatal_gpu_error_in_studio_serve_records_the_turn_and_exits_70(folder: Path) -> None:
    served = Served(folder)
    start_chat(served.url, "fatal", "hello", sampling())
    try:
        assert served.proc.wait(timeout=120) == faults.FATAL_EXIT_CODE, served.output()
    finally:
        served.kill()
    assert "unrecoverable accelerator error" in served.output()
    ((status, error, text),) = query(folder, "SELECT status, error, output_text FROM generation")
    assert status == "error" and "illegal memory access" in error and text == "partial "


def test_the_classifier_knows_torchs_own_error_classes() -> None:
    """torch.AcceleratorError (what torch >= 2.8 raises for CUDA runtime failures) is fatal whatever its
    words; torch.OutOfMemoryError is recoverable, even though it is a RuntimeError with 'CUDA' in it."""
    import torch

    assert issubclass(torch.AcceleratorError, RuntimeError)
    for words in ("CUDA error: an illegal memory access was encountered", "CUDA error: a new failure"):
        assert faults.is_fatal_device_error(torch.AcceleratorError(words))
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert faults.is_out_of_memory(oom) and not faults.is_fatal_device_error(oom)
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError
    assert not faults.is_fatal_device_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    message, fatal = faults.handle(torch.AcceleratorError("CUDA error: misaligned address"), None, "m")
    assert fatal is not None and message.startswith("the GPU failed (CUDA error: misaligned address)")
