"""First come, first served turns on a device: the fair line in front of each memory pool.

Owns: `DeviceLine` (a ticket lock with a number of slots, one by default: jobs start in the order they lined
up, whichever model they ask for) and `Turn` (one job's place: how many go before it, waiting that Stop can
end, and leaving the line or the device exactly once, also from a generator closed mid-way), `Skipped`,
what a job stopped before its turn runs instead of its model, and `DeviceDeadlock`: a thread that holds a
running turn and waits for another on the same device would wait forever, so the wait raises at once.
A turn lined up inside a generator (a streamed run, a load) has no owning thread: Gradio steps generators
from a pool of threads, so the thread that holds it changes from step to step and never counts.
Ignores: which models run and memory (the manager budgets it); remote backends never line up (their server
batches), they get a turn that is already running.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator, Iterator

from studio.backends import Backend, BackendError, Event, Request
from studio.backends.params import Params
from studio.config import ModelSpec

# How often a wait looks at the Stop flag (a threading.Event cannot wake a Condition).
STOP_POLL_S = 0.05
# How often a waiting job reports its place in the line.
REPORT_EVERY_S = 0.5

_DEVICE_NAMES = {"cuda": "the GPU", "cpu": "the CPU"}


class DeviceDeadlock(BackendError):
    """A thread waits for a device turn while it holds a running turn on the same device: it never comes."""


class Turn:
    """One job's place in a device's line; `release()` leaves it (waiting or running), at most once.

    `thread` is the ident of the thread that holds it synchronously (lined it up and runs the job itself);
    None for a turn held by a generator, which any thread may step."""

    def __init__(self, line: DeviceLine | None, *, thread: int | None = None) -> None:
        self._line = line
        self.thread = thread
        self.state = "waiting" if line is not None else "running"  # waiting | running | done

    @classmethod
    def free(cls) -> Turn:
        """The turn of a job that needs no device here (a remote model): running at once."""
        return cls(None)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def ahead(self) -> int:
        """Jobs that start or run before this one (0 once it runs)."""
        return self._line.ahead(self) if self._line is not None else 0

    def wait(self, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Block until the turn has come (True), `timeout` passes or `stop` is set (False). A stopped or
        released turn never comes. DeviceDeadlock (the turn leaves the line) when the calling thread holds a
        running turn on this device itself."""
        if self._line is None:
            return self.running
        return self._line.wait(self, timeout, stop)

    def waiting(self, stop: threading.Event | None = None) -> Iterator[str]:
        """While the turn has not come, at once and then every REPORT_EVERY_S: 'Waiting for the GPU: 2 jobs
        ahead'. When `stop` is set meanwhile the job leaves the line and the iteration ends."""
        timeout = 0.0
        while not self.wait(timeout, stop):
            timeout = REPORT_EVERY_S
            if self.state == "done" or (stop is not None and stop.is_set()):
                self.release()
                return
            ahead = self.ahead()
            device = _DEVICE_NAMES.get(self._line.name if self._line else "", "the device")
            yield f"Waiting for {device}: {ahead} job{'s' if ahead != 1 else ''} ahead"

    def release(self) -> None:
        if self._line is not None:
            self._line.release(self)
        else:
            self.state = "done"


class DeviceLine:
    """A FIFO ticket lock with `slots` jobs running at once on one device."""

    def __init__(self, name: str, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("a device runs at least one job at a time")
        self.name = name
        self.slots = slots
        self._cond = threading.Condition()  # its lock is reentrant: wait() may release() under it
        self._line: deque[Turn] = deque()
        self._holders: list[Turn] = []  # the running turns

    @property
    def _running(self) -> int:
        return len(self._holders)

    def line_up(self, owner: int | None = None) -> Turn:
        """Take the next place; `owner` is the ident of the thread that will hold the turn synchronously
        (None: a generator's turn, or a caller that never nests)."""
        turn = Turn(self, thread=owner)
        with self._cond:
            self._line.append(turn)
            self._grant()
        return turn

    def counts(self) -> tuple[int, int]:
        """(running, waiting) right now."""
        with self._cond:
            return self._running, len(self._line)

    def ahead(self, turn: Turn) -> int:
        with self._cond:
            if turn.state != "waiting":
                return 0
            return self._running + self._line.index(turn)

    def wait(self, turn: Turn, timeout: float | None, stop: threading.Event | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if turn.state == "waiting" and self._held_by(threading.get_ident()):
                self.release(turn)
                device = _DEVICE_NAMES.get(self.name, self.name)
                raise DeviceDeadlock(
                    f"deadlock: this thread holds a running turn on {device} "
                    "and now waits for another turn on it, behind itself; keep a model loaded with "
                    "`manager.pin(model_id)` (no turn) around calls that line up themselves, or take the "
                    "turn only around the raw model call"
                )
            while turn.state == "waiting":
                if stop is not None and stop.is_set():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if stop is not None:
                    left = STOP_POLL_S if left is None else min(left, STOP_POLL_S)
                self._cond.wait(left)
            return turn.state == "running"

    def _held_by(self, thread: int) -> bool:
        """Does `thread` hold a running turn here synchronously? (The caller holds the lock.)"""
        return any(t.thread == thread for t in self._holders)

    def release(self, turn: Turn) -> None:
        with self._cond:
            if turn.state == "running":
                self._holders.remove(turn)
            elif turn.state == "waiting":
                self._line.remove(turn)
            else:
                return  # released already
            turn.state = "done"
            self._grant()

    def _grant(self) -> None:
        """Start the jobs at the head of the line while slots are free (the caller holds the lock)."""
        started = False
        while self._line and self._running < self.slots:
            turn = self._line.popleft()
            turn.state = "running"
            self._holders.append(turn)
            started = True
        if started:
            self._cond.notify_all()


class Skipped(Backend):
    """What a job stopped before its turn borrows: nothing loads, nothing is generated."""

    kind = "skipped"
    tabs = frozenset()
    Params = Params

    def __init__(self, spec: ModelSpec) -> None:  # no context: it never touches files
        self.spec = spec

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[Event, None, None]:
        yield from ()
