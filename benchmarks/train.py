"""Proof that the Train tab learns: simulated users vote by a rule, a DPO (and a KTO) run tunes the bundled
SmolLM2-135M on those votes, and held-out prompts show the style moved into the variant.

1. For each training prompt ("Tell me about the moon."), two answers from the model itself through
   `Studio.compare`: one with a pirate system prompt, one without (sampled, the model's defaults).
2. Simulated users follow a rule: an answer is styled when it uses pirate words (ahoy, matey, aye, arr,
   ye, ...; SmolLM2-135M does not follow "start with 'Ahoy!'", but it does talk like a pirate when asked).
   Where exactly one answer of the pair is styled, they prefer it by A/B vote (DPO's data) and like it and
   dislike the other (KTO's thumbs). Pairs where both or neither are styled get no vote.
3. `Studio.train` runs DPO (then KTO) on those votes, 15 % held out.
4. On held-out prompts, with no system prompt and greedy decoding, the style rate of the base and of the
   variant; the held-out reward accuracy (DPO's eval_rewards/accuracies); wall time; peak RSS.

Targets (issue 13): style in at most 10 % of the base's answers and at least 60 % of the variant's; held-out
reward accuracy of at least 0.7; at most 20 min of wall time per run on the 2-core machine.

  .venv/bin/python benchmarks/train.py [--methods dpo,kto] [--train-prompts 48] [--eval-prompts 16]
                                       [--epochs 3] [--lr 5e-4] [--tokens 32]
  .venv/bin/python benchmarks/train.py --smoke      # the tiny random model, a few prompts, 2 steps
"""

from __future__ import annotations

import argparse
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BUNDLED_ID, add_smoke, bundled_spec, default_model_cache, load_note, print_targets, table

STYLE_PROMPT = "You are a pirate. Start every reply with 'Ahoy, matey!'"
PIRATE = re.compile(
    r"\b(ahoy|matey|mateys|aye|arr+|ye|yer|yarr|me hearties|landlubbers?|scallywags?|buccaneers?|pirates?|"
    r"seven seas|treasure|savvy|shiver me timbers|sailin'?|booty|plunder)\b",
    re.IGNORECASE,
)
TOPICS = [
    "the moon",
    "apples",
    "trains",
    "the ocean",
    "music",
    "bread",
    "rain",
    "mountains",
    "cats",
    "dogs",
    "the sun",
    "bicycles",
    "chess",
    "coffee",
    "volcanoes",
    "rivers",
    "libraries",
    "bees",
    "winter",
    "clocks",
    "bridges",
    "gardens",
    "kites",
    "deserts",
    "owls",
    "tea",
    "castles",
    "maps",
    "candles",
    "snow",
    "forests",
    "whales",
    "painting",
    "honey",
    "lighthouses",
    "robots",
    "islands",
    "birds",
    "cheese",
    "storms",
    "stars",
    "rabbits",
    "boats",
    "caves",
    "flowers",
    "frogs",
    "thunder",
    "wolves",
    "glaciers",
    "markets",
    "penguins",
    "lemons",
    "tigers",
    "windmills",
    "pianos",
    "sand",
    "comets",
    "dolphins",
    "mushrooms",
    "puzzles",
    "horses",
    "canyons",
    "butterflies",
    "rainbows",
]


def styled(text: str) -> bool:
    return bool(PIRATE.search(text))


def prompts(n_train: int, n_eval: int) -> tuple[list[str], list[str]]:
    assert n_train + n_eval <= len(TOPICS), f"at most {len(TOPICS)} prompts"
    asks = [f"Tell me about {topic}." for topic in TOPICS]
    return asks[:n_train], asks[n_train : n_train + n_eval]


