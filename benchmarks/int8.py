"""`options: {quantize: int8}` for transformers-chat on the CPU: speed against float32, and what it costs in
quality.

Speed: greedy decoding of N new tokens after a fixed prompt, float32 and int8 interleaved per round (the
machine's load drifts), tokens/s of each and their paired ratio.
Quality, on the same two loaded models:
  greedy agreement  for each prompt of a fixed set, the int8 greedy continuation (32 tokens) against
                    float32's: identical answers, and the share of tokens before the first difference;
  perplexity        of tests/data/perplexity_text.txt (a short original story) under each model.

    .venv/bin/python benchmarks/int8.py                     # the bundled SmolLM2, 5 rounds, 64 tokens
    .venv/bin/python benchmarks/int8.py --smoke             # the tiny checkpoint, 1 round
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    add_smoke,
    bundled_weights,
    default_model_cache,
    load_note,
    median,
    pin_torch_threads,
    print_targets,
    table,
)

TEXT = REPO / "tests" / "data" / "perplexity_text.txt"
PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Give three tips for staying focused while studying.",
    "Explain what a lighthouse does in one sentence.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Describe the colour of the sky at sunset.",
    "Name two planets in the solar system.",
]


def load(folder: Path, quantize: bool) -> Any:
    from studio.backends import BackendContext
    from studio.backends.transformers_chat import TransformersChat
    from studio.config import ModelSpec

    options: dict[str, Any] = {"prefix_cache": False} | ({"quantize": "int8"} if quantize else {})
    spec = ModelSpec(id="m", tabs=["chat"], backend="transformers-chat", source=str(folder), options=options)
    backend = TransformersChat(spec, BackendContext(model_cache=folder.parent, base_dir=folder.parent))
    backend.load()
    return backend


def greedy_ids(backend: Any, prompt: str, n: int) -> tuple[list[int], float]:
    """The greedy continuation's token ids and its tokens/s (generate without streaming)."""
    import torch

    inputs = backend.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    started = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(
            **inputs,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    seconds = time.perf_counter() - started
    new = out[0][inputs["input_ids"].shape[1] :].tolist()
    return new, len(new) / seconds


def perplexity(backend: Any, text: str) -> float:
    import torch

    ids = backend.tokenizer(text, return_tensors="pt")["input_ids"][:, :1024]
    with torch.inference_mode():
        loss = backend.model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_smoke(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    pin_torch_threads()
    rounds, n = (1, 8) if args.smoke else (args.rounds, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from tests.helpers.tiny_chat import build_tiny_chat_model

            folder = build_tiny_chat_model(Path(tmp) / "tiny")
        else:
            _, folder = bundled_weights(default_model_cache())
            if not folder.is_dir():
                raise SystemExit(
                    f"{folder} is missing: chat once with the bundled model on transformers first"
                )
        f32, q8 = load(folder, False), load(folder, True)
        speed: dict[str, list[float]] = {"float32": [], "int8": []}
        for _ in range(rounds):
            for name, backend in (("float32", f32), ("int8", q8)):
                speed[name].append(greedy_ids(backend, PROMPTS[0], n)[1])
        prompts = PROMPTS[:2] if args.smoke else PROMPTS
        same, shares = 0, []
        for prompt in prompts:
            a, _ = greedy_ids(f32, prompt, 32)
            b, _ = greedy_ids(q8, prompt, 32)
            same += a == b
            first_diff = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
            shares.append(first_diff / max(len(a), 1))
        text = TEXT.read_text(encoding="utf-8")
        ppl = {"float32": perplexity(f32, text), "int8": perplexity(q8, text)}
        sizes = {"float32": f32.memory_bytes(), "int8": q8.memory_bytes()}
    ratio = median([b / a for a, b in zip(speed["float32"], speed["int8"], strict=True)])
    rows = [[name, median(speed[name]), ppl[name], sizes[name] / 2**20] for name in ("float32", "int8")]
    print(
        table(["weights", "tok/s", "perplexity", "weights MB"], rows, f"\n== {rounds} round(s), medians ==")
    )
    print(f"int8 / float32 tokens/s: {ratio:.2f}x (paired per round)")
    print(
        f"greedy agreement on {len(prompts)} prompts x 32 tokens: {same}/{len(prompts)} identical; "
        f"tokens before the first difference: median {median(shares):.0%}"
    )
    change = ppl["int8"] / ppl["float32"] - 1
    print(f"perplexity of {TEXT.name}: {ppl['float32']:.2f} -> {ppl['int8']:.2f} ({change:+.1%})")
    print(load_note())
    print_targets({"int8 faster than float32": None if args.smoke else ratio > 1.0})


if __name__ == "__main__":
    main()
