"""Memory really comes back: a ~200 MB real checkpoint loaded, used and unloaded through the manager brings
the process's resident memory back within 10 % of where it started (it grows by about 200 MB while loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.manager.memory import MB, process_rss

pytestmark = pytest.mark.tiny


def test_unload_returns_memory_to_within_10_percent_of_baseline(
    make_studio, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("STUDIO_MEMORY_BUDGET", raising=False)
    from tests.helpers.tiny_chat import build_wide_chat_model

    big = build_wide_chat_model(tmp_path / "big", tiny_model_dir, 1024)
    studio = make_studio(
        f"""
models:
  - id: tiny
    tabs: [chat]
    backend: transformers-chat
    source: {tiny_model_dir}
    defaults: {{do_sample: false, max_new_tokens: 2}}
  - id: big
    tabs: [chat]
    backend: transformers-chat
    source: {big}
    defaults: {{do_sample: false, max_new_tokens: 2}}
"""
    )
    manager = studio.manager
    # Warm up everything that is loaded once per process (libraries, kernels, tokenizer code).
    list(studio.chat(model_id="tiny", message="hi"))
    assert manager.unload("tiny")
    baseline = process_rss()
    estimate = manager.estimate(studio.config.model("big"))
    assert 190 * MB < estimate < 215 * MB  # the safetensors file

    final = list(studio.chat(model_id="big", message="hi"))[-1]  # loads and touches every weight
    assert final.status == "ok"
    loaded = process_rss()
    # Parameters measured after load, plus the bound of its kept KV caches (options.prefix_cache_mb, 256 MB).
    assert manager.used("cpu") == pytest.approx(estimate + 256 * MB, rel=0.02)
    assert loaded - baseline > 150 * MB, "the model should show in RSS while loaded"

    assert studio.unload_model("big") == "big unloaded"
    after = process_rss()
    assert after < baseline * 1.10, f"RSS {after / MB:.0f} MB after unload vs {baseline / MB:.0f} MB before"
    assert manager.used("cpu") == 0  # nothing is counted any more
