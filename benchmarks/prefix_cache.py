"""Time to the first token of a short turn after a long history, with and without the kept KV cache.

A conversation of about 1,500 tokens (a history of long turns), then turn A (a question, answered greedily,
16 tokens), then turn B: a short follow-up whose time to first token is measured. With the cache, turn B
starts from the KV cache turn A left (backends/prefix_cache.py for transformers-chat; llama.cpp's own state
plus its LlamaRAMCache for llama-cpp) and prefills only its new tokens; without it, the whole history is
prefilled again. Rounds interleave the two ways (cache, none, cache, ...): the machine's load drifts. Each
way also checks that turn B's greedy answer is the same text with and without the cache.

    .venv/bin/python benchmarks/prefix_cache.py                  # the bundled model, both engines, 5 rounds
    .venv/bin/python benchmarks/prefix_cache.py --rounds 9 --engines transformers-chat
    .venv/bin/python benchmarks/prefix_cache.py --smoke          # the tiny checkpoint, 1 round
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    add_smoke,
    bundled_weights,
    default_model_cache,
    load_note,
    median,
    pin_torch_threads,
    print_targets,
    table,
)

TARGET = 0.25  # TTFT with the cache / without, at most
PARAGRAPH = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, checked the oil, trimmed the "
    "wick and wiped the great lens until it shone. Ships passed far out at sea, and the keeper wrote each "
    "one in the log with the hour, the wind and the state of the waves. "
)


def history_of(tokens: int, tokenizer_len: Any, paragraph: str) -> list[Any]:
    """Alternating user/assistant turns of about `tokens` tokens in all."""
    from studio.backends import Message

    turns: list[Message] = []
    while tokenizer_len(turns) < tokens:
        turns += [
            Message("user", "Tell me more. " + paragraph),
            Message("assistant", paragraph * 2),
        ]
    return turns


def ttft(backend: Any, request: Any) -> tuple[float, str]:
    from studio.backends import TextDelta

    started = time.perf_counter()
    first = None
    text = []
    for event in backend.generate(request):
        if isinstance(event, TextDelta):
            first = first or time.perf_counter()
            text.append(event.text)
    return ((first or time.perf_counter()) - started) * 1000, "".join(text)


def run_engine(
    name: str, backend: Any, history_tokens: int, rounds: int, params_cls: Any, paragraph: str
) -> dict[str, Any]:
    from studio.backends import Message, Request

    params_a = params_cls(do_sample=False, max_new_tokens=16, repetition_penalty=1.0)
    params_b = params_cls(do_sample=False, max_new_tokens=8, repetition_penalty=1.0)

    def count(turns: list[Message]) -> int:
        request = Request(prompt="Hi", params=params_b, history=turns)
        if name == "llama-cpp":
            return len(backend._render(request, turns, "Hi"))
        encoded = backend._encode(backend._messages(request, turns, "Hi"), False)  # no turn dropped
        return int(encoded["input_ids"].shape[1])

    history = history_of(history_tokens, count, paragraph)
    question = "What did the keeper write in the log?"
    _, answer = ttft(backend, Request(prompt=question, params=params_a, history=history))
    turn_b = [*history, Message("user", question), Message("assistant", answer)]
    request_b = lambda: Request(prompt="And then?", params=params_b, history=turn_b)  # noqa: E731
    prompt_tokens = count(turn_b)
    on, off, texts = [], [], set()
    for _ in range(rounds):
        for way in ("cache", "none"):
            set_cache(name, backend, way == "cache")
            if way == "cache":  # turn A again, as the conversation had it: it leaves its cache behind
                ttft(backend, Request(prompt=question, params=params_a, history=history))
            ms, text = ttft(backend, request_b())
            (on if way == "cache" else off).append(ms)
            texts.add(text)
    set_cache(name, backend, True)
    return {"engine": name, "tokens": prompt_tokens, "on": on, "off": off, "same": len(texts) == 1}


def set_cache(name: str, backend: Any, on: bool) -> None:
    """Turn the engine's kept cache on (empty) or off."""
    if name == "llama-cpp":
        from llama_cpp import LlamaRAMCache

        backend.llm.reset()  # forget the evaluated tokens llama.cpp would reuse on its own
        backend._cache = LlamaRAMCache(capacity_bytes=256 * 1024**2) if on else None
        return
    from studio.backends.prefix_cache import PrefixCache

    backend.prefix = PrefixCache(256 * 1024**2) if on else None


def backends(smoke: bool, engines: list[str], tmp: Path) -> list[tuple[str, Any, Any]]:
    from studio.backends import BackendContext
    from studio.backends.llama_cpp import LlamaCpp, LlamaCppParams, available
    from studio.backends.params import ChatParams
    from studio.backends.transformers_chat import TransformersChat
    from studio.config import ModelSpec

    if smoke:
        from tests.helpers.tiny_chat import build_tiny_chat_model
        from tests.helpers.tiny_gguf import build_tiny_gguf

        folder, gguf = build_tiny_chat_model(tmp / "tiny", context=256), build_tiny_gguf(tmp / "tiny.gguf")
    else:
        gguf, folder = bundled_weights(default_model_cache())
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: chat once with the bundled model first (it converts)")
    out = []
    for engine in engines:
        if engine == "llama-cpp" and not available():
            print("llama-cpp: skipped (llama-cpp-python is not installed)")
            continue
        cls, source, params = (
            (LlamaCpp, gguf, LlamaCppParams)
            if engine == "llama-cpp"
            else (TransformersChat, folder, ChatParams)
        )
        options = {"n_threads": 1} if engine == "llama-cpp" else {}
        spec = ModelSpec(id=engine, tabs=["chat"], backend=engine, source=str(source), options=options)
        backend = cls(spec, BackendContext(model_cache=tmp, base_dir=tmp))
        backend.load()
        out.append((engine, backend, params))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_smoke(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--history", type=int, default=1500, help="history tokens (about)")
    parser.add_argument("--engines", default="transformers-chat,llama-cpp")
    args = parser.parse_args()
    pin_torch_threads()
    rounds, history = (1, 120) if args.smoke else (args.rounds, args.history)
    rows, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend, params in backends(args.smoke, args.engines.split(","), Path(tmp)):
            paragraph = "The capital of France is Paris. " if args.smoke else PARAGRAPH
            result = run_engine(name, backend, history, rounds, params, paragraph)
            backend.unload()
            ratio = median([a / b for a, b in zip(result["on"], result["off"], strict=True)])
            rows.append(
                [name, result["tokens"], median(result["off"]), median(result["on"]), ratio, result["same"]]
            )
            checks[f"{name}: TTFT with the cache <= {TARGET:.0%} of without"] = (
                None if args.smoke else ratio <= TARGET
            )
            checks[f"{name}: the same greedy answer with and without"] = result["same"]
    headers = ["engine", "prompt tokens", "TTFT none ms", "TTFT cache ms", "cache/none", "same text"]
    print(table(headers, rows, title=f"\n== short turn after a long history, {rounds} round(s), medians =="))
    print(load_note())
    print_targets(checks)


if __name__ == "__main__":
    main()
