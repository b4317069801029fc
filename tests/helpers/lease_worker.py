"""One studio process for the shared-database lease test (tests/test_attack_leases.py).

Run as `python -m tests.helpers.lease_worker MODELS DATA_DIR [HOST]` with STUDIO_DATABASE_URL and
STUDIO_LEASE_SECONDS set: it starts as `studio serve` does (recovering expired rows), begins one slow chat
turn on the fake model, prints `running PROMPT` once the turn's row is stored as running, and keeps
generating until it is killed or the turn ends. HOST, when given, is the host name the process claims,
so it plays a studio on another machine behind a load balancer (whose process ids this host cannot see).
"""

from __future__ import annotations

import socket
import sys

import tests.helpers.fakes  # noqa: F401  (registers the fake backends)
from studio import Settings
from studio.service import Studio


def main(models: str, data_dir: str, host: str | None) -> None:
    if host:
        socket.gethostname = lambda: host  # type: ignore[assignment]
    studio = Studio.from_settings(Settings.from_env(models_file=models, data_dir=data_dir))
    studio.recover_interrupted()  # as `studio serve` does when it starts
    name = f"SLOW turn of {data_dir}"  # the test finds this process's row by its prompt
    turn = studio.chat(model_id="fake", message=name, params={"max_new_tokens": 4096}, run_key="k")
    first = True
    for _ in turn:
        if first:
            print(f"running {name}", flush=True)
            first = False
    studio.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
