"""Bradley-Terry ratings with bootstrap confidence intervals (the leaderboard's "Leaderboard 2.0" fit).

Owns: the pure arithmetic, numpy only: `fit` (maximum likelihood over a battle list, ties as half a win to
each side, on the Elo scale anchored at 1000) and `bootstrap` (95 % percentile intervals from resampled
votes, and the rank by interval overlap that LMArena uses: 1 + the number of models whose lower bound is
above this model's upper bound).
Ignores: which votes count (the caller drops self-battles and failed sides) and where results are shown.

Why not online Elo: it replays the votes in order, so the same votes in another order give other ratings,
and it has no measure of uncertainty. The Bradley-Terry fit is the logistic regression of "A beat B" on
(strength A - strength B); it has one answer whatever the order. Speed comes from two facts: the fit only
needs the per-pair win counts (a models x models matrix, not the vote list), and a resample of the votes is
a draw of the count of each distinct (pair, outcome) cell. So 100 bootstrap fits of 100,000 votes are
100 small Newton solves (benchmarks/leaderboard.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ANCHOR = 1000.0
SCALE = 400.0 / np.log(10.0)  # natural-log strength -> Elo points (a 400-point gap = 10:1 odds)
# A tiny ridge keeps the fit finite when a model won (or lost) every battle, where the plain maximum
# likelihood strength is infinite. It pulls toward the mean (1000) with the weight of ~0.01 of a battle.
RIDGE = 1e-2
OUTCOMES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass(frozen=True)
class Cells:
    """The votes as distinct (i, j, score of i) cells with their counts, i < j model indices."""

    models: list[str]
    i: np.ndarray
    j: np.ndarray
    score: np.ndarray  # 1.0: i won, 0.0: j won, 0.5: a tie
    count: np.ndarray


def cells(battles: Sequence[tuple[str, str, float]]) -> Cells:
    """battles: (model_a, model_b, score of a: 1, 0 or 0.5). Self-battles are dropped."""
    models = sorted({m for a, b, _ in battles for m in (a, b) if a != b})
    index = {m: k for k, m in enumerate(models)}
    n = len(models)
    # One integer code per (i, j, outcome) so np.unique counts the cells in one pass.
    codes = []
    for a, b, score in battles:
        if a == b:
            continue
        i, j = index[a], index[b]
        if i > j:
            i, j, score = j, i, 1.0 - score
        codes.append((i * n + j) * 3 + round(score * 2))
    if not codes:
        empty = np.zeros(0, dtype=np.int64)
        return Cells(models, empty, empty, np.zeros(0), np.zeros(0))
    unique, count = np.unique(np.asarray(codes, dtype=np.int64), return_counts=True)
    pair, outcome = np.divmod(unique, 3)
    first, second = np.divmod(pair, n)
    return Cells(models, first, second, outcome / 2.0, count.astype(float))


def _fit_counts(c: Cells, counts: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Newton's method on the ridge-penalised log-likelihood, for a batch of count vectors.

    counts: (B, cells). Returns (B, models) natural-log strengths summing to zero."""
    n, batch = len(c.models), counts.shape[0]
    # w[i, j]: i's wins over j (ties: half to each); g[i, j] = g[j, i]: battles between i and j.
    flat = np.zeros((n * n, batch))
    np.add.at(flat, c.i * n + c.j, (counts * c.score).T)
    np.add.at(flat, c.j * n + c.i, (counts * (1.0 - c.score)).T)
    wins = flat.T.reshape(batch, n, n)
    games = wins + wins.transpose(0, 2, 1)
    strength = np.zeros((batch, n))
    won = wins.sum(axis=2)
    eye = np.eye(n)
    for _ in range(iterations):
        diff = strength[:, :, None] - strength[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))  # p[i, j]: chance i beats j
        gradient = won - (games * p).sum(axis=2) - RIDGE * strength
        weight = games * p * (1.0 - p)
        # The negative Hessian: the weighted graph Laplacian plus the ridge (positive definite).
        hessian = -weight + eye * (weight.sum(axis=2)[:, :, None] + RIDGE)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        strength = strength + step
        if np.abs(step).max() < 1e-7:
            break
    return strength - strength.mean(axis=1, keepdims=True)


def to_elo(strength: np.ndarray) -> np.ndarray:
    return ANCHOR + SCALE * strength


@dataclass(frozen=True)
class Rating:
    model: str
    bt: float
    ci_low: float
    ci_high: float
    rank: int


def fit(battles: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """The maximum likelihood ratings, Elo scale (mean 1000), by model."""
    c = cells(battles)
    if not c.models:
        return {}
    elo = to_elo(_fit_counts(c, c.count[None, :]))[0]
    return dict(zip(c.models, elo.tolist(), strict=True))


def bootstrap(
    battles: Sequence[tuple[str, str, float]], *, rounds: int = 100, seed: int = 0, level: float = 0.95
) -> list[Rating]:
    """Ratings with `level` percentile intervals from `rounds` resamples of the votes, best first.

    The seed is fixed by default so the same votes give the same table on every refresh."""
    if rounds < 1:
        raise ValueError("bootstrap needs at least one round")
    c = cells(battles)
    if not c.models:
        return []
    point = to_elo(_fit_counts(c, c.count[None, :]))[0]
    rng = np.random.default_rng(seed)
    # The Poisson bootstrap: each vote is kept k ~ Poisson(1) times, so a cell of n votes draws Poisson(n).
    # For many votes it is the classic resample-with-replacement; for a handful it also tries "this vote
    # did not happen", which the classic one cannot when every vote is alike (one vote: a zero-width
    # interval that would claim certainty).
    resampled = rng.poisson(c.count, size=(rounds, len(c.count))).astype(float)
    samples = to_elo(_fit_counts(c, resampled))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    ratings = []
    for k, model in enumerate(c.models):
        rank = 1 + int((low > high[k]).sum())
        ratings.append(Rating(model, float(point[k]), float(low[k]), float(high[k]), rank))
    return sorted(ratings, key=lambda r: (r.rank, -r.bt, r.model))
