"""Faults a generation can hit on an accelerator, and what the studio does about each.

Owns: recognising torch's out-of-memory error and unrecoverable device errors by class name and
message (so the service never imports torch), freeing memory after an OOM (unloading idle models
through the manager's public methods), and exiting the process after an unrecoverable error so a
supervisor (systemd `Restart=on-failure`) starts a clean one.
Ignores: which models to keep (the manager's budget) and how errors are shown (the service and UI).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from studio.backends import BackendError, release_accelerator_memory

log = logging.getLogger(__name__)

OOM_MESSAGE = (
    "the model ran out of GPU memory. Idle models were unloaded to free memory: try again "
    "(fewer or smaller images, fewer new tokens or a shorter conversation need less)"
)
# Exit status after an unrecoverable device error: EX_SOFTWARE, non-zero so `Restart=on-failure` restarts.
FATAL_EXIT_CODE = 70

# After these the CUDA context is corrupt: every later call fails, only a new process recovers.
_FATAL_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "uncorrectable ecc error",
    "an illegal instruction was encountered",
    "cuda error: unknown error",
    "device not ready",
    "cublas_status_execution_failed",
)


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (alias torch.cuda.OutOfMemoryError), or the same text from older code paths."""
    if "OutOfMemoryError" in _names(exc):
        return True
    text = str(exc).lower()
    return "out of memory" in text and ("cuda" in text or "mps" in text or "hip" in text)


def is_fatal_device_error(exc: BaseException) -> bool:
    """An accelerator error after which the process cannot go on (not an OOM: that one is recoverable)."""
    if is_out_of_memory(exc):
        return False
    if "AcceleratorError" in _names(exc):  # torch >= 2.8 raises this for CUDA runtime errors
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _FATAL_MARKERS)


def handle(exc: Exception, manager: Any, model_id: str) -> tuple[str, BaseException | None]:
    """(message to store and show, the error when the process must exit) for a failed generation."""
    if is_out_of_memory(exc):
        log.warning("generation with %s ran out of memory: %s", model_id, exc)
        free_memory(manager)
        return f"out of memory: {OOM_MESSAGE}", None
    error = str(exc) or type(exc).__name__
    if is_fatal_device_error(exc):
        return f"the GPU failed ({error}); the studio is restarting", exc
    expected = isinstance(exc, (ValueError, BackendError))
    log.warning("generation with %s failed: %s", model_id, error, exc_info=not expected)
    return error, None


def free_memory(manager: Any) -> list[str]:
    """Unload every idle model (those in use by other requests stay) and return their ids."""
    freed = [model_id for model_id in manager.loaded() if manager.unload(model_id)]
    release_accelerator_memory()
    log.warning("out of GPU memory: unloaded idle models %s", ", ".join(freed) or "(none)")
    return freed


def exit_for_supervisor(exc: BaseException) -> None:
    """Log and end the process at once with a non-zero status; the supervisor starts a fresh one.

    `os._exit`, not `sys.exit`: the error happened in a worker thread, where SystemExit would only end
    that thread, and Python's clean shutdown would touch the broken device again.
    """
    log.critical("unrecoverable accelerator error, exiting so the supervisor restarts the studio: %s", exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    _exit(FATAL_EXIT_CODE)


_exit = os._exit  # tests replace this to see the exit without dying
