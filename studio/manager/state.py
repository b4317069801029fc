"""What the manager knows of each model: a loaded model's slot, and the state the Models panel shows.

Owns: `_Slot` (a loaded backend, its memory pool and size, how many jobs use it, its base when it is a
trained variant) and `ModelState` (one model as the Models panel and `studio models list` show it).
Ignores: loading, budgets and the device line (the manager in __init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.backends import Backend
from studio.manager.memory import Pool


@dataclass
class _Slot:
    backend: Backend
    pool: Pool | None  # None: a remote backend, costs nothing here
    size: int  # bytes, measured after load
    in_use: int = 0
    load_seconds: float = 0.0
    base: _Slot | None = None  # a trained variant's base: kept loaded (in use) while the variant is


@dataclass(frozen=True)
class ModelState:
    """One model as the Models panel and `studio models list` show it."""

    id: str
    loaded: bool
    loading: bool
    in_use: int
    memory_bytes: int  # measured when loaded, else the estimate (0: unknown or remote)
    measured: bool
    pool: str | None
    load_seconds: float | None  # how long the last load took
    loading_for: float | None  # seconds since a running load began
