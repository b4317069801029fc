"""What the studio's layers cost on top of `model.generate`: raw vs service vs Gradio API, plus the DB write.

The same loaded model object, the same chat-templated prompt, greedy decoding with a fixed number of
new tokens, measured four ways, interleaved (raw, service, gradio-client, gradio-sse, raw, ...):

  raw            model.generate(..., streamer=TextIteratorStreamer) in a thread, consuming the streamer
  service        studio.chat(...) consumed fully (validation, manager, backend, one DB write per turn)
  gradio-client  the "/chat" endpoint of the app served in-process, called with gradio_client.Client
                 (client.submit + iterating the job); what a Python API user sees. NB: gradio_client's
                 reader polls its message queue every 50 ms, so its timings carry up to 50 ms of
                 client-side delay that is not the server's doing.
  gradio-sse     the same endpoint through the queue protocol directly (POST queue/join, read the
                 queue/data SSE stream with httpx, timestamp each message on arrival): the server's own
                 overhead, without gradio_client's polling.

Fairness: the service and Gradio calls pass repetition_penalty=1.0 (models.yaml gives smollm2 1.1,
which would add a logits processor that raw does not run). Completion token counts are reported for
every way (read back from the generation rows for the service and Gradio). Ratios are paired per
round, so slow drifts of the machine's load cancel out; the range shows how noisy the machine was.
The tiny model (tests.helpers.tiny_chat, seed searched so its greedy answer never hits EOS) answers with
newline tokens; TextIteratorStreamer flushes on every newline, so each token is one streamed update,
the worst case for per-update costs.

Also measured: the fixed cost of a turn (1-token turns), the database time per turn (the
`Studio._save` write into a fresh SQLite file, WAL) and the chat tab's `render()` per update.

    .venv/bin/python benchmarks/chat_overhead.py                       # both models, 7 rounds, 64 tokens
    .venv/bin/python benchmarks/chat_overhead.py --model tiny --repeats 3 --tokens 128
    .venv/bin/python benchmarks/chat_overhead.py --smoke                       # tiny, 1 round, 8 tokens
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _chat_ways import Run, SSECaller, run_gradio_client, run_gradio_sse, run_raw, run_service
from _common import (
    BUNDLED_ID,
    add_smoke,
    bundled_spec,
    bundled_weights,
    default_model_cache,
    load_note,
    median,
    pin_torch_threads,
    print_targets,
    table,
)
from _turn_costs import db_benchmark, render_benchmark

from tests.helpers.net import free_port

TINY_ID = "tiny-bench"
PROMPTS = {
    TINY_ID: "Tell me a long story about a lighthouse keeper.",
    BUNDLED_ID: (
        "Write a long, detailed story about a lighthouse keeper who saves a ship during a storm. "
        "Use at least 600 words and many details."
    ),
}
WAYS = ("raw", "service", "gradio-client", "gradio-sse")
TARGET_SERVICE_RATIO = 0.97
TARGET_GRADIO_RATIO = 0.93
TARGET_TTFT_MS = 30.0
TARGET_DB_MS = 2.0
LEGEND = """
TTFT = time to the first streamed text; tok/s = completion tokens / total wall time of the turn.
'x raw' = median over rounds of (tok/s of this way / tok/s of raw in the same round), with its range;
'best/best' = fastest run vs fastest raw run (least disturbed by other load on the machine);
'+TTFT ms' = median over rounds of the added time to the first token vs raw in the same round.
'in-service ms' = duration_ms the service stored for the turn (from its start to the end of the stream,
before its DB write). The service is pulled by its caller one update at a time, so for the Gradio ways
this includes the time Gradio spends on each streamed update."""


@dataclass
class Results:
    runs: dict[str, list[Run]] = field(default_factory=lambda: {w: [] for w in WAYS})


# -- set-up --------------------------------------------------------------------------------------
def make_tiny(folder: Path, n: int, max_seeds: int = 20) -> int:
    """Build the tiny model with the first seed whose greedy answer never hits EOS within n tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.helpers.tiny_chat import build_tiny_chat_model

    for seed in range(max_seeds):
        build_tiny_chat_model(folder, context=max(256, n + 256), seed=seed)
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        inputs = tok.apply_chat_template(
            [{"role": "user", "content": PROMPTS[TINY_ID]}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        if out.shape[1] - inputs["input_ids"].shape[1] == n:
            return seed
    raise SystemExit(f"no seed in 0..{max_seeds - 1} gives a tiny model that runs {n} tokens without EOS")


def measure_model(
    studio: Any, client: Any, caller: SSECaller, model_id: str, n: int, repeats: int
) -> Results:
    prompt = PROMPTS[model_id]
    res = Results()
    with studio.manager.pin(model_id) as backend:
        # Pinned for the whole loop so it cannot be evicted, without a device turn: the service and Gradio
        # ways line up for their own turn. The raw way calls the model directly (nothing else runs here).
        ways = {
            "raw": lambda: run_raw(backend, prompt, n),
            "service": lambda: run_service(studio, model_id, prompt, n),
            "gradio-client": lambda: run_gradio_client(client, studio, model_id, prompt, n),
            "gradio-sse": lambda: run_gradio_sse(caller, studio, model_id, prompt, n),
        }
        for way in WAYS:  # warm-up round, not counted
            ways[way]()
        for i in range(repeats):
            for way in WAYS:
                res.runs[way].append(ways[way]())
            done = ", ".join(f"{w} {res.runs[w][-1].total_ms:.0f} ms" for w in WAYS)
            print(f"  [{model_id}] round {i + 1}/{repeats}: {done}", flush=True)
    return res


def fixed_cost(
    studio: Any, client: Any, caller: SSECaller, model_id: str, repeats: int
) -> list[list[object]]:
    """Per-turn cost independent of length: 1-token turns, interleaved; median total ms per way."""
    prompt = PROMPTS[model_id]
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    with studio.manager.pin(model_id) as backend:  # loaded, no turn held (see measure_model)
        ways = {
            "raw": lambda: run_raw(backend, prompt, 1),
            "service": lambda: run_service(studio, model_id, prompt, 1),
            "gradio-client": lambda: run_gradio_client(client, studio, model_id, prompt, 1),
            "gradio-sse": lambda: run_gradio_sse(caller, studio, model_id, prompt, 1),
        }
        for way in WAYS:
            ways[way]()
        for _ in range(repeats):
            for way in WAYS:
                times[way].append(ways[way]().total_ms)
    raw = median(times["raw"])
    return [[w, median(times[w]), median(times[w]) - raw if w != "raw" else float("nan")] for w in WAYS]


def report(model_id: str, n: int, res: Results) -> tuple[str, dict[str, bool]]:
    """Table of one model's results. Ratios are paired: each round's way vs the raw run of the same round
    (the runs of a round are seconds apart, so slow drifts in machine load cancel out)."""
    raw = res.runs["raw"]
    raw_ttft = median([r.ttft_ms for r in raw])
    raw_best = max(r.tok_s for r in raw)
    rows = []
    for way in WAYS:
        runs = res.runs[way]
        counts = sorted({r.tokens for r in runs})
        ratios = [r.tok_s / b.tok_s for r, b in zip(runs, raw, strict=True)]
        added = [r.ttft_ms - b.ttft_ms for r, b in zip(runs, raw, strict=True)]
        best = max(r.tok_s for r in runs)
        rows.append(
            [
                way,
                ",".join(map(str, counts)),
                median([r.ttft_ms for r in runs]),
                median([r.total_ms for r in runs]),
                median([r.service_ms for r in runs]),
                median([r.tok_s for r in runs]),
                best,
                median(ratios),
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                best / raw_best,
                median(added) if way != "raw" else float("nan"),
            ]
        )
    title = (
        f"\n== {model_id}: {n} new tokens, greedy, {len(raw)} interleaved rounds "
        f"(medians; raw TTFT {raw_ttft:.1f} ms) =="
    )
    headers = [
        "way",
        "tokens",
        "TTFT ms",
        "total ms",
        "in-service ms",
        "tok/s",
        "best tok/s",
        "x raw",
        "x raw range",
        "best/best",
        "+TTFT ms",
    ]
    text = table(headers, rows, title)
    by = {r[0]: r for r in rows}
    equal_counts = len({r.tokens for w in WAYS for r in res.runs[w]}) == 1
    checks = {
        f"service/raw tok/s >= {TARGET_SERVICE_RATIO}": by["service"][7] >= TARGET_SERVICE_RATIO,
        f"gradio-client/raw tok/s >= {TARGET_GRADIO_RATIO}": by["gradio-client"][7] >= TARGET_GRADIO_RATIO,
        f"gradio-sse/raw tok/s >= {TARGET_GRADIO_RATIO}": by["gradio-sse"][7] >= TARGET_GRADIO_RATIO,
        f"service +TTFT <= {TARGET_TTFT_MS:.0f} ms": by["service"][10] <= TARGET_TTFT_MS,
        f"gradio-client +TTFT <= {TARGET_TTFT_MS:.0f} ms": by["gradio-client"][10] <= TARGET_TTFT_MS,
        f"gradio-sse +TTFT <= {TARGET_TTFT_MS:.0f} ms": by["gradio-sse"][10] <= TARGET_TTFT_MS,
    }
    text += "\n" + (
        "all ways produced the same number of tokens"
        if equal_counts
        else "WARNING: token counts differ between ways; compare tok/s, not totals"
    )
    return text, checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["tiny", "bundled", "both"], default="both")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds per model (after 1 warm-up)")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per generation (greedy, fixed)")
    ap.add_argument("--db-turns", type=int, default=200, help="turns for the database write benchmark")
    ap.add_argument("--skip-db", action="store_true")
    ap.add_argument(
        "--fixed-repeats", type=int, default=10, help="1-token turns per way (tiny model; 0 = skip)"
    )
    add_smoke(ap)
    args = ap.parse_args()
    if args.smoke:
        args.model, args.repeats, args.tokens, args.db_turns, args.fixed_repeats = "tiny", 1, 8, 5, 1

    pin_torch_threads()
    import yaml

    print(f"start: {load_note()}", flush=True)

    cache = default_model_cache()
    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    specs: list[dict[str, Any]] = []
    models: list[str] = []
    if args.model in ("tiny", "both"):
        seed = make_tiny(tmp / "tiny", args.tokens)
        print(
            f"tiny model: Llama hidden 64, 2 layers, seed {seed} (greedy runs {args.tokens} tokens, no EOS)"
        )
        tiny = {"id": TINY_ID, "tabs": ["chat"], "backend": "transformers-chat", "source": str(tmp / "tiny")}
        specs.append(tiny)
        models.append(TINY_ID)
    if args.model in ("bundled", "both"):
        gguf, converted = bundled_weights(cache)
        if not gguf.exists():
            print(f"SKIP bundled: {gguf} is absent; run `studio models pull --bundled` first")
        else:
            if not (converted / "config.json").exists():
                print("note: bundled model not converted yet; the first load converts it (about 20 s)")
            specs.append(bundled_spec())
            models.append(BUNDLED_ID)
    if not models:
        print("nothing to measure")
        return 1
    (tmp / "models.yaml").write_text(yaml.safe_dump({"models": specs}), encoding="utf-8")
    os.environ["STUDIO_DATA_DIR"] = str(tmp / "data")
    os.environ["STUDIO_MODEL_CACHE"] = str(cache)
    os.environ["STUDIO_MODELS"] = str(tmp / "models.yaml")

    from gradio_client import Client

    import studio.ui as ui
    from studio.config import Settings
    from studio.service import Studio

    studio = Studio.from_settings(Settings.from_env(), max_loaded=2)
    for mid in models:
        print(f"loading {mid}: {studio.manager.preload(mid):.2f} s")
    app = ui.build_app(studio)
    port = free_port()
    ui.launch(app, studio, host="127.0.0.1", port=port, block=False)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    caller = SSECaller(client, "/chat")

    outputs: list[str] = []
    checks: dict[str, bool] = {}
    try:
        for mid in models:
            res = measure_model(studio, client, caller, mid, args.tokens, args.repeats)
            text, model_checks = report(mid, args.tokens, res)
            outputs.append(text)
            checks.update({f"[{mid}] {k}": v for k, v in model_checks.items()})
        if TINY_ID in models and args.fixed_repeats:
            rows = fixed_cost(studio, client, caller, TINY_ID, args.fixed_repeats)
            title = (
                f"\n== fixed cost per turn: 1-token turns of {TINY_ID}, "
                f"{args.fixed_repeats} interleaved rounds (medians) =="
            )
            outputs.append(table(["way", "total ms", "+ms vs raw"], rows, title))
    finally:
        caller.close()
        client.close()
        app.close()
        studio.close()

    for text in outputs:
        print(text)
    print(LEGEND)
    if not args.skip_db:
        rows = db_benchmark(args.db_turns, tmp)
        print()
        print(
            table(
                ["database write per turn", "turns", "median ms", "p95 ms", "max ms"],
                rows,
                "== database time per turn (fresh SQLite file, WAL, synchronous=NORMAL) ==",
            )
        )
        checks[f"DB write per turn (new chat) median <= {TARGET_DB_MS} ms"] = rows[0][2] <= TARGET_DB_MS
    print()
    title = "== chat tab: cost of one streamed update's render() (server side, per token) =="
    rows = render_benchmark(5 if args.smoke else 200)
    print(table(["per-update UI cost", "reps", "median ms", "p95 ms"], rows, title))
    print(f"\nend: {load_note()}")
    print_targets(checks)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
