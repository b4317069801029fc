"""A real OpenAI-compatible server for tests and benchmarks: `transformers serve` on a local model folder.

Owns: starting `transformers serve <folder>` (needs `transformers[serving]`) on a free loopback port in a
subprocess, waiting until it answers, and stopping it. Nothing is downloaded: the folder is a tiny
checkpoint from `tests.helpers.tiny_chat`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.net import free_port
from tests.helpers.tiny_chat import OFFLINE_ENV


@contextmanager
def transformers_serve(
    model_dir: str | Path, *, timeout: float = 90.0, log: Path | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """Serve `model_dir` and yield the base URL (`http://127.0.0.1:<port>/v1`); the model name is the path.
    `extra`: more `transformers serve` flags (e.g. --continuous-batching)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()",
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        *extra,
    ]
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE_ENV})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`transformers serve` exited with {proc.returncode} (log: {log})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`transformers serve` did not answer within {timeout:g} s (log: {log})")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]
