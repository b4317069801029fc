"""Proof that a reward model learns the studio's votes and that Best of n uses it: simulated users vote by
a rule, `Studio.train(method="reward")` fits a scorer on the bundled SmolLM2-135M, and on held-out prompts
the scorer ranks answers as the users would and picks their preferred style more often than chance.

1. Votes, as in benchmarks/train.py: for each training prompt two answers (one with a pirate system
   prompt, one without); users prefer the one with pirate words (A/B vote, thumbs) when exactly one has them.
2. A reward model (LoRA + a score head, TRL's RewardTrainer) trains on those pairs.
3. On held-out prompts, Best of 4 through `Studio.chat` (`best_of=4`, `scorer=` the new model), the 4
   candidates sampled with the pirate system prompt, which the model follows only some of the time:
   - held-out pairwise accuracy: over every (styled, plain) pair of candidates of one prompt, how often the
     styled one scores higher (goal >= 0.75);
   - the style rate of best-of-1 (the first candidate, what one sample gives) and of best-of-4 (the
     scorer's pick): Best of n helps when the second is higher.
   Wall time of each part.

  .venv/bin/python benchmarks/reward.py [--train-prompts 40] [--eval-prompts 8] [--epochs 4] [--tokens 32]
  .venv/bin/python benchmarks/reward.py --smoke      # the tiny random model, a few prompts, 2 steps
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BUNDLED_ID, add_smoke, load_note, print_targets, table
from train import STYLE_PROMPT, bench_model, make_studio, prompts, styled, vote

N = 4


def best_of_round(
    studio: Any, model: str, scorer: str, prompt: str, seed: int, tokens: int
) -> dict[str, Any]:
    """One Best-of-4 turn: the candidates' texts, scores and which was chosen."""
    from sqlmodel import Session

    from studio import storage

    params = {"system_prompt": STYLE_PROMPT, "max_new_tokens": tokens, "do_sample": True, "seed": seed}
    *_, final = studio.chat(model_id=model, message=prompt, params={**params, "best_of": N, "scorer": scorer})
    with Session(studio.engine) as session:
        row = storage.get_generation(session, generation_id=final.generation_id)
        candidates = row.params["best_of_round"]["candidates"]
        texts = [
            storage.get_generation(session, generation_id=c["generation_id"]).output_text for c in candidates
        ]
    return {
        "texts": texts,
        "scores": [c["score"] for c in candidates],
        "chosen": [c["generation_id"] for c in candidates].index(final.generation_id),
        "notice": final.notices[0] if final.notices else "",
    }


def pairwise(rounds: list[dict[str, Any]]) -> tuple[int, int]:
    """(right, pairs) over every (styled, plain) pair of candidates within a round."""
    right = pairs = 0
    for r in rounds:
        if any(s is None for s in r["scores"]):
            continue
        for text_a, score_a in zip(r["texts"], r["scores"], strict=True):
            for text_b, score_b in zip(r["texts"], r["scores"], strict=True):
                if styled(text_a) and not styled(text_b):
                    pairs += 1
                    right += score_a > score_b
    return right, pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-prompts", type=int, default=40)
    parser.add_argument("--eval-prompts", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    add_smoke(parser)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(load_note())
    began = time.perf_counter()
    checks: dict[str, bool | None] = {}
    with tempfile.TemporaryDirectory(prefix="studio-reward-bench-") as tmp:
        work = Path(tmp)
        params: dict[str, Any] = {"epochs": args.epochs, "max_length": 256}
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
            vote_s = time.perf_counter() - t
            print(f"votes: {counts} in {vote_s:.0f} s")
            t = time.perf_counter()
            *_, final = studio.train(method="reward", model_id=model["id"], params=params)
            train_s = time.perf_counter() - t
            if final.status != "ok":
                print(f"reward run {final.status}: {final.error}")
                return
            held = {
                k: round(v, 3) for k, v in final.eval_metrics.items() if k in ("eval_accuracy", "eval_margin")
            }
            print(
                f"reward model {final.variant}: {final.train_records} + {final.eval_records} held-out pairs,"
            )
            print(f"  {final.step} steps in {train_s:.0f} s; the run's own held-out split: {held}")
            t = time.perf_counter()
            rounds = [
                best_of_round(studio, model["id"], final.variant, p, 1000 + 10 * i, args.tokens)
                for i, p in enumerate(eval_prompts)
            ]
            eval_s = time.perf_counter() - t
        finally:
            studio.close()
    right, pairs = pairwise(rounds)
    accuracy = right / pairs if pairs else float("nan")
    one = sum(styled(r["texts"][0]) for r in rounds) / len(rounds)
    best = sum(styled(r["texts"][r["chosen"]]) for r in rounds) / len(rounds)
    any_styled = sum(any(map(styled, r["texts"])) for r in rounds) / len(rounds)
    for r in rounds[:3]:
        print(f"  {r['notice']}")
        for text, score in zip(r["texts"], r["scores"], strict=True):
            mark = "*" if styled(text) else " "
            print(f"    {score if score is None else round(score, 2)!s:>6} {mark} {text[:60]!r}")
    rows = [
        [f"{len(rounds)} held-out prompts x {N}", f"{right}/{pairs}", accuracy, one, best, any_styled,
         vote_s / 60, train_s / 60, eval_s / 60],
    ]  # fmt: skip
    headers = ["candidates", "pairs right", "pair acc", "style best-of-1", "style best-of-4",
               "style any of 4", "votes min", "train min", "best-of min"]  # fmt: skip
    print(table(headers, rows, title=f"\n{model['id']}: reward model and Best of {N}"))
    print(f"total {(time.perf_counter() - began) / 60:.1f} min; {load_note()}")
    if not args.smoke:
        checks[f"held-out pairwise accuracy >= 0.75 ({accuracy:.2f} on {pairs} pairs)"] = accuracy >= 0.75
        checks[f"best-of-4 style rate above best-of-1 ({best:.0%} vs {one:.0%})"] = best > one
        print_targets(checks)


if __name__ == "__main__":
    main()
