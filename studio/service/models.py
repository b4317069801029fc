"""The Models panel's side of the service: every model's status and memory, and loading or unloading one.

Owns: `ModelRow` (what the panel and `studio models list` show), a model's status word (loaded, loading,
ready, not downloaded, missing, remote), whether a model can run, pulling and loading with progress
updates, and unloading on request.
Ignores: Gradio, and how memory is budgeted (the manager decides).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import sources
from studio.backends import backend_class, engine, validate_params
from studio.config import ModelSpec, StudioConfig
from studio.errors import StudioError
from studio.manager.memory import format_bytes
from studio.service.checks import TAB_DEFAULTS, model_for, require_weights, weights_status
from studio.service.core import StudioCore
from studio.service.types import ModelInfo

if TYPE_CHECKING:
    from studio.manager import ModelManager, ModelState


@dataclass(frozen=True)
class ModelRow:
    id: str
    tabs: list[str]
    backend: str
    status: (
        str  # loaded | loading | converting for the first time | ready | not downloaded | missing | remote
    )
    memory: str  # "1.20 GB" measured, "~1.20 GB" estimated, "" unknown, "remote"
    memory_bytes: int
    in_use: int
    load_seconds: float | None
    description: str


def rows_for(config: StudioConfig, manager: ModelManager, *, cache: Path) -> list[ModelRow]:
    base = config.path.parent
    rows = []
    for state in manager.states():
        spec = config.model(state.id)
        status = "loaded" if state.loaded else _loading_word(spec, cache, base) if state.loading else None
        rows.append(
            ModelRow(
                spec.id,
                list(spec.tabs),
                engine(spec.backend),
                status or weights_status(spec, cache=cache, base_dir=base),
                _memory_text(state, spec),
                state.memory_bytes,
                state.in_use,
                state.load_seconds,
                spec.description,
            )
        )
    return rows


CONVERTING = "converting for the first time"


def _loading_word(spec: ModelSpec, cache: Path, base_dir: Path) -> str:
    return CONVERTING if converts_first(spec, cache, base_dir) else "loading"


def converts_first(spec: ModelSpec, cache: Path, base_dir: Path) -> bool:
    """Whether loading converts a GGUF file first: transformers does once; llama.cpp reads it as it is."""
    reads_gguf = getattr(backend_class(spec.backend), "reads_gguf", False)
    return not reads_gguf and sources.needs_conversion(spec, cache=cache, base_dir=base_dir)


def _memory_text(state: ModelState, spec: ModelSpec) -> str:
    if getattr(backend_class(spec.backend), "remote", False):
        return "remote"
    if not state.memory_bytes:
        return ""
    return format_bytes(state.memory_bytes) if state.measured else f"~{format_bytes(state.memory_bytes)}"


class ModelsPanel(StudioCore):
    """The models every tab lists, the Models panel's rows, loading and unloading on request."""

    def models(self, tab: str | None = None) -> list[ModelInfo]:
        specs = self.config.for_tab(tab) if tab else self.config.models
        return [
            ModelInfo(s.id, list(s.tabs), engine(s.backend), self.model_status(s.id), s.description)
            for s in specs
        ]

    def model_status(self, model_id: str) -> str:
        spec = self.config.model(model_id)
        if model_id in self.manager.loaded():
            return "loaded"
        if any(s.id == model_id and s.loading for s in self.manager.states()):
            return _loading_word(spec, self.settings.model_cache, self.config.path.parent)
        return weights_status(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)

    def can_run(self, model_id: str) -> bool:
        """Whether Generate/Load may be offered for this model: its weights are here (or on a server).
        The UIs disable their buttons otherwise; the service refuses such a run anyway."""
        return self.model_status(model_id) not in ("not downloaded", "missing")

    def load_note(self, model_id: str) -> str:
        """What to show while a model loads: a GGUF model's first load converts it (about 25 s), later
        ones take a second; the tabs show this rather than a bare wait."""
        spec = self.config.model(model_id)
        if converts_first(spec, self.settings.model_cache, self.config.path.parent):
            return (
                f"Converting {model_id} for the first time (GGUF to safetensors, about 25 s on 2 cores; "
                "later loads take a second)…"
            )
        return f"Loading {model_id}…"

    def check_weights(self, model_id: str) -> None:
        """Raise StudioError with the pull command when the model's weights are not here (UIs call it
        before queueing a run)."""
        spec = model_for(self.config, model_id, None)
        require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)

    def pull_model(self, model_id: str, *, interval: float = 0.5) -> Iterator[str]:
        """Fetch a model's weights (`studio models pull`), yielding progress lines; StudioError on failure.

        The download runs on a thread of its own; the lines say how long it has run and how much of the
        model's folder has arrived (the libraries' own progress bars go to the terminal)."""
        spec = model_for(self.config, model_id, None)
        if self.can_run(model_id):
            yield f"{model_id} is already here"
            return
        cache, base = self.settings.model_cache, self.config.path.parent
        failure: list[BaseException] = []
        where: list[Path | str] = []

        def run() -> None:
            try:
                where.append(sources.pull(spec, cache=cache, base_dir=base, progress=False))
                sources.pull_loras(spec, base_dir=base)
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"pull-{model_id}", daemon=True)
        started = time.perf_counter()
        worker.start()
        while worker.is_alive():
            got = sources.fetched_bytes(spec, cache=cache, base_dir=base)
            size = f", {format_bytes(got)} so far" if got else ""
            yield f"pulling {model_id}: {time.perf_counter() - started:.0f} s{size}"
            worker.join(interval)
        if failure:
            raise StudioError(f"could not pull {model_id}: {failure[0]}") from failure[0]
        yield f"{model_id} is ready ({where[0] if where else 'done'})"

    def default_params(self, model_id: str, tab: str | None = None) -> dict[str, Any]:
        """The parameters a run starts from: the backend's, the model's, then the tab's (code: cooler)."""
        spec = model_for(self.config, model_id, None)
        values = {**spec.defaults, **TAB_DEFAULTS.get(tab or "", {})}
        return validate_params(backend_class(spec.backend), values).model_dump()

    def model_rows(self) -> list[ModelRow]:
        return rows_for(self.config, self.manager, cache=self.settings.model_cache)

    def memory_summary(self) -> str:
        """'RAM: 1.2 GB of 16.0 GB used by models' for each pool a loaded model uses."""
        pools = sorted({s.pool for s in self.manager.states() if s.loaded and s.pool}) or ["cpu"]
        names = {"cpu": "RAM", "cuda": "GPU memory"}
        return "; ".join(
            f"{names[p]}: {format_bytes(self.manager.used(p))} of {format_bytes(self.manager.budget(p))} "  # type: ignore[arg-type]
            "used by models"
            for p in pools
        )

    def load_model(self, model_id: str, *, interval: float = 0.25, user: str | None = None) -> Iterator[str]:
        """Load a model, yielding progress lines while it loads; StudioError when it cannot load, or when
        logins are on and `user` is no admin (loading and unloading change what everyone waits for)."""
        self.require_admin(user, "load or unload models")
        self._known(model_id)
        if model_id in self.manager.loaded():
            yield f"{model_id} is already loaded"
            return
        spec = self.config.model(model_id)
        try:
            require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        except StudioError as exc:
            raise StudioError(f"could not load {model_id}: {exc}") from None
        failure: list[BaseException] = []
        # A load waits for its turn on the device like a generation; the worker thread runs it, so the turn
        # is held by this generator, not by the thread that steps it.
        turn = self.manager.line_up(model_id, in_generator=True)

        def run() -> None:
            try:
                self.manager.preload(model_id, turn=turn)
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"load-{model_id}", daemon=True)
        worker.start()
        estimate = self.manager.estimate(self.config.model(model_id))
        converting = converts_first(spec, self.settings.model_cache, self.config.path.parent)
        started = None
        while worker.is_alive():
            if not turn.running and turn.state == "waiting":
                ahead = turn.ahead()
                yield f"{model_id} is waiting for its turn: {ahead} job{'s' if ahead != 1 else ''} ahead"
            else:
                started = started or time.perf_counter()
                size = f" (about {format_bytes(estimate)})" if estimate else ""
                took = time.perf_counter() - started
                if converting:  # the first load of a GGUF model: tell why it takes 25 s, not 1
                    first = "for the first time (about 25 s; later loads are quick)"
                    yield f"converting {model_id} {first}: {took:.1f} s"
                else:
                    yield f"loading {model_id}{size}: {took:.1f} s"
            worker.join(interval)
        if failure:
            raise StudioError(f"could not load {model_id}: {failure[0]}") from failure[0]
        yield f"{model_id} loaded in {self.manager.load_seconds(model_id) or 0.0:.1f} s"

    def unload_model(self, model_id: str, *, user: str | None = None) -> str:
        self.require_admin(user, "load or unload models")
        self._known(model_id)
        if model_id not in self.manager.loaded():
            return f"{model_id} is not loaded"
        if not self.manager.unload(model_id):
            raise StudioError(f"{model_id} is in use; unload it when its generation has finished")
        return f"{model_id} unloaded"

    def _known(self, model_id: str) -> None:
        try:
            self.config.model(model_id)
        except KeyError as exc:
            raise StudioError(exc.args[0]) from None