def bench_model(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The model a run votes on and trains: the tiny checkpoint (in `work`) with --smoke, which also sets the
    smoke's prompt counts and length on `args`; else the bundled model from the usual cache."""
    if args.smoke:
        from tests.helpers.tiny_chat import build_tiny_chat_model

        args.train_prompts, args.eval_prompts, args.tokens = 8, 2, 8
        tiny = {"id": "tiny", "tabs": ["chat"], "backend": "transformers-chat"}
        return {**tiny, "source": str(build_tiny_chat_model(work / "tiny"))}
    import os

    os.environ.setdefault("STUDIO_MODEL_CACHE", str(default_model_cache()))
    return bundled_spec()


def make_studio(folder: Path, model: dict[str, Any]) -> Any:
    import yaml

    from studio import Settings
    from studio.service import Studio

    (folder / "models.yaml").write_text(yaml.safe_dump({"models": [model]}), encoding="utf-8")
    settings = Settings.from_env(models_file=folder / "models.yaml", data_dir=folder / "data")
    return Studio.from_settings(settings)


def vote(
    studio: Any, model: str, train_prompts: list[str], tokens: int, smoke: bool = False
) -> dict[str, int]:
    """Two answers a prompt; the users' rule decides the A/B vote and the thumbs (--smoke: the random model
    never talks like a pirate, so the prompted answer always wins)."""
    counts = {"pairs": 0, "voted": 0, "styled with the prompt": 0, "styled without": 0}
    for i, prompt in enumerate(train_prompts):
        a, b = studio.compare(
            tab="chat",
            prompt=prompt,
            a={
                "model": model,
                "params": {"system_prompt": STYLE_PROMPT, "max_new_tokens": tokens, "seed": i},
            },
            b={"model": model, "params": {"max_new_tokens": tokens, "seed": i}},
        )
        counts["pairs"] += 1
        counts["styled with the prompt"] += styled(a.text)
        counts["styled without"] += styled(b.text)
        if styled(a.text) == styled(b.text) and not smoke:
            continue  # the rule cannot tell them apart: no vote
        win, lose = (a, b) if styled(a.text) or smoke else (b, a)
        studio.prefer(win.generation_id, lose.generation_id, "a")
        studio.rate(win.generation_id, "up")
        studio.rate(lose.generation_id, "down")
        counts["voted"] += 1
    return counts


def style_rate(studio: Any, model: str, eval_prompts: list[str], tokens: int) -> tuple[float, list[str]]:
    texts = []
    for prompt in eval_prompts:
        result = studio.generate(
            tab="chat", model_id=model, prompt=prompt, params={"do_sample": False, "max_new_tokens": tokens}
        )
        texts.append(result.text)
    return sum(map(styled, texts)) / max(len(texts), 1), texts


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KB on Linux


def train_one(studio: Any, method: str, model: str, params: dict[str, Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    final, shown = None, 0
    for update in studio.train(method=method, model_id=model, params=params):
        if update.phase == "training" and update.step % 10 == 0 and update.step > shown:
            shown = update.step
            print(f"  {method} step {update.step}/{update.total} loss {update.metrics.get('loss', 0):.3f}")
        final = update
    return final, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="dpo,kto")
    parser.add_argument("--train-prompts", type=int, default=48)
    parser.add_argument("--eval-prompts", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer (votes and evaluation)")
    add_smoke(parser)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(load_note())
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-train-bench-") as tmp:
        work = Path(tmp)
        params: dict[str, Any] = {"epochs": args.epochs, "learning_rate": args.lr, "max_length": 256}
        model = bench_model(work, args)
        if args.smoke:
            params = {"max_steps": 2}
        studio = make_studio(work, model)
        try:
            if model["id"] == BUNDLED_ID and studio.model_status(BUNDLED_ID) != "ready":
                print(f"{BUNDLED_ID} is not pulled: run `studio models pull --bundled` first")
                return
            train_prompts, eval_prompts = prompts(args.train_prompts, args.eval_prompts)
            t = time.perf_counter()
            counts = vote(studio, model["id"], train_prompts, args.tokens, smoke=args.smoke)
            print(f"votes: {counts} in {time.perf_counter() - t:.0f} s")
            base_rate, base_texts = style_rate(studio, model["id"], eval_prompts, args.tokens)
            rows, checks = [], {}
            for method in [m for m in args.methods.split(",") if m]:
                final, seconds = train_one(studio, method, model["id"], params)
                if final.status != "ok":
                    print(f"{method}: run {final.status}: {final.error}")
                    continue
                rate, texts = style_rate(studio, final.variant, eval_prompts, args.tokens)
                accuracy = final.eval_metrics.get("eval_rewards/accuracies", float("nan"))
                margin = final.eval_metrics.get("eval_rewards/margins", float("nan"))
                rows.append(
                    [method, final.train_records, final.eval_records, final.step, base_rate, rate, accuracy,
                     margin, seconds / 60, peak_rss_gb()]
                )  # fmt: skip
                for before, after in list(zip(base_texts, texts, strict=True))[:3]:
                    print(f"  base:    {before[:70]!r}\n  {method}: {after[:70]!r}")
                checks[f"{method}: style in <= 10 % of the base's answers ({base_rate:.0%})"] = (
                    base_rate <= 0.10
                )
                checks[f"{method}: style in >= 60 % of the variant's answers ({rate:.0%})"] = rate >= 0.60
                if method == "dpo":
                    checks[f"dpo: held-out reward accuracy >= 0.7 ({accuracy:.2f})"] = accuracy >= 0.7
                checks[f"{method}: run within 20 min ({seconds / 60:.1f} min)"] = seconds <= 20 * 60
            headers = ["method", "train", "held out", "steps", "base style", "variant style",
                       "reward acc", "margin", "run min", "peak RSS GB"]  # fmt: skip
            print(
                table(headers, rows, title=f"\n{model['id']}: {args.eval_prompts} held-out prompts, greedy")
            )
        finally:
            studio.close()
    print(f"total {(time.perf_counter() - began) / 60:.1f} min; {load_note()}")
    if not args.smoke:
        print_targets(checks)


if __name__ == "__main__":
    main()
