"""ModelManager: loads backends on first use and keeps at most `max_loaded` of them in memory.

Owns: the set of loaded backends, least-recently-used eviction of idle ones, never evicting one in
use, and one load at a time per model (two users asking for the same cold model load it once).
Ignores: memory measurement and budgets (a later issue replaces the count with a byte budget).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from studio.backends import Backend, BackendError
from studio.config import ModelSpec, StudioConfig

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    backend: Backend
    in_use: int = 0
    load_seconds: float = 0.0


class ModelManager:
    def __init__(
        self,
        config: StudioConfig,
        factory: Callable[[ModelSpec], Backend],
        *,
        max_loaded: int = 2,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._config = config
        self._factory = factory
        self._max_loaded = max_loaded
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # order = least recently used first
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def load_seconds(self, model_id: str) -> float | None:
        with self._lock:
            slot = self._slots.get(model_id)
            return slot.load_seconds if slot else None

    @contextmanager
    def use(self, model_id: str) -> Iterator[Backend]:
        """Borrow a loaded backend; it cannot be evicted until the block ends."""
        slot = self._acquire(model_id)
        try:
            yield slot.backend
        finally:
            with self._lock:
                slot.in_use -= 1

    def _acquire(self, model_id: str) -> _Slot:
        spec = self._config.model(model_id)
        with self._lock:
            load_lock = self._load_locks.setdefault(model_id, threading.Lock())
        with load_lock:
            with self._lock:
                slot = self._slots.get(model_id)
                if slot is not None:
                    slot.in_use += 1
                    self._slots.move_to_end(model_id)
                    return slot
            self._make_room()
            backend = self._factory(spec)
            started = time.perf_counter()
            backend.load()  # may raise; nothing is registered then
            slot = _Slot(backend, in_use=1, load_seconds=time.perf_counter() - started)
            log.info("loaded %s in %.1f s", model_id, slot.load_seconds)
            with self._lock:
                self._slots[model_id] = slot
            return slot

    def _make_room(self) -> None:
        with self._lock:
            victims: list[tuple[str, _Slot]] = []
            excess = len(self._slots) + 1 - self._max_loaded
            for mid, slot in list(self._slots.items()):
                if excess <= 0:
                    break
                if slot.in_use == 0:
                    victims.append((mid, self._slots.pop(mid)))
                    excess -= 1
            if excess > 0 and not victims and self._slots and all(s.in_use for s in self._slots.values()):
                busy = ", ".join(self._slots)
                raise BackendError(f"all loaded models are busy ({busy}); try again when one finishes")
        for mid, slot in victims:
            log.info("evicting %s (least recently used)", mid)
            slot.backend.unload()

    def unload(self, model_id: str) -> bool:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.in_use:
                return False
            del self._slots[model_id]
        slot.backend.unload()
        return True

    def unload_all(self) -> None:
        for mid in self.loaded():
            self.unload(mid)

    def preload(self, model_id: str) -> float:
        """Load a model now (e.g. at start-up) and return how long that took."""
        with self.use(model_id):
            pass
        return self.load_seconds(model_id) or 0.0
