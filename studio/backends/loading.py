"""What every in-process backend does the same way when it loads a model: find the weights, pick the device
and dtype, word a failed read, and count the memory the loaded modules hold.

Owns: `weights_path` (the file, folder or Hub id to load from, or `ModelNotAvailable` naming the fix),
`resolve_device` (models.yaml's `device:` against what torch sees), `torch_dtype` and `device_and_dtype`
(models.yaml's `dtype:`, half precision turned to float32 on the CPU), `unreadable_weights` (a library's
OSError while reading weights, worded as "not downloaded" or "not a ... folder") and `parameter_bytes`.
Ignores: what a backend builds from the weights, downloads (studio.sources and `studio models pull` fetch
them) and generation. torch is imported inside the functions that use it, never when this module is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from studio import sources
from studio.backends import BackendContext, BackendError, ModelNotAvailable, short_error
from studio.config import ModelSpec

log = logging.getLogger(__name__)


def weights_path(spec: ModelSpec, context: BackendContext) -> Path | str:
    """The local file or folder to load `spec` from, or its Hub id (the library resolves its own cache).

    Raises ModelNotAvailable with the fix (`studio models pull <id>`, a missing local path) otherwise."""
    try:
        return sources.local_path(spec, cache=context.model_cache, base_dir=context.base_dir)
    except sources.SourceError as exc:
        raise ModelNotAvailable(str(exc)) from None


def resolve_device(device: str) -> str:
    """models.yaml's `cpu`, `cuda` or `auto` as the torch device to use; `cuda` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            "models.yaml asks for device 'cuda' but torch sees no CUDA GPU; use 'cpu' or 'auto'"
        )
    return device


def torch_dtype(spec: ModelSpec, device: str, *, half_on_cpu: bool = False) -> Any:
    """`spec.dtype` as a torch dtype. float16 on the CPU is slow or unsupported in most kernels, so it
    becomes float32 there unless the backend's library copes with it (`half_on_cpu`)."""
    import torch

    dtype = getattr(torch, spec.dtype)
    if device == "cpu" and dtype == torch.float16 and not half_on_cpu:
        log.warning("model %s: float16 is not usable on the CPU; loading it as float32", spec.id)
        return torch.float32
    return dtype


def device_and_dtype(spec: ModelSpec, *, half_on_cpu: bool = False) -> tuple[str, Any]:
    """The torch device and dtype to load `spec` with (see `resolve_device` and `torch_dtype`)."""
    device = resolve_device(spec.device)
    return device, torch_dtype(spec, device, half_on_cpu=half_on_cpu)


def unreadable_weights(spec: ModelSpec, where: Path | str, exc: OSError, folder: str) -> ModelNotAvailable:
    """The error to raise when a library's `from_pretrained(where)` fails with `exc`: a Hub id that is not
    in the cache is "not downloaded" (with the pull command); a local path is "not a <folder>"."""
    if isinstance(where, str):
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(exc).lower()
        hint = "" if offline else f" ({short_error(exc)})"  # offline, the library's words add nothing
        return ModelNotAvailable(sources.not_available(spec) + hint)
    return ModelNotAvailable(f"model {spec.id!r}: {where} is not a {folder} ({short_error(exc)})")


def parameter_bytes(module: Any) -> int:
    """Bytes the parameters of a loaded torch module take (0 for None: nothing loaded)."""
    if module is None:
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters())
