"""GPU check of studio/manager/faults.py against REAL CUDA errors (run on a machine with an NVIDIA GPU).

    python benchmarks/gpu_faults.py
    python benchmarks/gpu_faults.py --smoke     # without CUDA: the same checks on errors built on the CPU

1. A real out-of-memory (`torch.empty` of more than the card holds): classified as OOM (recoverable), not
   fatal; after `free_memory` the same process allocates and multiplies again ("the next request works").
2. A real device-side assert (an out-of-range index in a CUDA kernel), in a child process: classified as
   fatal; the child then shows that every later CUDA call fails (why the studio exits instead).
Only studio/manager/faults.py is loaded (with a stand-in for studio.backends), so the check needs torch
alone. `--smoke` on a machine without CUDA classifies torch's own error classes built on the CPU (an
OutOfMemoryError, an AcceleratorError with a device-side assert's message) and says the real part was
skipped; with CUDA it runs the real check.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

FAULTS = Path(__file__).resolve().parent.parent / "studio" / "manager" / "faults.py"


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


def smoke_on_cpu() -> int:
    """The classification and handling of torch's CUDA error classes, built without a GPU."""
    import torch

    faults = load_faults()
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    fatal = torch.AcceleratorError("CUDA error: device-side assert triggered")
    manager = Manager()
    message, exit_for = faults.handle(oom, manager, "big")
    results = {
        "OOM is out of memory, not fatal": faults.is_out_of_memory(oom)
        and not faults.is_fatal_device_error(oom),
        "OOM handled: idle models unloaded, no exit": manager.models == {} and exit_for is None,
        "device-side assert is fatal, not OOM": faults.is_fatal_device_error(fatal)
        and not faults.is_out_of_memory(fatal),
        "a plain error is neither": not faults.is_fatal_device_error(ValueError("bad prompt")),
    }
    for name, ok in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"OOM message: {message[:70]!r}...")
    return 0 if all(results.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="without CUDA: the checks on CPU-built errors")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    import torch

    if not torch.cuda.is_available():
        if not args.smoke:
            print("no CUDA GPU: this check needs one (--smoke runs the classification on CPU-built errors)")
            return 1
        print(f"torch {torch.__version__}; skipped: no CUDA (the real out-of-memory and device-side assert)")
        return smoke_on_cpu()
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
    sys.exit(main())
