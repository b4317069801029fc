"""Load through the served app: 50 concurrent API clients x 20 chat turns (fake backend), rows checked.

    python benchmarks/load_api.py [--clients 50] [--turns 20] [--model fake]

Prints turns a second, the time per turn the GPU queue serialises, and whether every turn was stored
exactly once with no "database is locked". The test tier runs the same check with 50 clients x 1 turn
(tests/test_faults_load.py), because the full run takes about 95 s on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401  (first: offline, stable environment)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()

    from studio import Settings
    from studio.service import Studio
    from studio.ui import build_app, launch
    from tests.conftest import FAKE_MODELS, write_models
    from tests.test_faults_load import check_stored, run_clients
    from tests.test_security import free_port

    locked: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "database is locked" in record.getMessage():
                locked.append(record.getMessage())

    logging.getLogger().addHandler(Watch(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings.from_env(models_file=write_models(folder, FAKE_MODELS), data_dir=folder / "d")
        studio = Studio.from_settings(settings)
        studio.user_id(None)
        app = build_app(studio)
        port = free_port()
        launch(app, studio, host="127.0.0.1", port=port, block=False, queue_size=1024, rate_limit=None)
        try:
            conversations, errors, seconds = run_clients(
                f"http://127.0.0.1:{port}/", "fake", clients=args.clients, turns=args.turns
            )
            check_stored(studio, conversations, args.turns, "fake")
        finally:
            app.close()
            studio.close()
    turns = args.clients * args.turns
    print("| API clients x turns | turns | seconds | turns/s | ms/turn | errors | 'database is locked' |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.clients} x {args.turns} | {turns} | {seconds:.1f} | {turns / seconds:.1f} | "
        f"{1000 * seconds / turns:.0f} | {len(errors)} | {len(locked)} |"
    )
    print("every turn stored exactly once, in order, in its own conversation")
    return 1 if errors or locked else 0


if __name__ == "__main__":
    sys.exit(main())
