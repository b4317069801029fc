"""Leaderboard 2.0: the Bradley-Terry fit and its bootstrap intervals, on battles drawn from known strengths.

The fitted order matches the true one, the 95 % intervals cover the truth at about the nominal rate, fewer
votes give wider intervals, ties count half, self-battles and unknown choices count nothing, and the
service ranks only finished sides, narrowed to one user's votes by an admin."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import Session

from studio import storage
from studio.service import Studio, StudioError
from studio.service.bradley_terry import SCALE, bootstrap, fit
from studio.service.ranking import leaderboard


def draw(strengths: np.ndarray, votes: int, seed: int) -> list[tuple[str, str, float]]:
    """Battles between random pairs; A wins with the Bradley-Terry chance of its strength gap."""
    rng = np.random.default_rng(seed)
    n = len(strengths)
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n  # never a self-battle
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    won = rng.random(votes) < p
    return [
        (f"m{x}", f"m{y}", float(w)) for x, y, w in zip(a.tolist(), b.tolist(), won.tolist(), strict=True)
    ]


def truth_elo(strengths: np.ndarray) -> dict[str, float]:
    centred = strengths - strengths.mean()
    return {f"m{k}": 1000 + SCALE * float(s) for k, s in enumerate(centred)}


def test_the_fitted_order_matches_the_true_strengths() -> None:
    strengths = np.linspace(-1.5, 1.5, 8)
    ratings = bootstrap(draw(strengths, 8000, seed=1), rounds=100)
    assert [r.model for r in ratings] == [f"m{k}" for k in range(7, -1, -1)]  # best first
    truth = truth_elo(strengths)
    assert all(abs(r.bt - truth[r.model]) < 40 for r in ratings)
    assert abs(np.mean([r.bt for r in ratings]) - 1000) < 1e-6  # anchored: the mean model is 1000
    assert ratings[0].rank == 1 and ratings[-1].rank > 1


def test_the_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    strengths = np.linspace(-1.0, 1.0, 6)
    truth = truth_elo(strengths)
    covered = total = 0
    for seed in range(30):
        for r in bootstrap(draw(strengths, 600, seed=seed), rounds=100, seed=seed):
            covered += r.ci_low <= truth[r.model] <= r.ci_high
            total += 1
    assert 0.88 <= covered / total <= 0.99, covered / total  # nominal 0.95 over 180 intervals


def test_fewer_votes_give_wider_intervals() -> None:
    strengths = np.linspace(-1.0, 1.0, 5)

    def mean_width(votes: int) -> float:
        return float(np.mean([r.ci_high - r.ci_low for r in bootstrap(draw(strengths, votes, seed=3))]))

    few, many = mean_width(200), mean_width(5000)
    assert few > 3 * many  # width shrinks like 1/sqrt(votes): 5x here


def test_ties_count_half_and_self_battles_count_nothing() -> None:
    even = fit([("a", "b", 0.5)] * 10)
    assert even["a"] == pytest.approx(1000) and even["b"] == pytest.approx(1000)
    assert fit([("a", "a", 1.0)] * 10) == {}
    # Three wins and one loss: odds 3:1 -> 400 * log10(3) = 191 points apart (the ridge moves it < 2).
    gap = fit([("a", "b", 1.0)] * 3 + [("b", "a", 1.0)])
    assert gap["a"] - gap["b"] == pytest.approx(400 * np.log10(3), abs=2.0)
    # One model that won everything stays finite.
    assert np.isfinite(list(fit([("a", "b", 1.0)] * 5).values())).all()
    # The vote order does not matter (unlike online Elo).
    votes = draw(np.array([0.0, 0.5, 1.0]), 300, seed=5)
    assert fit(votes) == pytest.approx(fit(votes[::-1]))


def test_the_table_keeps_elo_battles_win_rate_and_thumbs() -> None:
    battles = [("chat", "x", "y", "a")] * 6 + [("chat", "x", "y", "tie"), ("chat", "x", "x", "a")]
    board = leaderboard(battles, [("chat", "x", 2, 1), ("chat", "z", 1, 0)])
    rows = {s.model: s.as_dict() for s in board}
    assert [s.model for s in board] == ["x", "y", "z"]  # z has thumbs only: after every ranked model
    assert rows["x"]["battles"] == 7 and rows["x"]["win_rate"] == pytest.approx(6.5 / 7, abs=1e-3)
    assert rows["x"]["elo"] > 1000 and rows["x"]["thumbs_up"] == 2
    assert (
        rows["x"]["ci_low"] <= rows["x"]["bt"] <= rows["x"]["ci_high"] and rows["x"]["bt"] > rows["y"]["bt"]
    )
    assert rows["z"]["bt"] is None and rows["z"]["rank"] is None


def _vote(studio: Studio, user: str, winner: str) -> None:
    a, b = studio.compare(
        tab="chat", prompt=f"p {user}", a={"model": "fake"}, b={"model": "fake-2"}, user=user
    )
    studio.prefer(a.generation_id, b.generation_id, winner, user=user)


def test_the_service_ranks_everyones_or_one_users_votes(fake_studio: Studio) -> None:
    _vote(fake_studio, "ann", "a")
    _vote(fake_studio, "bob", "b")
    _vote(fake_studio, "bob", "b")
    everyone = {r["model"]: r for r in fake_studio.leaderboard(tab="chat")}
    assert everyone["fake-2"]["battles"] == 3 and everyone["fake-2"]["bt"] > everyone["fake"]["bt"]
    anns = {r["model"]: r for r in fake_studio.leaderboard(tab="chat", votes_of="ann", user="ann")}
    assert anns["fake"]["battles"] == 1 and anns["fake"]["bt"] > anns["fake-2"]["bt"]
    # The single local user is the admin without accounts; with accounts, others' votes need an admin.
    assert fake_studio.leaderboard(votes_of="bob")[0]["battles"] == 2

    class Accounts:
        def is_admin(self, user: str | None) -> bool:
            return user == "root"

    fake_studio.accounts = Accounts()  # type: ignore[assignment]
    with pytest.raises(StudioError, match="only an admin"):
        fake_studio.leaderboard(votes_of="bob", user="ann")
    assert fake_studio.leaderboard(votes_of="bob", user="root")[0]["battles"] == 2
    with Session(fake_studio.engine) as session:
        assert len(storage.preference_rows(session)) == 3


def test_the_cli_prints_bt_intervals_and_rank(capsys, tmp_path) -> None:
    import json

    from studio import Settings
    from studio.cli import main
    from tests.conftest import FAKE_MODELS
    from tests.helpers.served import write_models

    models = write_models(tmp_path, FAKE_MODELS)
    args = ["--models", str(models), "--data-dir", str(tmp_path / "data")]
    assert main(["leaderboard", *args]) == 0
    assert "no votes yet" in capsys.readouterr().out
    studio = Studio.from_settings(Settings.from_env(models_file=models, data_dir=tmp_path / "data"))
    try:
        for _ in range(3):
            _vote(studio, "local", "a")
    finally:
        studio.close()
    assert main(["leaderboard", "--tab", "chat", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["fake", "fake-2"]
    assert all(
        {"bt", "ci_low", "ci_high", "rank", "elo", "battles", "win_rate", "thumbs_up"} <= set(r) for r in rows
    )
    assert main(["leaderboard", *args]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["TAB", "RANK", "MODEL", "BT"] and "fake-2" in out
    assert main(["leaderboard", "--tab", "image", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out) == []
