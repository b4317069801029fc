"""Does Diffusion-DPO learn from the Image tab's votes? Simulated voters who prefer brighter pictures, a
diffusion-dpo run on their votes, and held-out prompts and seeds drawn by the base and by the variant.

1. A tiny random-weight Stable Diffusion pipeline (tests/helpers: UNet 32/64 channels, 64x64 pictures),
   served by the real diffusers backend through `Studio`.
2. For each training prompt, `Studio.compare` draws two pictures (two seeds); the simulated voter prefers
   the one with the higher mean pixel value (`Studio.prefer`), as a person preferring brighter pictures.
3. `Studio.train(method="diffusion-dpo")` on those votes (its defaults unless flags say otherwise).
4. On held-out prompts and seeds, the base and the variant draw with the same seed; reported: the mean
   brightness of each, the mean paired difference, the share of pairs where the variant is brighter, the
   paired effect size (Cohen's d of the differences: mean / standard deviation), held-out implicit-reward
   accuracy, and the wall time of each phase.
Random weights draw noise, so this checks that the loop moves pictures the way the votes point, not that
they look good. Figures: benchmarks/README.md.

  .venv/bin/python benchmarks/diffusion_dpo.py [--pairs 48] [--held-out 16] [--seeds 2] [--steps 150]
                                               [--lr 1e-3] [--rank 8] [--draw-steps 4]
  .venv/bin/python benchmarks/diffusion_dpo.py --smoke     # 6 pairs, 2 training steps, 2 held-out prompts
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_smoke, load_note, pin_torch_threads, print_targets, table

SUBJECTS = ["a lighthouse", "a red boat", "a fox", "a city street", "a bowl of fruit", "a mountain lake"]
STYLES = ["at dusk", "in fog", "in watercolour", "at noon", "as a sketch", "in the rain", "at night"]


def _prompts(count: int, offset: int) -> list[str]:
    out = []
    for i in range(offset, offset + count):
        out.append(f"{SUBJECTS[i % len(SUBJECTS)]} {STYLES[(i // len(SUBJECTS)) % len(STYLES)]}, number {i}")
    return out


def _brightness(path: str) -> float:
    import numpy as np
    from PIL import Image

    with Image.open(path) as picture:
        return float(np.asarray(picture.convert("L"), dtype=np.float64).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_smoke(parser)
    parser.add_argument("--pairs", type=int, default=48, help="voted pairs (training prompts)")
    parser.add_argument("--held-out", type=int, default=16, help="held-out prompts")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per held-out prompt")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--draw-steps", type=int, default=4, help="denoising steps per picture")
    args = parser.parse_args()
    if args.smoke:
        args.pairs, args.held_out, args.seeds, args.steps, args.batch = 6, 2, 1, 2, 2
    pin_torch_threads()

    from studio.config import Settings
    from studio.service import Studio
    from tests.conftest import write_models
    from tests.helpers.tiny_chat import build_tiny_sd_pipeline

    draw = {"steps": args.draw_steps, "width": 64, "height": 64}
    with tempfile.TemporaryDirectory(prefix="bench-ddpo-") as tmp:
        folder = Path(tmp)
        pipeline = build_tiny_sd_pipeline(folder / "sd")
        models = write_models(
            folder,
            f"models:\n  - id: tiny-sd\n    tabs: [image]\n    backend: diffusers\n    source: {pipeline}\n",
        )
        studio = Studio.from_settings(Settings.from_env(models_file=models, data_dir=folder / "data"))
        try:
            began = time.perf_counter()
            for i, prompt in enumerate(_prompts(args.pairs, 0)):
                a, b = studio.compare(
                    tab="image",
                    prompt=prompt,
                    a={"model": "tiny-sd", "params": {**draw, "seed": 2 * i}},
                    b={"model": "tiny-sd", "params": {**draw, "seed": 2 * i + 1}},
                )
                brighter = "a" if _brightness(a.files[0]) >= _brightness(b.files[0]) else "b"
                studio.prefer(a.generation_id, b.generation_id, brighter)
            voting = time.perf_counter() - began

            began = time.perf_counter()
            params = {"max_steps": args.steps, "learning_rate": args.lr, "lora_r": args.rank}
            *_, final = studio.train(
                method="diffusion-dpo", model_id="tiny-sd", params={**params, "batch_size": args.batch}
            )
            training = time.perf_counter() - began
            if final.status != "ok" or not final.variant:
                raise SystemExit(f"the run ended {final.status}: {final.error}")

            began = time.perf_counter()
            diffs, base_means, variant_means = [], [], []
            for j, prompt in enumerate(_prompts(args.held_out, 10_000)):
                for s in range(args.seeds):
                    seed = 50_000 + 97 * j + s
                    shown = {}
                    for model in ("tiny-sd", final.variant):
                        result = studio.generate_image_result(
                            model_id=model, prompt=prompt, params={**draw, "seed": seed}, user=None
                        )
                        shown[model] = _brightness(result.files[0])
                    base_means.append(shown["tiny-sd"])
                    variant_means.append(shown[final.variant])
                    diffs.append(shown[final.variant] - shown["tiny-sd"])
            judging = time.perf_counter() - began
        finally:
            studio.close()

    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    effect = statistics.mean(diffs) / spread if spread else float("nan")
    brighter_share = sum(d > 0 for d in diffs) / len(diffs)
    losses = [h["loss"] for h in final.history]
    accuracy = final.eval_metrics.get("eval_rewards/accuracies", float("nan"))
    base_mean, variant_mean = statistics.mean(base_means), statistics.mean(variant_means)
    print(load_note())
    print(
        table(
            ["measure", "value"],
            [
                ["voted pairs (train + held out)", f"{final.train_records} + {final.eval_records}"],
                ["optimizer steps, batch, lr, rank", f"{final.step}, {args.batch}, {args.lr:g}, {args.rank}"],
                ["loss first -> last step", f"{losses[0]:.4f} -> {losses[-1]:.4f}"],
                ["held-out implicit-reward accuracy", f"{accuracy:.2f}"],
                ["held-out pictures (prompts x seeds)", f"{len(diffs)} ({args.held_out} x {args.seeds})"],
                ["mean brightness: base -> variant", f"{base_mean:.2f} -> {variant_mean:.2f}"],
                ["mean paired difference (0-255)", f"{statistics.mean(diffs):+.2f}"],
                ["pairs where the variant is brighter", f"{brighter_share:.0%}"],
                ["paired effect size (Cohen's d)", f"{effect:+.2f}"],
                ["wall s: votes / training / held-out", f"{voting:.0f} / {training:.0f} / {judging:.0f}"],
            ],
            title="Diffusion-DPO on simulated 'brighter is better' votes (tiny SD, CPU, one thread)",
        )
    )  # fmt: skip
    if not args.smoke:
        print_targets({"variant brighter on held-out prompts (d > 0.5)": effect > 0.5})


if __name__ == "__main__":
    main()
