"""The one run lifecycle every generation goes through: chat and code turns, image, speech and music jobs.

Owns: `Run`, the steps and their order: begin the row ("running", a short commit), register the job for
Stop and closed tabs, take a place in the device's line and report the wait ("Waiting for the CPU: 2 jobs
ahead"), say when the model loads, stream the backend's events (collecting its notices), turn Stop, a
closed stream and failures into the job's status and error (a fatal accelerator error ends the process
for its supervisor, after the save), and save in `finally`, whatever happened: a `save` that raises
still leaves the row finished (an error with the reason), never "running"; `remove_quietly` deletes a
failed save's files, logging what it cannot.
Ignores: what a tab streams to its caller and how it saves its outputs: each part passes its own `save`
and translates the events `Run.events()` yields (backend events, `Waiting`, `Loading`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sqlmodel import Session

from studio import storage
from studio.backends import Event, ImageOutput, Notice, Request, TextDelta
from studio.errors import StudioError, reason
from studio.manager import faults
from studio.manager.queue import LineFull
from studio.service.core import StudioCore
from studio.storage import Status

T = TypeVar("T")

log = logging.getLogger(__name__)

BROWSER_GONE = "the browser stopped listening"


def remove_quietly(paths: Iterable[Path]) -> None:
    """Delete a failed save's files; what cannot be deleted (a read-only disk) is logged, never raised: the
    clean-up runs inside an error handler that must still finish the row."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s after a failed save: %s", path.name, reason(exc))


@dataclass(frozen=True)
class Waiting:
    """The job waits for its device: the notice to show ("Waiting for the CPU: 2 jobs ahead")."""

    text: str


@dataclass(frozen=True)
class Loading:
    """The job's turn came and its model is not loaded yet: it loads now."""


class Run(Generic[T]):
    """One generation from its begun row to its saved outcome; `result` is what `save` returned.

    Iterate `events()` (closing it when done: the caller's own generator may be closed early) and read
    `status`, `error`, `notices` and `seconds` in `save`, which runs once, in `finally`.
    """

    def __init__(
        self,
        core: StudioCore,
        *,
        model_id: str,
        request: Request,
        row: storage.Generation,
        save: Callable[[Run[T]], T],
        run_key: str | None = None,
    ) -> None:
        self.core, self.model_id, self.request, self.row = core, model_id, request, row
        self.key = run_key or f"run-{id(request)}"
        self._save = save
        self.status = Status.ERROR
        self.error: str | None = None
        self.notices: list[str] = []
        self.started = time.perf_counter()
        self.first_output: float | None = None  # when the first piece of output came (time to first token)
        self.result: T | None = None
        # The safety stage's checks of this run (service/safety.py): the prompt, the text, each picture.
        self.moderation = core.safety.moderation(row.tab, row.user_id)

    @property
    def stopped(self) -> bool:
        return self.request.stop.is_set()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def mark_output(self) -> None:
        """Note the first piece of output (once)."""
        self.first_output = self.first_output or time.perf_counter()

    @property
    def blocked(self) -> bool:
        return self.status == Status.BLOCKED

    def shown_text(self, text: str) -> str:
        """The output text to store and show: a notice instead of it when the safety check blocked it."""
        return self.moderation.withheld_notice() if self.moderation.blocked else text

    def _screen(self, event: Event) -> Event | None:
        """The safety hook on each output event: text held until its sentence is checked (under block),
        pictures checked one by one; None when nothing may be shown now."""
        if isinstance(event, TextDelta):
            shown = self.moderation.feed(event.text)
            if self.moderation.blocked:
                self.request.stop.set()
            return TextDelta(shown) if shown else None
        if isinstance(event, ImageOutput):
            self.moderation.check_picture(event.image, event.index)
        return event

    def _finish(self) -> None:
        """In `finally`: the run's own save, then the safety stage's audit events linked to its row."""
        if self.moderation.blocked:
            self.status, self.error = Status.BLOCKED, self.moderation.message()
        self.notices += [n for n in self.moderation.notices if n not in self.notices]
        self.result = self._save(self)
        self.moderation.record(self.row.id)

    def events(self) -> Generator[Event | Waiting | Loading, None, None]:
        core, stop = self.core, self.request.stop
        fatal: BaseException | None = None
        # A user over the cap on queued jobs is refused before the row exists (with logins on: without
        # them every job is the one local user's own).
        if core.accounts is not None:
            try:
                core.manager.check_room(self.model_id, self.row.user_id)
            except LineFull as exc:
                raise StudioError(str(exc)) from None
        core.begin_row(self.row)  # before lining up: a commit never holds the device
        if self.moderation.check_input(self.request.prompt):  # safety: a refused prompt never runs
            self._finish()
            return
        # In turn by user on its device (remote: at once). Held by this generator, not by a thread: Gradio's
        # pool may step it from a different thread each time.
        turn = core.manager.line_up(self.model_id, in_generator=True, user=self.row.user_id, capped=False)
        core._runs[self.key] = stop
        try:
            for notice in turn.waiting(stop):
                yield Waiting(notice)
            if self.model_id not in core.manager.loaded():
                yield Loading()
            with core.manager.use(self.model_id, turn=turn, stop=stop) as backend:
                stream = backend.generate(self.request)
                try:
                    for event in stream:
                        if isinstance(event, Notice):
                            self.notices.append(event.text)
                        elif (shown := self._screen(event)) is not None:
                            yield shown
                        if self.moderation.blocked:
                            break
                finally:
                    stream.close()  # ends the backend's worker if we were closed early
            if rest := self.moderation.finish():  # the last sentence, checked with the whole text
                yield TextDelta(rest)
            self.status = Status.STOPPED if stop.is_set() else Status.OK
            self.error = core._stop_reasons.get(self.key) if self.status == Status.STOPPED else None
        except GeneratorExit:
            self.status, self.error = Status.STOPPED, BROWSER_GONE
            raise
        except Exception as exc:
            self.status = Status.ERROR
            self.error, fatal = faults.handle(exc, core.manager, self.model_id)
        finally:
            turn.release()  # also when the stream was closed while waiting for its turn
            core._runs.pop(self.key, None)
            core._stop_reasons.pop(self.key, None)
            try:
                self._finish()
            except Exception as exc:  # the save's own fallback failed: the row must not stay "running"
                self._finish_failed(exc)
            if fatal is not None:
                faults.exit_for_supervisor(fatal)

    def _finish_failed(self, exc: Exception) -> None:
        """Last resort when `save` raised: finish the row as an error with the reason, then say so."""
        why = f"the result could not be saved: {reason(exc)}"
        log.warning("run of %s: %s", self.model_id, why)
        self.status, self.error = Status.ERROR, why
        try:
            with Session(self.core.engine, expire_on_commit=False) as session:
                row = session.get(storage.Generation, self.row.id) if self.row.id else None
                if row is not None and row.status == Status.RUNNING.value:
                    row.status, row.error = Status.ERROR.value, why
                    storage.finish_generation(session, generation=row)
        except Exception as again:  # the database too: recovery at the next start marks it
            log.error("run of %s: could not finish its row either: %s", self.model_id, reason(again))
        raise StudioError(why) from None
