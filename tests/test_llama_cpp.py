"""The real `llama-cpp` backend on a tiny random-weight GGUF written in the test (tests/helpers/tiny_gguf.py).

Skipped, with the reason, when llama-cpp-python (the `[llamacpp]` extra) is not installed; CI installs it.
Random weights produce gibberish: these tests check structure (streaming, determinism, Stop, context,
refusals, memory, the engine a preference list picks, rows through the service).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.backends import (
    BackendContext,
    Message,
    ModelNotAvailable,
    Notice,
    Request,
    TextDelta,
    Usage,
    backend_class,
    engine,
    validate_params,
)
from studio.backends.llama_cpp import LlamaCpp, LlamaCppParams, available
from studio.config import ModelSpec
from studio.service import Studio, StudioError

# `tiny` is per test: the refusals and the engine choice below load no model.
pytestmark = pytest.mark.skipif(
    not available(), reason="llama-cpp-python is not installed (the [llamacpp] extra)"
)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_gguf import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


def make_backend(path: Path, **options: object) -> LlamaCpp:
    spec = ModelSpec(id="tinyg", tabs=["chat"], backend="llama-cpp", source=str(path), options=options)
    return LlamaCpp(spec, BackendContext(model_cache=path.parent, base_dir=path.parent))


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path):
    b = make_backend(tiny_gguf, n_threads=1)
    b.load()
    yield b
    b.unload()


def collect(backend: LlamaCpp, prompt: str = "Hello", history=None, **params) -> tuple[str, list, Usage]:
    request = Request(prompt=prompt, params=LlamaCppParams(**params), history=history or [])
    events = list(backend.generate(request))
    usage = next(e for e in events if isinstance(e, Usage))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events, usage


@pytest.mark.tiny
def test_greedy_is_deterministic_and_streams(backend: LlamaCpp) -> None:
    text1, events, usage = collect(backend, do_sample=False, max_new_tokens=12)
    text2, _, _ = collect(backend, do_sample=False, max_new_tokens=12)
    assert text1 == text2
    assert 1 <= usage.completion_tokens <= 12 and usage.prompt_tokens > 3
    assert len([e for e in events if isinstance(e, TextDelta)]) >= 2, "text arrives in pieces"


@pytest.mark.tiny
def test_the_prompt_is_the_chat_template_from_the_gguf_metadata(backend: LlamaCpp) -> None:
    request = Request(prompt="Hello", params=LlamaCppParams(system_prompt="Be brief."))
    text = bytes(backend.llm.detokenize(backend._render(request, [], "Hello"), special=True)).decode()
    assert (
        text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.tiny
def test_sampling_reproduces_with_the_same_seed(backend: LlamaCpp) -> None:
    a, _, _ = collect(backend, do_sample=True, seed=11, temperature=1.5, max_new_tokens=16, min_p=0.01)
    b, _, _ = collect(backend, do_sample=True, seed=11, temperature=1.5, max_new_tokens=16, min_p=0.01)
    c, _, _ = collect(backend, do_sample=True, seed=12, temperature=1.5, max_new_tokens=16, min_p=0.01)
    assert a == b and a != c


@pytest.mark.tiny
def test_max_new_tokens_holds_even_through_broken_utf8(backend: LlamaCpp) -> None:
    # Random weights emit stray byte tokens; llama-cpp-python's create_completion stopped counting while a
    # character was incomplete and ran into the end of the context. Counting tokens ourselves holds.
    for seed in range(3):
        _, _, usage = collect(backend, do_sample=True, seed=seed, temperature=2.0, max_new_tokens=100)
        assert usage.completion_tokens <= 100


@pytest.mark.tiny
def test_switching_conversations_reuses_the_kept_state_and_answers_the_same(backend: LlamaCpp) -> None:
    a = [
        Message("user", "The capital of France is Paris."),
        Message("assistant", "Hello, how are you today?"),
    ]
    b = [Message("user", "Write a function that adds two numbers."), Message("assistant", "def add(a, b):")]
    first_a, _, _ = collect(backend, prompt="And Japan?", history=a, do_sample=False, max_new_tokens=12)
    collect(backend, prompt="In Python?", history=b, do_sample=False, max_new_tokens=12)
    assert len(backend._cache.cache_state) >= 2, "both conversations' states are kept"
    again_a, _, _ = collect(backend, prompt="And Japan?", history=a, do_sample=False, max_new_tokens=12)
    assert again_a == first_a
    fresh = make_backend(Path(backend.spec.source), n_threads=1, prefix_cache=False)
    fresh.load()
    try:
        assert (
            collect(fresh, prompt="And Japan?", history=a, do_sample=False, max_new_tokens=12)[0] == first_a
        )
    finally:
        fresh.unload()


@pytest.mark.tiny
def test_stop_ends_generation_between_tokens(backend: LlamaCpp) -> None:
    request = Request(prompt="Hello", params=LlamaCppParams(do_sample=True, seed=1, max_new_tokens=200))
    pieces = 0
    for event in backend.generate(request):
        if isinstance(event, TextDelta):
            pieces += 1
            if pieces == 3:
                request.stop.set()
        elif isinstance(event, Usage):
            assert event.completion_tokens <= 4
    _, _, unstopped = collect(backend, do_sample=True, seed=1, max_new_tokens=200)
    assert unstopped.completion_tokens > 50, "without Stop the same seed runs on"


@pytest.mark.tiny
def test_oldest_turns_are_dropped_to_fit_the_context(backend: LlamaCpp) -> None:
    long_turn = "The capital of France is Paris. " * 8
    history = [Message(role, long_turn) for _ in range(6) for role in ("user", "assistant")]
    _, events, usage = collect(backend, prompt="And?", history=history, do_sample=False, max_new_tokens=8)
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices and "left out" in notices[0]
    assert usage.prompt_tokens + 8 <= backend.context_length == 256


@pytest.mark.tiny
def test_a_single_message_longer_than_the_context_is_refused_or_cut(backend: LlamaCpp) -> None:
    with pytest.raises(Exception, match=r"too long for model 'tinyg'.*context of 256 tokens"):
        collect(backend, prompt="Paris " * 400, max_new_tokens=8)
    request = Request(prompt="Paris " * 400, params=LlamaCppParams(max_new_tokens=8), truncate_prompt=True)
    notices = [e.text for e in backend.generate(request) if isinstance(e, Notice)]
    assert notices and "the input was cut" in notices[0]


def test_beam_search_and_prompt_lookup_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="num_beams=3: beam search is not available on the llama-cpp"):
        validate_params(LlamaCpp, {"num_beams": 3})
    with pytest.raises(ValueError, match="prompt-lookup decoding is not available"):
        validate_params(LlamaCpp, {"prompt_lookup_num_tokens": 4})


@pytest.mark.tiny
def test_memory_counts_weights_kv_and_the_prompt_cache(backend: LlamaCpp, tiny_gguf: Path) -> None:
    size = tiny_gguf.stat().st_size
    assert backend.memory_bytes() >= size + 256 * 1024**2  # the prompt cache's 256 MB bound is reserved
    off = make_backend(tiny_gguf, n_threads=1, prefix_cache=False)
    off.load()
    try:
        assert size < off.memory_bytes() < size + 16 * 1024**2
    finally:
        off.unload()
    assert off.memory_bytes() == 0


def test_a_file_that_is_not_gguf_is_worded_like_the_other_backends(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelNotAvailable, match=r"model 'tinyg': .*broken.gguf is not a GGUF file"):
        make_backend(bad).load()
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        make_backend(tmp_path / "absent.gguf").load()


def test_a_preference_list_runs_on_llama_cpp_when_it_is_installed() -> None:
    assert backend_class("llama-cpp, transformers-chat") is LlamaCpp
    assert engine("llama-cpp, transformers-chat") == "llama-cpp"


@pytest.mark.tiny
def test_service_turns_continue_and_rows(make_studio, tiny_gguf: Path) -> None:
    studio: Studio = make_studio(
        f"models:\n  - {{id: tinyg, tabs: [chat, code], backend: 'llama-cpp, transformers-chat', "
        f"source: {tiny_gguf}, options: {{n_threads: 1}}, "
        "defaults: {do_sample: false, max_new_tokens: 8}}\n"
    )
    assert [m.backend for m in studio.models("chat")] == ["llama-cpp"]
    first = list(studio.chat(model_id="tinyg", message="Hello"))[-1]
    assert first.status == "ok" and first.generation_id
    cont = list(studio.chat(model_id="tinyg", conversation_id=first.conversation_id, action="continue"))[-1]
    assert cont.status == "ok" and cont.text.startswith(first.text)
    second = list(studio.chat(model_id="tinyg", conversation_id=first.conversation_id, message="And?"))[-1]
    assert second.status == "ok"
    assert [t.reply for t in studio.conversation(first.conversation_id)][-1] == second.text
    with pytest.raises(StudioError, match="invalid parameters: num_beams=2: beam search is not available"):
        list(studio.chat(model_id="tinyg", message="Hi", params={"num_beams": 2}))


@pytest.mark.tiny
def test_a_trained_variant_of_a_llama_cpp_model_runs_on_its_own_transformers_copy(
    backend: LlamaCpp, tiny_gguf: Path, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from studio.backends.transformers_chat import TransformersChat
    from studio.config import VariantSpec

    reference = LlamaForCausalLM.from_pretrained(
        tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32
    )
    lora = get_peft_model(reference, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    spec = VariantSpec(
        id="tinyg+dpo-1",
        tabs=["chat"],
        backend="transformers-chat",
        source=str(tmp_path / "adapter"),
        base="tinyg",
        method="dpo",
        run_id=1,
    )
    variant = TransformersChat(spec, BackendContext(model_cache=tmp_path / "cache", base_dir=tmp_path))
    variant.share_base(backend)  # the base is served by llama.cpp: LoRA needs a transformers copy
    variant.load()
    try:
        request = Request(prompt="Hello", params=LlamaCppParams(do_sample=False, max_new_tokens=4))
        assert any(isinstance(e, Usage) for e in variant.generate(request))
        assert variant.memory_bytes() > variant._adapter_bytes > 0, "its own base copy is counted"
    finally:
        variant.unload()
    assert backend.llm is not None, "the llama.cpp base stays loaded"


def test_a_variant_entry_of_a_preference_list_model_names_transformers_chat() -> None:
    from types import SimpleNamespace

    from studio.service.variants import variant_spec

    base = ModelSpec(
        id="tinyg",
        tabs=["chat"],
        backend="llama-cpp, transformers-chat",
        source="x.gguf",
        options={"n_ctx": 512},
    )
    row = SimpleNamespace(id="tinyg+dpo-2", adapter_path="/tmp/adapter", method="dpo", run_id=2)
    spec = variant_spec(base, row)  # type: ignore[arg-type]
    assert spec.backend == "transformers-chat" and spec.options == {} and spec.base == "tinyg"
