"""GPU check of studio/faults.py against REAL CUDA errors (run on a machine with an NVIDIA GPU).

    python benchmarks/gpu_faults.py

1. A real out-of-memory (`torch.empty` of more than the card holds): classified as OOM (recoverable), not
   fatal; after `free_memory` the same process allocates and multiplies again ("the next request works").
2. A real device-side assert (an out-of-range index in a CUDA kernel), in a child process: classified as
   fatal; the child then shows that every later CUDA call fails (why the studio exits instead).
Only studio/faults.py is loaded (with a stand-in for studio.backends), so the check needs torch alone.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

FAULTS = Path(__file__).resolve().parent.parent / "studio" / "faults.py"


def load_faults() -> types.ModuleType:
    import torch

    backends = types.ModuleType("studio.backends")

    class BackendError(RuntimeError):
        pass

    def release_accelerator_memory() -> None:
        torch.cuda.empty_cache()

    backends.BackendError = BackendError  # type: ignore[attr-defined]
    backends.release_accelerator_memory = release_accelerator_memory  # type: ignore[attr-defined]
    sys.modules["studio"] = types.ModuleType("studio")
    sys.modules["studio.backends"] = backends
    spec = importlib.util.spec_from_file_location("studio.manager.faults", FAULTS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Manager:
    def __init__(self) -> None:
        self.models = {"idle": True}

    def loaded(self) -> list[str]:
        return list(self.models)

    def unload(self, model_id: str) -> bool:
        return self.models.pop(model_id, None) is not None


def child() -> None:
    import torch

    faults = load_faults()
    x = torch.zeros(10, device="cuda")
    try:
        x[torch.tensor([1000], device="cuda")] += 1
        torch.cuda.synchronize()
        print("CHILD no error raised")
        return
    except Exception as exc:
        print(
            f"CHILD class={type(exc).__module__}.{type(exc).__name__} "
            f"mro={[c.__name__ for c in type(exc).__mro__]}"
        )
        print(f"CHILD message={str(exc).splitlines()[0]!r}")
        print(f"CHILD fatal={faults.is_fatal_device_error(exc)} oom={faults.is_out_of_memory(exc)}")
    try:
        torch.ones(4, device="cuda").sum().item()
        print("CHILD later CUDA call: works")
    except Exception as exc:
        print(f"CHILD later CUDA call fails: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def main() -> int:
    import torch

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    faults = load_faults()
    _, total = torch.cuda.mem_get_info()
    try:
        torch.empty(int(total * 2), dtype=torch.uint8, device="cuda")
        print("no OOM raised")
        return 1
    except Exception as exc:
        print(f"OOM class={type(exc).__module__}.{type(exc).__name__}")
        print(f"OOM message={str(exc).splitlines()[0][:120]!r}")
        print(f"OOM oom={faults.is_out_of_memory(exc)} fatal={faults.is_fatal_device_error(exc)}")
        manager = Manager()
        message, fatal = faults.handle(exc, manager, "big")
        print(
            f"OOM handled: message={message[:60]!r}... fatal={fatal is not None} "
            f"unloaded={manager.models == {}}"
        )
    a = torch.randn(4096, 4096, device="cuda")
    print(f"after OOM: matmul ok = {bool(torch.isfinite(a @ a).all().item())}")
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, timeout=120)
    print(out.stdout.strip())
    print(f"child exit status {out.returncode}")
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        sys.exit(main())
