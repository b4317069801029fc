"""Memory facts the model manager needs: budgets, sizes of weights on disk, and what the process holds.

Owns: the default budget of each pool (RAM for CPU models, GPU memory for CUDA models), estimating a
model's size from the weights on disk, reading this process's resident memory, and handing freed memory
back to the operating system.
Ignores: which models are loaded and when to evict them (the manager decides); the size format
("8GB", "cpu=12GB,cuda=20GB") is `studio.config`'s, which checks STUDIO_MEMORY_BUDGET at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
from pathlib import Path

from studio.backends import release_accelerator_memory
from studio.config import GB as GB
from studio.config import MB as MB
from studio.config import Pool as Pool
from studio.config import Settings, StudioConfig

log = logging.getLogger(__name__)

# Share of the device a default budget takes: the rest is for activations, the OS, the browser, the app.
DEFAULT_RAM_SHARE = 0.7
DEFAULT_GPU_SHARE = 0.9
# A quantised GGUF file grows when transformers dequantises it to float32 (SmolLM2 Q4_1: 98 MB -> 540 MB).
GGUF_GROWTH = 5.5
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")


def format_bytes(n: int | float) -> str:
    if n >= GB:
        return f"{n / GB:.2f} GB"
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} KB"


def _cgroup_limit() -> int | None:
    """A container's memory limit, when it is lower than the machine's RAM."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    return None


def total_ram() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest laptop
        ram = 8 * GB
    limit = _cgroup_limit()
    return min(ram, limit) if limit else ram


def cuda_available() -> bool:
    import torch  # only asked when a model is about to load, and loading imports torch anyway

    return bool(torch.cuda.is_available())


def default_budget(pool: Pool) -> int:
    if pool == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory * DEFAULT_GPU_SHARE)
    return int(total_ram() * DEFAULT_RAM_SHARE)


def weights_on_disk(path: Path) -> int:
    """Bytes of weights in a file or folder (safetensors preferred when a folder has several formats)."""
    if path.is_file():
        size = path.stat().st_size
        return int(size * GGUF_GROWTH) if path.suffix == ".gguf" else size
    if not path.is_dir():
        return 0
    files = [p for p in path.rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file()]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    # A folder with both formats holds the same weights twice; only one of them is loaded.
    return sum(p.stat().st_size for p in (safetensors or files))


def hub_snapshot(repo_id: str) -> Path | None:
    """The local Hub snapshot of a repo, or None; never touches the network."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or no huggingface_hub: nothing to measure
        return None


def process_rss() -> int:
    """This process's resident memory in bytes (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def cuda_allocated() -> int:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.memory_allocated())


_libc: ctypes.CDLL | None = None


def release_memory() -> None:
    """After an unload: collect cycles, empty the CUDA cache and let glibc return freed pages.

    Without `malloc_trim`, glibc keeps freed heap pages for reuse and RSS stays high after an unload
    (measured in tests/test_manager_memory.py), so the budget would not match what `top` shows.
    """
    global _libc
    gc.collect()
    release_accelerator_memory()
    if sys.platform.startswith("linux"):
        try:
            _libc = _libc or ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc without malloc_trim
            log.debug("malloc_trim is not available")


def configured_budget(config: StudioConfig, settings: Settings) -> dict[Pool, int]:
    """The budget set by STUDIO_MEMORY_BUDGET, else models.yaml's `memory_budget_gb`; {} for the default."""
    if settings.memory_budget:
        return dict(settings.memory_budget)
    value = config.memory_budget_gb
    if value is None:
        return {}
    if isinstance(value, dict):
        return {pool: int(gb * GB) for pool, gb in value.items()}
    return {"cpu": int(value * GB), "cuda": int(value * GB)}


def pool_name(pool: Pool) -> str:
    """How a person calls a memory pool."""
    return "GPU memory" if pool == "cuda" else "RAM"
