"""Many threads doing one thing at the same moment: the set-up of races, bursts and load tests.

`together(n, work)` runs `work(i, ready)` on `n` threads; each calls `ready()` when set up, and all go on
from there at once (a barrier), so set-up (a client, a connection) does not spread the start out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Work = Callable[[int, Callable[[], object]], object]


def together(n: int, work: Work) -> tuple[list[str], float]:
    """Run `work(i, ready)` for i in range(n), one thread each; returns what they raised (`"<i>: <exc>"`,
    any exception: in a race every failure is a bug) and the seconds from starting them to the last end."""
    ready = threading.Barrier(n)
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            work(i, ready.wait)
        except BaseException as exc:
            errors.append(f"{i}: {exc!r}")
            ready.abort()  # one that fails before `ready()` would leave the others waiting for ever

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors, time.perf_counter() - started
