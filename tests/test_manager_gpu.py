"""The memory budget on a CUDA GPU: CUDA models count against GPU memory (measured as the allocator's delta),
the least recently used one is evicted to make room, a model bigger than the GPU budget is refused, the
default budget is 90 % of the card, and unloading gives the GPU memory back.

Runs only where torch sees a GPU. Needs nothing but torch, transformers, pydantic and PyYAML, so it also runs
standalone: `python -m pytest --noconftest tests/test_manager_gpu.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

MB = 1024**2
# cuBLAS keeps a workspace per thread (32 MiB on Hopper) in PyTorch's caching allocator; generation runs in
# the backend's worker thread, so one workspace stays allocated after the first generation.
WORKSPACE = 32 * MB


def _manager(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    from studio.backends import BackendContext, backend_class
    from studio.config import load_config
    from studio.manager import ModelManager

    (tmp_path / "models.yaml").write_text(body, encoding="utf-8")
    config = load_config(tmp_path / "models.yaml")
    context = BackendContext(model_cache=tmp_path / "cache", base_dir=tmp_path)
    return ModelManager(config, lambda spec: backend_class(spec.backend)(spec, context))


def test_cuda_models_are_budgeted_in_gpu_memory(tmp_path: Path, monkeypatch) -> None:
    from studio.backends import BackendError, Request
    from studio.backends.params import ChatParams
    from tests.helpers.tiny_chat import build_tiny_chat_model, build_wide_chat_model

    tiny = build_tiny_chat_model(tmp_path / "tiny")
    g1 = build_wide_chat_model(tmp_path / "g1", tiny, 1024)  # about 200 MB in float32
    g2 = build_wide_chat_model(tmp_path / "g2", tiny, 1024)
    body = f"""
models:
  - id: g1
    tabs: [chat]
    backend: transformers-chat
    source: {g1}
    device: cuda
  - id: g2
    tabs: [chat]
    backend: transformers-chat
    source: {g2}
    device: auto
"""
    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "cpu=1GB,cuda=300MB")
    manager = _manager(tmp_path, body)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()

    manager.preload("g1")
    state = {s.id: s for s in manager.states()}["g1"]
    params = sum(p.numel() * p.element_size() for p in manager._slots["g1"].backend.model.parameters())
    assert state.pool == "cuda" and state.measured
    assert params <= state.memory_bytes <= params + 8 * MB  # the allocator's delta: weights and buffers
    assert manager.used("cuda") == state.memory_bytes and manager.used("cpu") == 0
    with manager.use("g1") as backend:
        events = list(backend.generate(Request("hi", ChatParams(do_sample=False, max_new_tokens=4))))
        assert events and str(next(backend.model.parameters()).device).startswith("cuda")

    manager.preload("g2")  # 2 x 200 MB > 300 MB: g1 (idle, least recently used) makes room
    assert manager.loaded() == ["g2"]
    held = torch.cuda.memory_allocated() - base
    assert held <= manager.used("cuda") + WORKSPACE + MB, f"{held / MB:.0f} MB allocated for one 194 MB model"

    manager.unload_all()
    torch.cuda.synchronize()
    base += WORKSPACE if torch.cuda.memory_allocated() - base >= WORKSPACE else 0
    assert torch.cuda.memory_allocated() - base < MB, "the weights are still on the GPU after unload"

    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "cuda=100MB")
    small = _manager(tmp_path, body)
    with pytest.raises(BackendError, match="of GPU memory but the whole memory budget is 100 MB"):
        small.preload("g1")  # the estimate from disk (about 200 MB) is refused before anything loads
    assert torch.cuda.memory_allocated() - base < MB

    monkeypatch.delenv("STUDIO_MEMORY_BUDGET")
    total = torch.cuda.get_device_properties(0).total_memory
    assert _manager(tmp_path, body).budget("cuda") == int(total * 0.9)
