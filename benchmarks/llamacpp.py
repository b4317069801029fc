"""The llama-cpp backend: its overhead over raw llama-cpp-python, its speed against transformers-chat on the
same GGUF, and the resident memory of both.

Ways, interleaved per round (the machine's load drifts), greedy, a fixed prompt, up to N new tokens:
  llama raw      `Llama.create_completion(prompt tokens, stream=True)` on the very Llama object the service
                 loaded (the same chat-templated tokens), consumed fully
  llama service  `Studio.chat` on the llama-cpp model (validation, manager, backend, one DB write per turn)
  hf service     `Studio.chat` on the same GGUF through transformers-chat (dequantised once to safetensors)
Before every llama run its evaluated tokens are forgotten (`Llama.reset()`) and the prompt cache is off, so
each turn prefills its prompt (prefix reuse is benchmarks/prefix_cache.py's subject).
Resident memory: a fresh process per engine loads the model through the service and answers once; its RSS.

    .venv/bin/python benchmarks/llamacpp.py                 # the bundled SmolLM2, 5 rounds, 64 tokens
    .venv/bin/python benchmarks/llamacpp.py --rounds 9 --tokens 128
    .venv/bin/python benchmarks/llamacpp.py --smoke         # the tiny GGUF, 1 round (skips without llama_cpp)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _chat_ways import Run, run_service
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

PROMPT = "Write a long, detailed story about a lighthouse keeper who saves a ship during a storm."
TARGET_RATIO = 0.95  # service tokens/s over raw
TARGET_TTFT_MS = 30.0  # added to the first token
TARGET_VS_HF = 4.0


def models_yaml(folder: Path, gguf: Path) -> Path:
    """Two entries on the same GGUF: llama.cpp, and transformers (whose cache folder holds the conversion)."""
    path = folder / "models.yaml"
    path.write_text(
        "models:\n"
        f"  - {{id: llama, tabs: [chat], backend: llama-cpp, source: '{gguf}',"
        " options: {n_threads: 1, prefix_cache: false}}\n"
        f"  - {{id: hf, tabs: [chat], backend: transformers-chat, source: '{gguf}',"
        " options: {prefix_cache: false}}\n",
        encoding="utf-8",
    )
    return path


def studio_for(folder: Path, gguf: Path, cache: Path) -> Any:
    from studio.config import Settings
    from studio.service import Studio

    os.environ["STUDIO_MODEL_CACHE"] = str(cache)
    settings = Settings.from_env(models_file=models_yaml(folder, gguf), data_dir=folder / "data")
    return Studio.from_settings(settings)


def run_raw(backend: Any, n: int) -> Run:
    from studio.backends import Request
    from studio.backends.llama_cpp import LlamaCppParams

    llm = backend.llm
    llm.reset()
    started = time.perf_counter()
    tokens = backend._render(Request(prompt=PROMPT, params=LlamaCppParams()), [], PROMPT)
    first, count = None, 0
    for chunk in llm.create_completion(
        tokens, max_tokens=n, temperature=0.0, repeat_penalty=1.0, stream=True
    ):
        if chunk["choices"][0]["finish_reason"] is None:
            count += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    return Run(((first or end) - started) * 1000, (end - started) * 1000, count)


def resident(engine: str, gguf: Path, cache: Path, n: int) -> float:
    """RSS in MB of a fresh process that loaded `engine` through the service and answered once."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import _common, pathlib, tempfile, psutil;"
        "from llamacpp import studio_for, run_service, PROMPT;"
        "d = pathlib.Path(tempfile.mkdtemp());"
        f"s = studio_for(d, pathlib.Path({str(gguf)!r}), pathlib.Path({str(cache)!r}));"
        f"run_service(s, {engine!r}, PROMPT, {n});"
        "print(psutil.Process().memory_info().rss / 2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_smoke(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    from studio.backends.llama_cpp import available

    if not available():
        print("skipped: llama-cpp-python is not installed (pip install -e '.[llamacpp]')")
        return
    pin_torch_threads()
    rounds, n = (1, 8) if args.smoke else (args.rounds, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.smoke:
            from tests.helpers.tiny_gguf import build_tiny_gguf

            gguf, cache = build_tiny_gguf(folder / "tiny.gguf"), folder / "cache"
        else:
            gguf, _ = bundled_weights(default_model_cache())
            cache = default_model_cache()
            # transformers-chat keeps its conversion under the model id: reuse the bundled model's.
            converted = cache / "smollm2-135m" / "converted"
            if converted.is_dir() and not (cache / "hf" / "converted").exists():
                (cache / "hf").mkdir(parents=True, exist_ok=True)
                (cache / "hf" / "converted").symlink_to(converted)
        studio = studio_for(folder, gguf, cache)
        run_service(studio, "llama", PROMPT, 2)  # load both and warm up
        run_service(studio, "hf", PROMPT, 2)
        with studio.manager.use("llama") as backend:  # the loaded backend, borrowed once (no eviction here)
            pass
        runs: dict[str, list[Run]] = {"llama raw": [], "llama service": [], "hf service": []}
        for r in range(rounds):
            order = list(runs)[r % 3 :] + list(runs)[: r % 3]
            for way in order:
                if way == "llama raw":
                    runs[way].append(run_raw(backend, n))
                elif way == "llama service":
                    backend.llm.reset()
                    runs[way].append(run_service(studio, "llama", PROMPT, n))
                else:
                    runs[way].append(run_service(studio, "hf", PROMPT, n))
        studio.close()
        memory = {e: resident(e, gguf, cache, n) for e in ("llama", "hf")} if not args.smoke else {}
    raw = runs["llama raw"]
    rows = []
    for way, got in runs.items():
        ratio = median([g.tok_s / r.tok_s for g, r in zip(got, raw, strict=True)])
        extra = median([g.ttft_ms - r.ttft_ms for g, r in zip(got, raw, strict=True)])
        tokens = sorted({g.tokens for g in got})
        rows.append(
            [way, median([g.ttft_ms for g in got]), median([g.tok_s for g in got]), ratio, extra, tokens]
        )
    print(
        table(
            ["way", "TTFT ms", "tok/s", "x raw", "+TTFT ms", "tokens"],
            rows,
            f"\n== {rounds} round(s), medians ==",
        )
    )
    hf_x = median([a.tok_s / b.tok_s for a, b in zip(runs["llama service"], runs["hf service"], strict=True)])
    print(f"llama service / hf service tokens/s: {hf_x:.2f}x")
    if memory:
        print(
            f"resident memory after load + one turn: llama {memory['llama']:.0f} MB, hf {memory['hf']:.0f} MB"
        )
    print(load_note())
    smoke = args.smoke
    print_targets(
        {
            f"service >= {TARGET_RATIO} x raw tokens/s": None if smoke else rows[1][3] >= TARGET_RATIO,
            f"service +<= {TARGET_TTFT_MS:.0f} ms to the first token": None
            if smoke
            else rows[1][4] <= TARGET_TTFT_MS,
            f"llama-cpp >= {TARGET_VS_HF}x transformers-chat": None if smoke else hf_x >= TARGET_VS_HF,
        }
    )
    print(json.dumps({"rows": rows, "vs_hf": hf_x, "memory_mb": memory}, default=str))


if __name__ == "__main__":
    main()
