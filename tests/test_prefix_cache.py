"""KV caches kept across turns (backends/prefix_cache.py) and int8 linear layers, on the real
`transformers-chat` backend with the tiny random-weight checkpoint: the same greedy text with and without the
cache over send, continue and regenerate, the byte bound, the budget, unload; int8 loads and answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.backends import BackendContext, Message, Request, TextDelta, Usage
from studio.backends.params import ChatParams
from studio.backends.prefix_cache import PrefixCache, cache_bytes
from studio.backends.transformers_chat import TransformersChat
from studio.config import ModelSpec

pytestmark = pytest.mark.tiny


def make(model_dir: Path, **options: object) -> TransformersChat:
    spec = ModelSpec(
        id="tiny", tabs=["chat"], backend="transformers-chat", source=str(model_dir), options=options
    )
    backend = TransformersChat(spec, BackendContext(model_cache=model_dir.parent, base_dir=model_dir.parent))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def pair(tiny_model_dir: Path):
    cached, plain = make(tiny_model_dir), make(tiny_model_dir, prefix_cache=False)
    yield cached, plain
    cached.unload()
    plain.unload()


def answer(backend: TransformersChat, prompt: str, history: list[Message], cont: str | None = None) -> str:
    request = Request(
        prompt=prompt,
        params=ChatParams(do_sample=False, max_new_tokens=24),
        history=history,
        continue_from=cont,
    )
    return "".join(e.text for e in backend.generate(request) if isinstance(e, TextDelta))


def test_turns_answer_exactly_as_without_the_cache(pair) -> None:
    cached, plain = pair
    assert cached.prefix is not None and plain.prefix is None
    history: list[Message] = []
    for turn, prompt in enumerate(["Hello, how are you today?", "The capital of France?", "And Japan?"]):
        a, b = answer(cached, prompt, history), answer(plain, prompt, history)
        assert a == b, f"turn {turn}: the kept cache changed the answer"
        if turn == 1:  # regenerate the last turn: the same prompt again, its answer cropped away
            assert answer(cached, prompt, history) == b
        history += [Message("user", prompt), Message("assistant", a)]
    # continue the last answer: the cached prefix runs into the answer's own tokens
    last, partial = history[-2].content, history[-1].content[:10]
    assert answer(cached, last, history[:-2], cont=partial) == answer(plain, last, history[:-2], cont=partial)
    assert cached.prefix.hits >= 3, "later turns started from the kept cache"


def test_a_hit_prefills_only_the_new_tokens(pair) -> None:
    cached, _ = pair
    history = [
        Message("user", "Write a function that adds two numbers."),
        Message("assistant", "def add(a, b):"),
    ]
    answer(cached, "Thanks", history)
    request = Request(
        prompt="Thanks again", params=ChatParams(do_sample=False, max_new_tokens=4), history=history
    )
    kwargs_seen: dict[str, int] = {}
    original = cached.model.forward

    def spy(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and "first" not in kwargs_seen:
            kwargs_seen["first"] = int(ids.shape[1])
        return original(*args, **kwargs)

    cached.model.forward = spy
    try:
        events = list(cached.generate(request))
    finally:
        del cached.model.forward
    usage = next(e for e in events if isinstance(e, Usage))
    assert kwargs_seen["first"] < usage.prompt_tokens / 2, "the first forward pass saw only the new tokens"


def test_the_store_is_bounded_in_bytes_and_least_recently_used_goes_first(pair) -> None:
    cached, _ = pair
    answer(cached, "Hello, how are you today?", [])
    [entry] = [e for e in cached.prefix._entries.values()][-1:]
    one = entry.size
    store = PrefixCache(max_bytes=int(one * 2.5))
    for text in (
        "Stories, poems and songs.",
        "Write a function in Python.",
        "Hello there friend.",
    ):
        request = Request(prompt=text, params=ChatParams(do_sample=False, max_new_tokens=24))
        cached.prefix, saved = store, cached.prefix
        try:
            list(cached.generate(request))
        finally:
            cached.prefix = saved
        assert store.used_bytes <= store.max_bytes
    assert 1 <= len(store) <= 2
    assert cache_bytes(next(iter(store._entries.values())).cache) > 0


def test_the_budget_counts_the_bound_and_unload_drops_it(tiny_model_dir: Path) -> None:
    on, off = make(tiny_model_dir, prefix_cache_mb=64), make(tiny_model_dir, prefix_cache=False)
    assert on.memory_bytes() - off.memory_bytes() == 64 * 1024**2
    answer(on, "Hello", [])
    assert len(on.prefix) == 1
    on.unload()
    off.unload()
    assert on.prefix is None


def test_int8_loads_answers_and_is_smaller(tiny_model_dir: Path) -> None:
    q = make(tiny_model_dir, quantize="int8", prefix_cache=False)
    f = make(tiny_model_dir, prefix_cache=False)
    try:
        linear = [
            m for m in q.model.modules() if type(m).__name__ == "Linear" and hasattr(m, "_packed_params")
        ]
        assert linear, "the linear layers are dynamically quantised"
        assert 0 < q.memory_bytes() < f.memory_bytes()
        assert answer(q, "Hello", []) == answer(q, "Hello", []), "greedy stays deterministic"
    finally:
        q.unload()
        f.unload()
