"""Leaderboard benchmark: refit Bradley-Terry ratings with bootstrap intervals over 100,000 votes.

    .venv/bin/python benchmarks/leaderboard.py [--votes 100000] [--models 50] [--rounds 100]
    .venv/bin/python benchmarks/leaderboard.py --smoke       # 2,000 votes over 10 models

Draws votes between random pairs of models with known strengths (10 % ties), then times, side by side:
- the Bradley-Terry fit with its bootstrap (`bradley_terry.bootstrap`), the part Leaderboard 2.0 adds;
- the whole table (`ranking.leaderboard`: online Elo replay, counts, the fit and bootstrap), what a Refresh
  of the Library's leaderboard computes once the votes are read (the database read is not timed here;
  benchmarks/library.py times reading rows).
Target: the whole table in <= 2 s. Also prints how well the fit recovers the true order (Spearman rho).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import add_smoke, load_note, median, print_targets, table

from studio.service import bradley_terry
from studio.service.ranking import leaderboard


def votes(models: int, count: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[str, str, str, str]]]:
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0, 1, models)
    a = rng.integers(0, models, count)
    b = (a + rng.integers(1, models, count)) % models
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    draw = rng.random(count)
    choice = np.where(draw < 0.1, "tie", np.where(rng.random(count) < p, "a", "b"))
    rows = [
        ("chat", f"m{x}", f"m{y}", str(c))
        for x, y, c in zip(a.tolist(), b.tolist(), choice.tolist(), strict=True)
    ]
    return strengths, rows


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100, help="bootstrap resamples")
    parser.add_argument("--repeats", type=int, default=5)
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.votes, args.models, args.repeats = 2000, 10, 1
    strengths, rows = votes(args.models, args.votes)
    battles = [(a, b, {"a": 1.0, "b": 0.0}.get(c, 0.5)) for _, a, b, c in rows]
    fit_s, table_s = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        ratings = bradley_terry.bootstrap(battles, rounds=args.rounds)
        fit_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        board = leaderboard(rows, [], rounds=args.rounds)
        table_s.append(time.perf_counter() - began)
    fitted = {r.model: r.bt for r in ratings}
    rho = spearman([fitted[f"m{k}"] for k in range(args.models)], list(strengths))
    widths = [r.ci_high - r.ci_low for r in ratings]
    print(f"{args.votes:,} votes over {args.models} models, {args.rounds} bootstrap rounds; {load_note()}")
    print(
        table(
            ["step", "median s", "min s"],
            [
                ["Bradley-Terry fit + bootstrap", median(fit_s), min(fit_s)],
                ["whole table (Elo, counts, fit, bootstrap)", median(table_s), min(table_s)],
            ],
        )
    )
    print(
        f"order recovered: Spearman rho {rho:.3f}; median 95 % interval width {median(widths):.1f} Elo points"
    )
    print(f"distinct ranks: {len({s.rank for s in board})} of {len(board)} models")
    print_targets(
        {"whole table <= 2 s (100,000 votes, 50 models)": None if args.smoke else median(table_s) <= 2}
    )


if __name__ == "__main__":
    main()
