"""Batch-1 decode speed of a ~1.5B chat model on a CUDA GPU, against the memory-bandwidth roofline.

At batch 1 every decode step reads all weights once, so the best possible rate is
    roofline tok/s = HBM bandwidth / bytes of weights read per token
and the script reports each mode's achieved fraction of it. Modes (--modes, comma-separated):

  eager          default dynamic cache, no compilation (transformers' auto-compile disabled)
  static         generation_config.cache_implementation = "static", no compilation
  compiled       static cache + model.forward = torch.compile(model.forward, mode="reduce-overhead",
                 fullgraph=True); transformers' own auto-compile disabled so nothing is compiled twice
  compiled-auto  static cache + transformers' built-in auto-compile of the decode step
                 (generation_config.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead"))

Default model (random weights, built from a config; no download): a Qwen2 config sized like
Qwen2.5-1.5B-Instruct: hidden 1536, 28 layers, intermediate 8960, 12 attention heads, 2 KV heads,
head dim 128, vocab 151936, tied embeddings, bf16: about 1.54e9 parameters, 3.09 GB.
EOS is disabled so every run decodes exactly --new-tokens tokens (checked).

Timing: a streamer records the host time of every new token (transformers copies each token to the
host, a device sync, before handing it over), so decode tok/s = (N - 1) / (t_last - t_first) excludes
the prefill; time to first token (prefill) is reported separately. Warm-up runs (where compilation
happens) are timed and reported as such, then --repeats measured runs (median).

On the GPU machine:    python benchmarks/gpu_decode_roofline.py                  (about 3-6 min)
CPU smoke test here:   python benchmarks/gpu_decode_roofline.py --tiny --device cpu
Smoke run (CI):        python benchmarks/gpu_decode_roofline.py --smoke   (tiny, 8 tokens; GPU if any)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from _common import add_smoke, median, table

QWEN2_1_5B = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
}
TINY = {
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
MODES = ("eager", "static", "compiled", "compiled-auto")


class TokenClock:
    """A streamer that only timestamps: put() #0 is the prompt, #1.. are the new tokens."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def build_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    sizes = TINY if args.tiny else QWEN2_1_5B
    config = Qwen2Config(**sizes, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(args.device):  # initialise the random weights on the device itself (fast on a GPU)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=args.attn)
    model.eval()
    model.generation_config.eos_token_id = None  # never stop early: exactly --new-tokens every run
    model.generation_config.pad_token_id = 0
    if args.device == "cuda":
        torch.cuda.synchronize()
    return model, {"sizes": sizes, "build_s": time.perf_counter() - started}


def weight_bytes(model: Any) -> dict[str, float]:
    """Bytes read per decode step at batch 1 (each distinct parameter once; tied embeddings once)."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() * p.element_size() for p in params)
    n_params = sum(p.numel() for p in params)
    emb = model.get_input_embeddings().weight
    tied = emb is model.get_output_embeddings().weight
    per_token = total
    if not tied:  # an untied input embedding is only read one row per token
        per_token = total - emb.numel() * emb.element_size() + emb.shape[1] * emb.element_size()
    return {"params": float(n_params), "total_bytes": float(total), "per_token_bytes": float(per_token)}


def kv_bytes_per_token(model: Any, context: float) -> float:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    elt = next(model.parameters()).element_size()
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * context * elt


def copy_bandwidth_gbps(device: str) -> float | None:
    """Measured device-to-device copy bandwidth (read + write), GB/s; None on CPU."""
    import torch

    if device != "cuda":
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del src, dst
    torch.cuda.empty_cache()
    return 2 * (1 << 30) * reps / seconds / 1e9


def configure(model: Any, mode: str, args: argparse.Namespace) -> Any:
    """Set the model up for a mode; returns the original forward to restore afterwards (or None)."""
    import torch
    from transformers.generation.configuration_utils import CompileConfig

    gen = model.generation_config
    gen.cache_implementation = None if mode == "eager" else "static"
    gen.compile_config = None
    gen.disable_compile = mode != "compiled-auto"
    if mode == "compiled-auto":
        gen.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
        if args.device != "cuda":
            gen.compile_config._compile_all_devices = (
                True  # transformers only auto-compiles on GPUs otherwise
            )
    if mode == "compiled":
        original = model.forward
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        return original
    return None


def one_run(model: Any, inputs: dict[str, Any], n: int, device: str) -> dict[str, float]:
    import torch

    clock = TokenClock()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, streamer=clock)
    if device == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    produced = int(out.shape[1] - inputs["input_ids"].shape[1])
    tokens = clock.times[1:]
    decode_s = tokens[-1] - tokens[0] if len(tokens) > 1 else float("nan")
    return {
        "tokens": produced,
        "total_s": end - started,
        "ttft_ms": (tokens[0] - started) * 1000 if tokens else float("nan"),
        "decode_tok_s": (len(tokens) - 1) / decode_s if decode_s > 0 else float("nan"),
        "ms_per_token": decode_s * 1000 / (len(tokens) - 1) if len(tokens) > 1 else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument(
        "--tiny", action="store_true", help="a tiny config (hidden 64, 2 layers) to test the code path"
    )
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float16", "float32"],
        help="default: bfloat16 on cuda, float32 on cpu",
    )
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, ...)")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the torch.compile mode (default: on for cuda, off for cpu)",
    )
    ap.add_argument(
        "--modes",
        default=None,
        help=f"comma-separated subset of {','.join(MODES)} "
        "(default: eager,compiled with --compile, else eager,static)",
    )
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", "--tokens", dest="new_tokens", type=int, default=256)
    ap.add_argument(
        "--warmup", type=int, default=2, help="unmeasured runs per mode (compilation happens here)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hbm-gbps", type=float, default=4800.0, help="memory bandwidth in GB/s (H200: 4800)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU smoke test)")
    add_smoke(ap)
    args = ap.parse_args()

    import torch

    if args.smoke:  # the tiny config, a few tokens, no compilation: on the GPU when there is one
        if not torch.cuda.is_available():
            print("skipped: no CUDA (the GPU decode figures); --smoke runs the tiny config on the CPU")
        args.tiny, args.compile, args.warmup, args.repeats = True, False, 1, 1
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        args.prompt_tokens, args.new_tokens = 16, 8

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "CUDA is not available (torch",
            torch.__version__,
            "sees no GPU): this benchmark needs an NVIDIA GPU.",
        )
        print(f"To check the code path on a CPU instead: python {Path(__file__).name} --tiny --device cpu")
        return 2
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.compile is None:
        args.compile = args.device == "cuda"
    modes = (args.modes or ("eager,compiled" if args.compile else "eager,static")).split(",")
    if not args.compile:
        modes = [m for m in modes if not m.startswith("compiled")]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {MODES}")

    import transformers

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device_name}")
    model, info = build_model(args)
    wb = weight_bytes(model)
    avg_ctx = args.prompt_tokens + args.new_tokens / 2
    kv = kv_bytes_per_token(model, avg_ctx)
    roofline = args.hbm_gbps * 1e9 / wb["per_token_bytes"]
    measured_bw = copy_bandwidth_gbps(args.device)
    print(f"model: Qwen2 config {json.dumps(info['sizes'])}")
    print(
        f"  {wb['params'] / 1e9:.3f} B parameters, {args.dtype}, {wb['total_bytes'] / 1e9:.3f} GB; "
        f"built with random weights in {info['build_s']:.1f} s"
    )
    print(
        f"  weight bytes read per token: {wb['per_token_bytes'] / 1e9:.3f} GB; KV cache read per token at "
        f"the average context {avg_ctx:.0f}: {kv / 1e6:.1f} MB (not in the roofline)"
    )
    print(f"  roofline at {args.hbm_gbps:.0f} GB/s: {roofline:.1f} tok/s ({1000 / roofline:.3f} ms/token)")
    if measured_bw:
        print(
            f"  measured device copy bandwidth: {measured_bw:.0f} GB/s "
            f"(roofline at that rate: {measured_bw * 1e9 / wb['per_token_bytes']:.1f} tok/s)"
        )
    if args.device != "cuda":
        print("  NOTE: CPU run = code-path check only; the HBM roofline does not apply to a CPU.")

    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (1, args.prompt_tokens), generator=gen).to(args.device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    rows: list[list[object]] = []
    results: dict[str, Any] = {
        "model": info["sizes"],
        "weights": wb,
        "hbm_gbps": args.hbm_gbps,
        "measured_copy_gbps": measured_bw,
        "roofline_tok_s": roofline,
        "modes": {},
    }
    for mode in modes:
        print(f"\n-- {mode} --", flush=True)
        original = None
        try:
            original = configure(model, mode, args)
            warm = []
            for i in range(args.warmup):
                r = one_run(model, inputs, args.new_tokens, args.device)
                warm.append(r["total_s"])
                print(
                    f"  warm-up {i + 1}: {r['total_s']:.2f} s ({r['decode_tok_s']:.1f} tok/s decode)",
                    flush=True,
                )
            runs = []
            for i in range(args.repeats):
                r = one_run(model, inputs, args.new_tokens, args.device)
                if r["tokens"] != args.new_tokens:
                    raise RuntimeError(f"generated {r['tokens']} tokens, expected {args.new_tokens}")
                runs.append(r)
                print(
                    f"  run {i + 1}: {r['decode_tok_s']:.1f} tok/s decode, TTFT {r['ttft_ms']:.1f} ms, "
                    f"total {r['total_s']:.3f} s",
                    flush=True,
                )
            tok_s = median([r["decode_tok_s"] for r in runs])
            row = [
                mode,
                runs[0]["tokens"],
                median([r["ttft_ms"] for r in runs]),
                median([r["ms_per_token"] for r in runs]),
                tok_s,
                median([args.new_tokens / r["total_s"] for r in runs]),
                roofline,
                f"{100 * tok_s / roofline:.1f}%",
                warm[0] if warm else float("nan"),
            ]
            rows.append(row)
            results["modes"][mode] = {
                "runs": runs,
                "warmup_s": warm,
                "decode_tok_s": tok_s,
                "fraction_of_roofline": tok_s / roofline,
            }
        except Exception as exc:  # report and go on with the other modes
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            print(f"  FAILED: {msg}", flush=True)
            rows.append(
                [
                    mode,
                    "FAILED",
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    roofline,
                    float("nan"),
                    float("nan"),
                ]
            )
            results["modes"][mode] = {"error": msg}
        finally:
            if original is not None:
                del model.forward  # drop the compiled instance attribute; the class forward is back
            if args.device == "cuda":
                torch.cuda.empty_cache()

    title = (
        f"\n== batch-1 decode, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, "
        f"{args.dtype}, {device_name} (median of {args.repeats}) =="
    )
    headers = [
        "mode",
        "tokens",
        "TTFT ms",
        "ms/token",
        "decode tok/s",
        "end-to-end tok/s",
        "roofline tok/s",
        "of roofline",
        "1st warm-up s",
    ]
    print(table(headers, rows, title))
    if args.device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"results written to {args.json}")
    return 0 if all("error" not in m for m in results["modes"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
