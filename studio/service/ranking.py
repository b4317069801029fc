"""Ranking: A/B comparisons and the leaderboard per tab they feed (Bradley-Terry with 95 % intervals and
rank, Elo, win rates, thumbs-up rate).

Owns: the arithmetic (`leaderboard`, pure functions over plain tuples) and the service's A/B part
(`Comparisons`: `compare`, `prefer`, `leaderboard`). Elo starts every model at 1000 and replays the votes
oldest first with K = 32; a tie and "both bad" each count as a draw (as LMSYS's arena does). A pair of
answers from the same model (two seeds) says nothing about models and is not counted. Only two finished
answers can be compared: a side that failed, was stopped or is still running takes no vote and no rank.
The Bradley-Terry fit over the same votes (bradley_terry.py) gives the order: it does not depend on the
order of the votes, and its bootstrap intervals say how sure the order is.
Ignores: running a side (the facade's `generate`), SQL details (storage) and how the table and chart are
shown (ui/compare.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.errors import StudioError, quote
from studio.service import bradley_terry
from studio.service.checks import prompt_text
from studio.service.core import StudioCore
from studio.service.types import GenerationResult, Status

START, K = 1000.0, 32.0
BOOTSTRAP_ROUNDS = 100  # resamples behind each 95 % interval (LMArena uses 100 too)
UNFINISHED: dict[str, str] = {  # why a generation cannot take part in an A/B vote, by its status
    Status.ERROR: "failed",
    Status.STOPPED: "was stopped",
    Status.RUNNING: "is still running",
    Status.INTERRUPTED: "was cut off by a server restart",
}
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
    bt: float | None = None  # the Bradley-Terry rating (Elo scale, mean 1000); None with no battle
    ci_low: float | None = None
    ci_high: float | None = None
    rank: int | None = None  # 1 + the models whose interval lies wholly above this one's

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
            "rank": self.rank,
            "bt": _round(self.bt),
            "ci_low": _round(self.ci_low),
            "ci_high": _round(self.ci_high),
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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def leaderboard(
    battles: Iterable[tuple[str, str, str, str]],
    thumbs: Iterable[tuple[str, str, int, int]],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
) -> list[Standing]:
    """battles: (tab, model_a, model_b, choice) oldest first; thumbs: (tab, model, up, down).
    Sorted by tab, then rank, Bradley-Terry rating (highest first), Elo, then thumbs-up rate."""
    table: dict[tuple[str, str], Standing] = {}
    per_tab: dict[str, list[tuple[str, str, float]]] = defaultdict(list)

    def standing(tab: str, model: str) -> Standing:
        return table.setdefault((tab, model), Standing(tab, model))

    for tab, model_a, model_b, choice in battles:
        if model_a == model_b or choice not in SCORES:
            continue
        a, b = standing(tab, model_a), standing(tab, model_b)
        score = SCORES[choice]
        per_tab[tab].append((model_a, model_b, score))
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
    for tab, tab_battles in per_tab.items():
        for rating in bradley_terry.bootstrap(tab_battles, rounds=rounds):
            item = table[(tab, rating.model)]
            item.bt, item.ci_low, item.ci_high, item.rank = (
                rating.bt,
                rating.ci_low,
                rating.ci_high,
                rating.rank,
            )
    unranked = 1 << 30  # models with thumbs only come after every ranked one

    def order(s: Standing) -> tuple[Any, ...]:
        return (s.tab, s.rank or unranked, -(s.bt or 0), -s.elo, -(s.up_rate or 0), s.model)

    return sorted(table.values(), key=order)


class Comparisons(StudioCore):
    """The A/B part of the service: two candidates for one prompt, the vote on them, the leaderboard."""

    # A/B compare runs each side as one complete generation of its tab: the `Studio` facade's `generate`;
    # `_owned` (the Library's) finds one of the user's generations or refuses.
    generate: Callable[..., GenerationResult]
    _owned: Callable[[Session, Any, int], storage.Generation]

    def prefer(self, generation_a: int, generation_b: int, choice: str, *, user: str | None = None) -> str:
        """Record which of two answers to the same prompt won: a, b, tie or both_bad (the latest vote on a
        pair wins, whichever order it is named in). Returns the choice stored for (a, b)."""
        choice = {"both bad": "both_bad", "A": "a", "B": "b"}.get(choice, choice)
        if choice not in storage.CHOICES:
            raise StudioError(f"a choice is one of {', '.join(storage.CHOICES)}, not {quote(choice)}")
        uid = self.user_id(user)
        with Session(self.engine) as session:
            a, b = self._owned(session, generation_a, uid), self._owned(session, generation_b, uid)
            if a.id == b.id:
                raise StudioError("compare two different generations")
            if a.tab != b.tab or a.prompt != b.prompt or a.history != b.history:
                raise StudioError(
                    f"generations {a.id} and {b.id} answer different prompts; A/B votes compare answers "
                    "to the same prompt"
                )
            for row in (a, b):
                if row.status != Status.OK:
                    # A vote against an error message or half an answer would rank models on their failures.
                    raise StudioError(
                        f"generation {row.id} {UNFINISHED.get(row.status, 'did not finish')}; an A/B vote "
                        "compares two finished answers"
                    )
            storage.set_preference(
                session,
                user_id=uid,
                tab=a.tab,
                generation_a_id=a.id or 0,
                generation_b_id=b.id or 0,
                choice=choice,
            )
        return choice

    def compare(
        self,
        *,
        tab: str,
        prompt: str,
        a: dict[str, Any],
        b: dict[str, Any],
        user: str | None = None,
    ) -> tuple[GenerationResult, GenerationResult]:
        """Generate two candidates for one prompt: two models, or one model with two seeds or settings.
        `a` and `b` are {"model": id, "params": {...}}; each side is stored as an ordinary generation."""
        sides = []
        for side in (a, b):
            if not isinstance(side, dict) or not side.get("model"):
                raise StudioError("each side of a comparison needs a model")
            params = dict(side.get("params") or {})
            if tab == "image":
                params["num_images"] = 1  # one picture a side: the vote is about that picture
            sides.append((str(side["model"]), params))
        prompt_text(prompt)
        results = []
        for model, params in sides:
            result = self.generate(tab=tab, model_id=model, prompt=prompt, params=params, user=user)
            if result.conversation_id is not None:
                # `chat` files every turn in a conversation of its own; a side of a comparison is not one
                # (two entries in the Chat list per comparison), so it is taken out at once.
                with Session(self.engine) as session:
                    storage.detach_from_conversation(session, generation_id=result.generation_id or 0)
                result.conversation_id = None
            results.append(result)
        return results[0], results[1]

    def leaderboard(
        self, *, tab: str | None = None, votes_of: str | None = None, user: str | None = None
    ) -> list[dict[str, Any]]:
        """Per tab and model: the Bradley-Terry rating with its 95 % interval and rank, Elo, battles, win rate
        (A/B votes), thumbs up/down and thumbs-up rate. Everyone's votes count (votes_of=None), or one
        user's: anyone may narrow it to their own votes, an admin to anyone's."""
        uid = None
        if votes_of is not None:
            if votes_of != user and not self.is_admin(user):
                raise StudioError("only an admin may rank by another user's votes")
            uid = self.user_id(votes_of)
        with Session(self.engine) as session:
            prefs = storage.preference_rows(session, user_id=uid, tab=tab)
            thumbs = storage.rating_counts(session, user_id=uid, tab=tab)
        # Votes stored before `prefer` refused unfinished answers may name a failed side: they rank nothing.
        finished = [p for p in prefs if p["a"]["status"] == Status.OK and p["b"]["status"] == Status.OK]
        battles = [(p["tab"], p["a"]["model_id"], p["b"]["model_id"], p["choice"]) for p in finished]
        counts = [(t["tab"], t["model_id"], int(t["up"] or 0), int(t["down"] or 0)) for t in thumbs]
        return [s.as_dict() for s in leaderboard(battles, counts)]
