"""Load through the served app: 50 concurrent API clients x 20 chat turns (fake backend), rows checked.

    python benchmarks/load_api.py [--clients 50] [--turns 20] [--ways WAY,...]
    python benchmarks/load_api.py --smoke          # 3 clients x 2 turns, every way

Ways (all by default, one fresh server each, one after the other): `gradio_client` (those clients in the
server's own process, as tests/test_faults_load.py runs them), `gradio_client-process` (the same clients in a
separate process) and `http` (raw HTTP clients of the queue protocol in a separate process:
tests/api_clients.py, what tests/test_load_api.py runs in CI).
Prints turns a second, the time per turn (a device runs one generation at a time), the server
process's CPU time per turn, client errors (the first three are printed), "database is locked" warnings,
and whether every turn was stored exactly once, in order, in its own conversation; exit status 1 if not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # first: offline, stable environment

ROOT = Path(__file__).resolve().parents[1]


def clients_in_process(url: str, way: str, clients: int, turns: int) -> tuple[list[int], list[str], float]:
    if way == "gradio_client":
        from tests.test_faults_load import run_clients

        return run_clients(url, "fake", clients=clients, turns=turns)
    mode = "gradio_client" if way == "gradio_client-process" else "http"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tests.helpers.api_clients", url, str(clients), str(turns), "fake", mode]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["conversations"], result["errors"], result["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--ways", default="gradio_client,gradio_client-process,http")
    _common.add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.turns = 3, 2

    from studio import Settings
    from studio.service import Studio
    from studio.ui import build_app, launch
    from tests.conftest import FAKE_MODELS, write_models
    from tests.helpers.net import free_port
    from tests.test_faults_load import check_stored

    locked: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "database is locked" in record.getMessage():
                locked.append(record.getMessage())

    logging.getLogger().addHandler(Watch(logging.WARNING))
    turns = args.clients * args.turns
    lines = []
    failed = False
    for way in args.ways.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            settings = Settings.from_env(models_file=write_models(folder, FAKE_MODELS), data_dir=folder / "d")
            studio = Studio.from_settings(settings)
            studio.user_id(None)
            app = build_app(studio)
            port = free_port()
            launch(app, studio, host="127.0.0.1", port=port, block=False, queue_size=1024, rate_limit=None)
            try:
                cpu = time.process_time()
                conversations, errors, seconds = clients_in_process(
                    f"http://127.0.0.1:{port}/", way, args.clients, args.turns
                )
                cpu = time.process_time() - cpu
                try:
                    check_stored(studio, conversations, args.turns, "fake")
                    stored = "yes"
                except AssertionError as exc:  # reported in the table, not raised: the other ways still run
                    stored = f"NO: {str(exc).splitlines()[0] if str(exc) else 'turns lost or doubled'}"
            finally:
                app.close()
                studio.close()
        for error in errors[:3]:
            print(f"{way}: {error}")
        failed = failed or bool(errors) or stored != "yes"
        cpu_ms = f"{1000 * cpu / turns:.0f}" + (" (clients included)" if way == "gradio_client" else "")
        lines.append(
            f"| {way} | {args.clients} x {args.turns} | {seconds:.1f} | {turns / seconds:.1f} | "
            f"{1000 * seconds / turns:.0f} | {cpu_ms} | {len(errors)} | {len(locked)} | {stored} |"
        )
    print(
        "| clients | clients x turns | seconds | turns/s | ms/turn | server CPU ms/turn | errors | locked "
        "| every turn stored once, in order |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 1 if failed or locked else 0


if __name__ == "__main__":
    sys.exit(main())
