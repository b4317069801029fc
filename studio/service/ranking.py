"""Ranking: a leaderboard per tab from A/B votes (Elo, win rates) and thumbs (thumbs-up rate).

Owns: the arithmetic only (pure functions over plain tuples). Elo starts every model at 1000 and replays the
votes oldest first with K = 32; a tie and "both bad" each count as a draw (as LMSYS's arena does). A pair of
answers from the same model (two seeds) says nothing about models and is not counted.
Ignores: where votes come from (storage) and how the table is shown (ui/library.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

START, K = 1000.0, 32.0
SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass
class Standing:
    tab: str
    model: str
    elo: float = START
    wins: int = 0
    losses: int = 0
    draws: int = 0
    up: int = 0
    down: int = 0

    @property
    def battles(self) -> int:
        return self.wins + self.losses + self.draws

    @property
    def win_rate(self) -> float | None:
        """Wins plus half the draws, over the battles; None with no battle."""
        return (self.wins + self.draws / 2) / self.battles if self.battles else None

    @property
    def up_rate(self) -> float | None:
        votes = self.up + self.down
        return self.up / votes if votes else None

    def as_dict(self) -> dict[str, object]:
        return {
            "tab": self.tab,
            "model": self.model,
            "elo": round(self.elo, 1),
            "battles": self.battles,
            "wins": self.wins,
            "losses": self.losses,
            "draws": self.draws,
            "win_rate": None if self.win_rate is None else round(self.win_rate, 3),
            "thumbs_up": self.up,
            "thumbs_down": self.down,
            "thumbs_up_rate": None if self.up_rate is None else round(self.up_rate, 3),
        }


def leaderboard(
    battles: Iterable[tuple[str, str, str, str]], thumbs: Iterable[tuple[str, str, int, int]]
) -> list[Standing]:
    """battles: (tab, model_a, model_b, choice) oldest first; thumbs: (tab, model, up, down).
    Sorted by tab, then Elo (highest first), then thumbs-up rate."""
    table: dict[tuple[str, str], Standing] = {}

    def standing(tab: str, model: str) -> Standing:
        return table.setdefault((tab, model), Standing(tab, model))

    for tab, model_a, model_b, choice in battles:
        if model_a == model_b or choice not in SCORES:
            continue
        a, b = standing(tab, model_a), standing(tab, model_b)
        score = SCORES[choice]
        expected = 1 / (1 + 10 ** ((b.elo - a.elo) / 400))
        a.elo, b.elo = a.elo + K * (score - expected), b.elo - K * (score - expected)
        if score == 1.0:
            a.wins, b.losses = a.wins + 1, b.losses + 1
        elif score == 0.0:
            a.losses, b.wins = a.losses + 1, b.wins + 1
        else:
            a.draws, b.draws = a.draws + 1, b.draws + 1
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for tab, model, up, down in thumbs:
        totals[(tab, model)][0] += up
        totals[(tab, model)][1] += down
    for (tab, model), (up, down) in totals.items():
        item = standing(tab, model)
        item.up, item.down = up, down
    return sorted(table.values(), key=lambda s: (s.tab, -s.elo, -(s.up_rate or 0), s.model))
