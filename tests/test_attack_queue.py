"""Attack (issue 15, item 5): one user starves everyone. Before, the device line was first come, first
served: a user who queued 20 jobs held every other user's job behind all 20. Now the line is fair between
users, a user may hold at most STUDIO_QUEUED_PER_USER places, and max_new_tokens has a deployment cap."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from studio import storage
from studio.manager.queue import DeviceLine, LineFull
from studio.service import StudioError


def test_another_users_job_starts_after_at_most_one_job() -> None:
    line = DeviceLine("cpu", per_user=None)
    flood = [line.line_up(user="ann") for _ in range(20)]
    bob = line.line_up(user="bob")
    assert flood[0].running and bob.ahead() == 1, "only ann's running job is before bob's"
    started: list[str] = []
    running = flood[0]
    while True:
        running.release()
        now = [t for t in [*flood, bob] if t.running]
        if not now:
            break
        (running,) = now
        started.append("bob" if running is bob else "ann")
    assert started.index("bob") == 0, "bob's job is the next to start after ann's running one"
    assert started == ["bob"] + ["ann"] * 19


def test_users_take_turns_and_ahead_counts_them() -> None:
    line = DeviceLine("cpu", per_user=None)
    ann = [line.line_up(user="ann") for _ in range(3)]
    bob = [line.line_up(user="bob") for _ in range(3)]
    # ann[0] runs; then bob, ann, bob, ann, bob.
    assert [t.ahead() for t in bob] == [1, 3, 5] and [t.ahead() for t in ann] == [0, 2, 4]


def test_one_user_holds_at_most_the_cap() -> None:
    line = DeviceLine("cpu", per_user=3)
    held = [line.line_up(user="ann") for _ in range(3)]
    with pytest.raises(LineFull, match="already have 3 jobs waiting or running"):
        line.line_up(user="ann")
    line.line_up(user="bob")  # another user is not held back by ann's cap
    held[0].release()
    line.line_up(user="ann")  # a finished job frees a place


class Logins:
    def is_admin(self, user: str | None) -> bool:
        return False


def test_without_logins_the_one_local_user_is_not_capped(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_QUEUED_PER_USER", "1")
    studio = make_studio()
    jobs = [studio.chat(model_id="fake", message="SLOW job", run_key=f"a{n}") for n in range(3)]
    for job in jobs:
        next(job)
    for n in range(3):
        studio.cancel(f"a{n}")
    assert [list(job)[-1].status for job in jobs] == ["stopped"] * 3


def _rows(studio) -> int:
    with Session(studio.engine) as session:
        return len(session.exec(select(storage.Generation)).all())


def test_the_service_refuses_a_users_extra_job_before_a_row(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_QUEUED_PER_USER", "2")
    studio = make_studio()
    studio.accounts = Logins()  # the cap is between users: it applies with logins on
    jobs = [studio.chat(model_id="fake", message="SLOW job", user="ann", run_key=f"a{n}") for n in range(2)]
    for job in jobs:
        next(job)  # lined up (the first runs, the second waits)
    before = _rows(studio)
    with pytest.raises(StudioError, match="the most one user may have"):
        next(studio.chat(model_id="fake", message="one more", user="ann"))
    assert _rows(studio) == before, "the refused job stored nothing"
    bob = studio.chat(model_id="fake", message="hello", user="bob")
    assert "1 job ahead" in " ".join(next(bob).notices), "bob waits for ann's running job only"
    studio.cancel("a0")
    for job in jobs:
        job.close()
    final = list(bob)[-1]
    assert final.status == "ok"


def test_max_new_tokens_above_the_deployment_cap_is_refused_naming_it(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_MAX_NEW_TOKENS", "32")
    studio = make_studio()
    with pytest.raises(StudioError, match="cap of 32"):
        next(studio.chat(model_id="fake", message="hi", params={"max_new_tokens": 33}))
    assert _rows(studio) == 0
    assert list(studio.chat(model_id="fake", message="hi", params={"max_new_tokens": 32}))[-1].status == "ok"


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        ("STUDIO_QUEUED_PER_USER", "3", "queued_per_user", 3),
        ("STUDIO_MAX_NEW_TOKENS", "512", "max_new_tokens", 512),
        ("STUDIO_LEASE_SECONDS", "5", "lease_s", 5),
        ("STUDIO_TEMP_MAX_AGE", "10", "temp_max_age_s", 600),
        ("STUDIO_UPLOAD_CACHE", "500MB", "upload_cache", 500 * 1024**2),
    ],
)
def test_the_new_limits_are_read_and_checked(monkeypatch, tmp_path, name, raw, field, value) -> None:
    from studio.config import ConfigError, Settings

    monkeypatch.setenv(name, raw)
    assert getattr(Settings.from_env(data_dir=tmp_path), field) == value
    monkeypatch.setenv(name, "-1")
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(data_dir=tmp_path)
