"""Fair turns on a device: the line in front of each memory pool, taken in turn by user.

Owns: `DeviceLine` (a ticket lock with a number of slots, one by default: each user's jobs start in the
order that user lined them up, whichever model they ask for, and a free slot goes to the waiting user
served longest ago, so one user's 20 queued jobs hold another user's job back by at most one job per
slot; a user may hold at most `per_user` places, waiting or running, and one more is refused with
`LineFull`) and `Turn` (one job's place: how many go before it, waiting that Stop can
end, and leaving the line or the device exactly once, also from a generator closed mid-way), `Skipped`,
what a job stopped before its turn runs instead of its model, and `DeviceDeadlock`: a thread that holds a
running turn and waits for another on the same device would wait forever, so the wait raises at once.
A turn lined up inside a generator (a streamed run, a load) has no owning thread: Gradio steps generators
from a pool of threads, so the thread that holds it changes from step to step and never counts.
Ignores: which models run and memory (the manager budgets it); remote backends never line up (their server
batches), they get a turn that is already running.
"""

from __future__ import annotations

import itertools
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


class LineFull(BackendError):
    """A user already holds as many places in a device's line as one user may."""


class Turn:
    """One job's place in a device's line; `release()` leaves it (waiting or running), at most once.

    `thread` is the ident of the thread that holds it synchronously (lined it up and runs the job itself);
    None for a turn held by a generator, which any thread may step."""

    def __init__(self, line: DeviceLine | None, *, thread: int | None = None, user: object = None) -> None:
        self._line = line
        self.thread = thread
        self.user = user  # whose job it is: the line takes users in turn
        self.ticket = 0  # the order it lined up in
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
    """A ticket lock with `slots` jobs running at once on one device, fair between users: each user's jobs
    wait in their own queue, and a free slot goes to the waiting user served longest ago (one never served
    first; ties by who lined up first), so no user waits behind more than one job per slot of each other
    user. `per_user` (None: no cap) is how many places one user may hold, waiting or running."""

    def __init__(self, name: str, slots: int = 1, *, per_user: int | None = None) -> None:
        if slots < 1:
            raise ValueError("a device runs at least one job at a time")
        self.name = name
        self.slots = slots
        self.per_user = per_user
        self._cond = threading.Condition()  # its lock is reentrant: wait() may release() under it
        self._queues: dict[object, deque[Turn]] = {}  # each user's waiting turns, oldest first
        self._served: dict[object, int] = {}  # user -> the grant count when it last got a slot
        self._grants = 0
        self._tickets = itertools.count()
        self._holders: list[Turn] = []  # the running turns

    @property
    def _running(self) -> int:
        return len(self._holders)

    def line_up(self, owner: int | None = None, *, user: object = None, capped: bool = True) -> Turn:
        """Take the next place of `user` (None: jobs nobody asked for, such as a preload, share one queue);
        `owner` is the ident of the thread that will hold the turn synchronously (None: a generator's
        turn, or a caller that never nests). LineFull when the user holds `per_user` places already and
        `capped` (False: the one user of a studio without logins, whose jobs are all its own)."""
        turn = Turn(self, thread=owner, user=user)
        with self._cond:
            turn.ticket = next(self._tickets)
            if capped:
                self.check_room(user)
            self._queues.setdefault(user, deque()).append(turn)
            self._grant()
        return turn

    def check_room(self, user: object) -> None:
        """LineFull when `user` already holds `per_user` places (None: nobody's jobs, never capped)."""
        if self.per_user is None or user is None:
            return
        with self._cond:
            held = len(self._queues.get(user, ())) + sum(t.user == user for t in self._holders)
        if held >= self.per_user:
            raise LineFull(
                f"you already have {held} jobs waiting or running on "
                f"{_DEVICE_NAMES.get(self.name, self.name)}, the most one user may have; "
                "wait for one to finish"
            )

    def counts(self) -> tuple[int, int]:
        """(running, waiting) right now."""
        with self._cond:
            return self._running, sum(len(q) for q in self._queues.values())

    def ahead(self, turn: Turn) -> int:
        """Jobs that start before this one if nobody else lines up: the running ones and those the line
        would grant first."""
        with self._cond:
            if turn.state != "waiting":
                return 0
            queues = {user: deque(queue) for user, queue in self._queues.items()}
            served = dict(self._served)
            count, grants = self._running, self._grants
            while True:
                user = self._next_user(queues, served)
                head = queues[user].popleft()
                if head is turn:
                    return count
                count, grants = count + 1, grants + 1
                served[user] = grants
                if not queues[user]:
                    del queues[user]

    @staticmethod
    def _next_user(queues: dict[object, deque[Turn]], served: dict[object, int]) -> object:
        """The waiting user a free slot goes to: served longest ago (never: first), then the oldest ticket."""
        return min(queues, key=lambda user: (served.get(user, -1), queues[user][0].ticket))

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
                queue = self._queues[turn.user]
                queue.remove(turn)
                if not queue:
                    del self._queues[turn.user]
            else:
                return  # released already
            turn.state = "done"
            self._grant()

    def _grant(self) -> None:
        """Start jobs while slots are free, each the oldest job of the user served longest ago (the caller
        holds the lock)."""
        started = False
        while self._queues and self._running < self.slots:
            user = self._next_user(self._queues, self._served)
            turn = self._queues[user].popleft()
            if not self._queues[user]:
                del self._queues[user]
            self._grants += 1
            self._served[user] = self._grants
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
