"""Prompt-lookup decoding (`prompt_lookup_num_tokens`) on transformers-chat: where it pays, where it does not.

Two prompts, greedy, up to N new tokens, with lookup off and on (10 tokens drafted from the prompt),
interleaved per round: a Code "fix" request (the answer repeats most of the input function) and free text
(a story: nothing to copy). Tokens/s of each and the paired ratio; the answers with and without lookup are
compared (greedy lookup keeps the same text).

    .venv/bin/python benchmarks/prompt_lookup.py            # the bundled SmolLM2 on transformers, 3 rounds
    .venv/bin/python benchmarks/prompt_lookup.py --smoke    # the tiny checkpoint, 1 round
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
    table,
)

FIX = '''Fix the bug in this Python function and return the whole corrected function.

```python
def average_scores(scores):
    """Return the average of a list of scores, or 0 for an empty list."""
    total = 0
    count = 0
    for score in scores:
        total = total + score
        count = count + 1
    if count == 0:
        return 0
    return total / (count - 1)
```'''
STORY = "Write a long, detailed story about a lighthouse keeper who saves a ship during a storm."


def run(backend: Any, prompt: str, n: int, lookup: int) -> tuple[float, str, int]:
    from studio.backends import Request, TextDelta, Usage
    from studio.backends.params import ChatParams

    params = ChatParams(
        do_sample=False, max_new_tokens=n, repetition_penalty=1.0, prompt_lookup_num_tokens=lookup
    )
    started = time.perf_counter()
    text, tokens = [], 0
    for event in backend.generate(Request(prompt=prompt, params=params)):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Usage):
            tokens = event.completion_tokens
    return tokens / (time.perf_counter() - started), "".join(text), tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_smoke(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    pin_torch_threads()
    from studio.backends import BackendContext
    from studio.backends.transformers_chat import TransformersChat
    from studio.config import ModelSpec

    rounds, n = (1, 8) if args.smoke else (args.rounds, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from tests.helpers.tiny_chat import build_tiny_chat_model

            folder = build_tiny_chat_model(Path(tmp) / "tiny", context=512)
        else:
            _, folder = bundled_weights(default_model_cache())
        spec = ModelSpec(
            id="m",
            tabs=["chat"],
            backend="transformers-chat",
            source=str(folder),
            options={"prefix_cache": False},
        )
        backend = TransformersChat(spec, BackendContext(model_cache=folder.parent, base_dir=folder.parent))
        backend.load()
        rows = []
        for name, prompt in (("code fix", FIX), ("free text", STORY)):
            speeds: dict[int, list[float]] = {0: [], 10: []}
            texts: dict[int, str] = {}
            for _ in range(rounds):
                for lookup in (0, 10):
                    rate, texts[lookup], _ = run(backend, prompt, n, lookup)
                    speeds[lookup].append(rate)
            ratio = median([b / a for a, b in zip(speeds[0], speeds[10], strict=True)])
            rows.append([name, median(speeds[0]), median(speeds[10]), ratio, texts[0] == texts[10]])
    print(
        table(
            ["prompt", "tok/s off", "tok/s lookup 10", "lookup/off", "same text"],
            rows,
            f"\n== {rounds} round(s) ==",
        )
    )
    print(load_note())


if __name__ == "__main__":
    main()
