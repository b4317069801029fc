"""CLI pieces for models and memory: `studio models list` with memory, and `studio serve --preload ID...`.

Owns: the rows `models list` prints (status, memory estimate or "remote", a variant's lineage, the
budget) and loading the models named by `--preload` before the server starts answering.
Ignores: argument parsing of other commands.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from studio.config import Settings, StudioConfig

log = logging.getLogger("studio")


def model_rows(config: StudioConfig, settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """Every model as `studio models list` shows it, and the budget lines. Nothing is loaded in this
    process, so memory is the estimate (models.yaml's memory_gb or the weights on disk)."""
    from studio.backends import BackendContext, backend_class
    from studio.manager import ModelManager
    from studio.manager.memory import format_bytes
    from studio.service.models import rows_for

    context = BackendContext(model_cache=settings.model_cache, base_dir=config.path.parent)
    manager = ModelManager(config, lambda spec: backend_class(spec.backend)(spec, context), settings=settings)
    rows = [
        {
            "id": r.id,
            "tabs": r.tabs,
            "backend": r.backend,
            "source": config.model(r.id).source,
            "status": r.status,
            "memory": r.memory,
            "memory_bytes": r.memory_bytes,
            "description": r.description,
            **_lineage(config.model(r.id)),
        }
        for r in rows_for(config, manager, cache=settings.model_cache)
    ]
    gpu = manager.configured_budget("cuda")  # the device default would mean importing torch here
    budget = [
        f"memory budget for RAM (CPU models): {format_bytes(manager.budget('cpu'))}",
        f"memory budget for GPU memory (CUDA models): {format_bytes(gpu) if gpu else '90 % of the GPU'}",
    ]
    return rows, budget


def _lineage(spec: Any) -> dict[str, Any]:
    """A trained variant's base, method and run (nothing for a models.yaml entry)."""
    if getattr(spec, "base", None) is None:
        return {}
    return {"base": spec.base, "method": spec.method, "run_id": spec.run_id}


def preload(studio: Any, ids: list[str]) -> int:
    """Load each model before serving; unknown ids are an error (2), a failed load a warning (the Models
    panel shows it and the chat tab retries on use)."""
    known = {m.id for m in studio.config.models}
    unknown = [i for i in ids if i not in known]
    if unknown:
        names = ", ".join(sorted(known))
        print(f"error: unknown model(s) for --preload: {', '.join(unknown)}; known: {names}", file=sys.stderr)
        return 2
    for model_id in ids:
        try:
            seconds = studio.manager.preload(model_id)
            log.info("preloaded %s in %.1f s", model_id, seconds)
        except Exception as exc:
            print(f"warning: could not preload {model_id}: {exc}", file=sys.stderr)
    return 0
