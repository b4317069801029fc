"""ModelManager: loads backends on first use and keeps them within a memory budget.

Owns: the set of loaded backends; a budget per memory pool (RAM for CPU models, GPU memory for CUDA
models) from the argument, the settings' STUDIO_MEMORY_BUDGET, models.yaml's `memory_budget_gb` or the
device; a size per model (models.yaml's `memory_gb` or the weights on disk before load, measured after);
evicting least-recently-used idle models to make room; never evicting one in use or pinned; a trained variant
loaded on its base (the base held while the variant is, the variant counted as its adapter); refusing a model
bigger than the whole budget; one load at a time per model; the fair line of each device (in-process jobs
start in turn by user, `jobs_per_device` at a time, at most STUDIO_QUEUED_PER_USER places each; remote
backends skip it; a thread waiting behind its own running turn raises DeviceDeadlock); and the state
the Models panel and the CLI show.
Ignores: what backends do with memory, and remote backends' memory and scheduling (their server's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from studio import sources
from studio.backends import Backend, BackendError
from studio.config import ModelSpec, Settings, StudioConfig
from studio.manager import memory
from studio.manager.memory import GB, Pool, format_bytes
from studio.manager.queue import DeviceLine, Skipped, Turn
from studio.manager.state import ModelState, _Slot

log = logging.getLogger(__name__)

__all__ = ["ModelManager", "ModelState"]


class ModelManager:
    def __init__(
        self,
        config: StudioConfig,
        factory: Callable[[ModelSpec], Backend],
        *,
        budget: dict[Pool, int] | None = None,
        max_loaded: int | None = None,
        jobs_per_device: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        """`budget` and `jobs_per_device` win over `settings` (STUDIO_MEMORY_BUDGET, STUDIO_JOBS_PER_DEVICE;
        read from the environment when not given), which win over models.yaml."""
        if max_loaded is not None and max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._config = config
        self._factory = factory
        self._max_loaded = max_loaded  # an optional cap on the count, on top of the memory budget
        if settings is None:
            settings = Settings.from_env()
        self._configured = dict(budget) if budget else memory.configured_budget(config, settings)
        self._budget = dict(self._configured)
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # order = least recently used first
        self._loading: dict[str, tuple[float, Pool | None, int]] = {}  # id -> (start, pool, reserved)
        self._estimates: dict[str, int] = {}  # from models.yaml or the disk
        self._measured: dict[str, int] = {}  # from earlier loads in this process
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._jobs = jobs_per_device or settings.jobs_per_device or config.jobs_per_device
        self._lines: dict[Pool, DeviceLine] = {}
        self._per_user = settings.queued_per_user  # places one user may hold in a device's line
        self._pools: dict[str, Pool | None] = {}  # model id -> its pool (None: remote), asked once
        self._imports_done = threading.Event()  # cleared while `warm_imports` runs
        self._imports_done.set()

    # -- what is loaded ----------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def load_seconds(self, model_id: str) -> float | None:
        with self._lock:
            slot = self._slots.get(model_id)
            return slot.load_seconds if slot else None

    def configured_budget(self, pool: Pool) -> int | None:
        """The budget set by the caller, STUDIO_MEMORY_BUDGET or models.yaml; None: the device default."""
        return self._configured.get(pool)

    def budget(self, pool: Pool) -> int:
        """The pool's budget in bytes; the device default is computed on first need."""
        if pool not in self._budget:
            self._budget[pool] = memory.default_budget(pool)
        return self._budget[pool]

    def used(self, pool: Pool) -> int:
        with self._lock:
            return self._used(pool)

    def _used(self, pool: Pool) -> int:
        held = sum(s.size for s in self._slots.values() if s.pool == pool)
        return held + sum(size for _, p, size in self._loading.values() if p == pool)

    def estimate(self, spec: ModelSpec) -> int:
        """Bytes a model should take once loaded: what it took last time in this process, else models.yaml's
        memory_gb, else its weights on disk."""
        if spec.id in self._measured:
            return self._measured[spec.id]
        if spec.memory_gb is not None:
            return int(spec.memory_gb * GB)
        if spec.id in self._estimates:
            return self._estimates[spec.id]
        backend = self._factory(spec)  # cheap by contract; gives the model cache and the base folder
        size = 0
        if not getattr(backend, "remote", False):
            ctx = backend.context
            converted = ctx.model_cache / spec.id / "converted"  # a GGUF dequantised once
            try:
                where = (
                    converted
                    if converted.is_dir()
                    else sources.local_path(spec, cache=ctx.model_cache, base_dir=ctx.base_dir)
                )
            except sources.SourceError:
                where = None
            if isinstance(where, str):
                where = memory.hub_snapshot(where)
            size = memory.weights_on_disk(where) if where is not None else 0
        if size:  # unknown (not downloaded yet) is asked again: a pull may have happened meanwhile
            self._estimates[spec.id] = size
        return size

    def states(self) -> list[ModelState]:
        now = time.perf_counter()
        out = []
        for spec in self._config.models:
            with self._lock:
                slot = self._slots.get(spec.id)
                loading = self._loading.get(spec.id)
            if slot is not None:
                out.append(
                    ModelState(
                        spec.id, True, False, slot.in_use, slot.size, True, slot.pool, slot.load_seconds, None
                    )
                )
                continue
            size = loading[2] if loading else self.estimate(spec)
            out.append(
                ModelState(
                    spec.id,
                    False,
                    loading is not None,
                    0,
                    size,
                    False,
                    loading[1] if loading else None,
                    None,
                    now - loading[0] if loading else None,
                )
            )
        return out

    # -- the device's line ---------------------------------------------------------------------------
    def line_up(
        self, model_id: str, *, in_generator: bool = False, user: object = None, capped: bool = True
    ) -> Turn:
        """Take a place in the line of the model's device now (first come, first served across every model
        and tab); a remote model's turn runs at once. Pass it to `use()`; release it if `use()` never runs.

        The calling thread holds the turn: waiting for another turn on the same device while it runs raises
        DeviceDeadlock. `in_generator=True` for a turn held by a generator (Gradio steps those from any
        thread of its pool), which no thread holds. `user` (a user id): the line takes users in turn and
        refuses one more place than STUDIO_QUEUED_PER_USER allows (LineFull) when `capped`."""
        pool = self._pool_for(model_id)
        if pool is None:
            return Turn.free()
        with self._lock:
            line = self._lines.get(pool)
            if line is None:
                line = self._lines[pool] = DeviceLine(pool, self._jobs, per_user=self._per_user)
        return line.line_up(None if in_generator else threading.get_ident(), user=user, capped=capped)

    def check_room(self, model_id: str, user: object) -> None:
        """LineFull when `user` holds STUDIO_QUEUED_PER_USER places on the model's device already: asked
        before a job stores its row, so a refused job leaves nothing (remote models never line up)."""
        pool = self._pool_for(model_id)
        if pool is None:
            return
        with self._lock:
            line = self._lines.get(pool)
        if line is not None:
            line.check_room(user)

    def jobs(self, pool: Pool) -> tuple[int, int]:
        """(running, waiting) in-process jobs on a device."""
        with self._lock:
            line = self._lines.get(pool)
        return line.counts() if line else (0, 0)

    @property
    def jobs_per_device(self) -> int:
        return self._jobs

    def _pool_for(self, model_id: str) -> Pool | None:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is not None:
                return slot.pool
            if model_id in self._pools:
                return self._pools[model_id]
        spec = self._config.model(model_id)
        pool = self._pool_of(spec, self._factory(spec))
        with self._lock:
            self._pools[model_id] = pool
        return pool

    # -- borrowing ---------------------------------------------------------------------------------
    @contextmanager
    def use(
        self, model_id: str, *, turn: Turn | None = None, stop: threading.Event | None = None
    ) -> Iterator[Backend]:
        """Borrow a loaded backend; it cannot be evicted until the block ends.

        An in-process model first waits for its turn on its device (`turn` from `line_up()` when the caller
        showed the wait itself), then loads if needed and runs; the turn is released when the block ends, by
        an exception or a generator closed mid-way too. When `stop` is set before the turn comes, nothing
        loads or runs: the block gets a backend that yields nothing."""
        turn = turn or self.line_up(model_id)
        try:
            if not turn.wait(stop=stop):
                yield Skipped(self._config.model(model_id))
                return
            slot = self._acquire(model_id)
            try:
                yield slot.backend
            finally:
                with self._lock:
                    slot.in_use -= 1
        finally:
            turn.release()

    @contextmanager
    def pin(self, model_id: str) -> Iterator[Backend]:
        """Keep a model loaded (never evicted) for the block WITHOUT holding a turn on its device, so the
        generations inside the block line up as usual; a model not loaded yet loads first, in its turn. For
        callers that hold a model across service calls (benchmarks, warm-ups); running the backend directly
        needs a turn: `use()`."""
        slot = self._pinned(model_id)
        if slot is None:
            with self.use(model_id):  # the load waits for its turn, like preload()
                slot = self._pinned(model_id)
        assert slot is not None
        try:
            yield slot.backend
        finally:
            with self._lock:
                slot.in_use -= 1

    def _pinned(self, model_id: str) -> _Slot | None:
        """The loaded model's slot, counted as in use once more; None when it is not loaded."""
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is not None:
                slot.in_use += 1
                self._slots.move_to_end(model_id)
            return slot

    def _acquire(self, model_id: str) -> _Slot:
        spec = self._config.model(model_id)
        with self._lock:
            load_lock = self._load_locks.setdefault(model_id, threading.Lock())
        with load_lock:
            slot = self._pinned(model_id)
            if slot is not None:
                return slot
            backend = self._factory(spec)
            base = self._share_base(spec, backend)
            try:
                pool = self._pool_of(spec, backend)
                need = self.estimate(spec) if pool else 0  # a variant: its adapter's files
                self._make_room(spec.id, pool, need)  # reserves `need` in the pool, or raises
                slot = self._load(spec, backend, pool, need)
            except BaseException:
                self._let_go(base)
                raise
            slot.base = base
            return slot

    def _share_base(self, spec: ModelSpec, backend: Backend) -> _Slot | None:
        """A trained variant (a spec with a `base`) runs on its base's loaded weights: load the base now (in
        the caller's turn on the device) and keep it in use while the variant is loaded, so a variant costs
        its adapter, not a second base."""
        base_id = getattr(spec, "base", None)
        if base_id is None:
            return None
        base = self._acquire(base_id)
        try:
            backend.share_base(base.backend)
        except BaseException:
            self._let_go(base)
            raise
        return base

    def _let_go(self, slot: _Slot | None) -> None:
        if slot is not None:
            with self._lock:
                slot.in_use -= 1

    def _load(self, spec: ModelSpec, backend: Backend, pool: Pool | None, need: int) -> _Slot:
        before = memory.cuda_allocated() if pool == "cuda" else memory.process_rss()
        started = time.perf_counter()
        # A second thread importing transformers while the warm-up still does can see the half-made lazy
        # module ("cannot import name 'AutoModelForCausalLM'"): the first load waits for the warm-up.
        self._imports_done.wait()
        try:
            backend.load()  # may raise; nothing is registered then
        except BaseException:
            with self._lock:
                self._loading.pop(spec.id, None)
            memory.release_memory()
            raise
        seconds = time.perf_counter() - started
        size = 0
        if pool is not None:
            after = memory.cuda_allocated() if pool == "cuda" else memory.process_rss()
            # The backend's own count (parameters and buffers) is exact on the CPU; on a GPU the allocator's
            # delta also sees buffers and workspaces. Either falls back to the estimate.
            counted = backend.memory_bytes()
            delta = max(after - before, 0)
            size = (delta if pool == "cuda" and delta else counted or delta) or need
        slot = _Slot(backend, pool, size, in_use=1, load_seconds=seconds)
        with self._lock:
            self._loading.pop(spec.id, None)
            self._slots[spec.id] = slot
            self._measured[spec.id] = size  # the next load of this model knows its real size
        log.info("loaded %s in %.1f s (%s)", spec.id, seconds, format_bytes(size) if pool else "remote")
        if pool is not None and size > need:
            self._evict_idle(pool, 0)  # the estimate was low: make room after the fact, best effort
        return slot

    def _pool_of(self, spec: ModelSpec, backend: Backend) -> Pool | None:
        if getattr(backend, "remote", False):
            return None
        if spec.device == "auto":
            return "cuda" if memory.cuda_available() else "cpu"
        return spec.device

    def _over(self, pool: Pool | None, need: int, victims: set[str]) -> bool:
        if self._max_loaded is not None:
            count = len(self._slots) + len(self._loading) - len(victims) + 1
            if count > self._max_loaded:
                return True
        if pool is None:
            return False
        freed = sum(self._slots[v].size for v in victims if self._slots[v].pool == pool)
        return self._used(pool) - freed + need > self.budget(pool)

    def _make_room(self, model_id: str, pool: Pool | None, need: int) -> None:
        if pool is not None and need > self.budget(pool):
            raise BackendError(
                f"model {model_id!r} needs about {format_bytes(need)} of {memory.pool_name(pool)} but the "
                f"whole memory budget is {format_bytes(self.budget(pool))}; raise memory_budget_gb in "
                "models.yaml or STUDIO_MEMORY_BUDGET, or choose a smaller model"
            )
        with self._lock:
            victims: list[str] = []
            for mid, slot in self._slots.items():  # least recently used first
                if not self._over(pool, need, set(victims)):
                    break
                if slot.in_use == 0 and (self._max_loaded is not None or slot.pool == pool):
                    victims.append(mid)
            if self._over(pool, need, set(victims)):
                busy = ", ".join(m for m, s in self._slots.items() if s.in_use) or "none"
                loading = ", ".join(self._loading) or "none"
                raise BackendError(
                    f"no room for model {model_id!r} (about {format_bytes(need)}): the models that would "
                    f"have to make room are busy (in use: {busy}; loading: {loading}); try again when one "
                    "finishes"
                )
            dropped = [(mid, self._slots.pop(mid)) for mid in victims]
            self._loading[model_id] = (time.perf_counter(), pool, need)
        self._unload_slots(dropped, "least recently used")

    def _evict_idle(self, pool: Pool, need: int) -> None:
        with self._lock:
            victims: list[str] = []
            for mid, slot in self._slots.items():
                if self._used(pool) - sum(self._slots[v].size for v in victims) + need <= self.budget(pool):
                    break
                if slot.in_use == 0 and slot.pool == pool:
                    victims.append(mid)
            dropped = [(mid, self._slots.pop(mid)) for mid in victims]
        self._unload_slots(dropped, "over budget after a load")

    def _unload_slots(self, dropped: list[tuple[str, _Slot]], why: str) -> None:
        for mid, slot in dropped:
            log.info("evicting %s (%s, %s)", mid, why, format_bytes(slot.size))
            slot.backend.unload()
            self._let_go(slot.base)  # a variant's base may go too, once nothing else holds it
        if dropped:
            memory.release_memory()

    # -- explicit control --------------------------------------------------------------------------
    def unload(self, model_id: str) -> bool:
        """Unload an idle model; False when it is not loaded or is in use."""
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.in_use:
                return False
            del self._slots[model_id]
        self._unload_slots([(model_id, slot)], "asked")
        return True

    def unload_all(self) -> None:
        while any(self.unload(mid) for mid in self.loaded()):  # again: a variant gone lets its base go
            pass

    def warm_imports(self, *modules: str) -> None:
        """Import the model libraries ahead of the first load (in a background thread at start-up); loads
        wait until this is done rather than importing the same lazy modules beside it."""
        import importlib

        self._imports_done.clear()
        try:
            for name in modules:
                importlib.import_module(name)
        finally:
            self._imports_done.set()

    def preload(self, model_id: str, *, turn: Turn | None = None) -> float:
        """Load a model now (e.g. at start-up), in its turn on the device, and return how long that took."""
        with self.use(model_id, turn=turn):
            pass
        return self.load_seconds(model_id) or 0.0
