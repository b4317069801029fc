"""Running a backend's blocking job on its own long-lived worker thread while the caller streams events.

Owns: the worker thread per loaded model, relaying the job's events (progress) to the consumer as they come,
telling the job when its consumer went away, and surfacing the job's failure as a `BackendError`. Used by
backends whose library call blocks for the whole job (a diffusers pipeline, MusicGen's `generate`).
Ignores: what the job does; torch (the job imports what it needs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from studio.backends import BackendError, Event, short_error

# work(events, abandoned) -> result: put Progress events on `events`; give up once `abandoned` is set.
Work = Callable[["queue.Queue[Any]", threading.Event], Any]


class Worker:
    """One thread per loaded model, kept between jobs: a fresh thread per job made every job pay its memory
    anew (page faults), about 4 ms a picture on small images (benchmarks/image_overhead.py)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()  # the model (and torch's global seed): one job at a time
        self._pool: ThreadPoolExecutor | None = None

    def run(self, work: Work, *, stop: threading.Event, what: str) -> Generator[Event, None, Any]:
        """Yield the job's events until it ends; return its result (None when stopped before it began)."""
        abandoned = threading.Event()  # our consumer went away (closed tab, error) without pressing Stop
        events: queue.Queue[Any] = queue.Queue()
        result: list[Any] = []
        failure: list[BaseException] = []

        def job() -> None:
            try:
                with self.lock:
                    if not (stop.is_set() or abandoned.is_set()):
                        result.append(work(events, abandoned))
            except BaseException as exc:  # surfaced in the consumer below
                failure.append(exc)
            finally:
                events.put(None)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        running = self._pool.submit(job)
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            # Reached on normal end, on error, and when the consumer closes us (Stop, closed tab).
            abandoned.set()
            wait([running])
        if failure:
            exc = failure[0]
            if isinstance(exc, BackendError):
                raise exc
            raise BackendError(f"{what} failed: {short_error(exc)}") from exc
        return result[0] if result else None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
