"""Attack (issue 15, item 12): several studio processes on one PostgreSQL. Before, every start marked every
"running" row interrupted, so a second `studio serve` behind a load balancer cut off the first one's live
turns. Now each running row carries its process's lease, renewed by a heartbeat; a process recovers only
rows whose lease expired (or, on its own host, whose process is gone).

Two real processes (tests/helpers/lease_worker.py) share the test PostgreSQL with a 2 s lease; the one that
plays another host is killed mid-generation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlmodel import Session, select

from studio import storage
from tests.conftest import FAKE_MODELS

LEASE_S = 2


def _start(tmp_path: Path, name: str, url: str, host: str | None = None) -> tuple[subprocess.Popen, str]:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "models.yaml").write_text(FAKE_MODELS, encoding="utf-8")
    env = {**os.environ, "STUDIO_DATABASE_URL": url, "STUDIO_LEASE_SECONDS": str(LEASE_S)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    command = [
        sys.executable,
        "-m",
        "tests.helpers.lease_worker",
        str(folder / "models.yaml"),
        str(folder / "d"),
    ]
    proc = subprocess.Popen([*command, *([host] if host else [])], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("running "), f"the worker did not start its turn: {line!r}"
    return proc, line.split(" ", 1)[1].strip()


def _status(url: str) -> dict[str, str]:
    engine = storage.make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.exec(select(storage.Generation)).all()
            return {row.prompt: row.status for row in rows}
    finally:
        engine.dispose()


def test_a_second_process_leaves_live_turns_alone_and_recovers_a_dead_ones_after_its_lease(
    postgres_url: str, tmp_path: Path
) -> None:
    far, far_owner = _start(tmp_path, "far", postgres_url, host="another-host")
    near = None
    try:
        near, near_owner = _start(tmp_path, "near", postgres_url)  # its start-up recovery ran meanwhile
        assert _status(postgres_url) == {far_owner: "running", near_owner: "running"}, "start-up kept both"
        far.kill()  # kill -9 mid-generation
        far.wait(10)
        killed = time.monotonic()
        time.sleep(LEASE_S / 4)
        assert _status(postgres_url)[far_owner] == "running", "recovered before its lease expired"
        while _status(postgres_url)[far_owner] == "running":
            assert time.monotonic() - killed < LEASE_S * 4, "the dead process's turn was never recovered"
            time.sleep(0.1)
        assert time.monotonic() - killed >= LEASE_S * 0.9
        assert _status(postgres_url) == {far_owner: "interrupted", near_owner: "running"}
    finally:
        for proc in (far, near):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_dead_process_on_this_host_is_recovered_without_waiting(postgres_url: str, tmp_path: Path) -> None:
    dead, dead_owner = _start(tmp_path, "dead", postgres_url)
    dead.kill()
    dead.wait(10)
    live, live_owner = _start(tmp_path, "live", postgres_url)  # its start sees the pid is gone
    try:
        assert _status(postgres_url) == {dead_owner: "interrupted", live_owner: "running"}
    finally:
        live.kill()
        live.wait(10)
