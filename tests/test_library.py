"""The Library through the service and the CLI, with fake chat and image backends: search and filters,
votes with reasons, A/B comparisons and their conflicts, the leaderboard, deleting rows with their media,
re-run settings and exports (pickapic with copied files included)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlmodel import Session, select

from studio import storage
from studio.cli import main
from studio.service import Studio, StudioError
from tests.conftest import write_models

MODELS = """
models:
  - {id: fake, tabs: [chat, code], backend: fake-chat, source: fake/a}
  - {id: fake-2, tabs: [chat], backend: fake-chat, source: fake/b}
  - {id: painter, tabs: [image], backend: fake-image, source: fake/p,
     defaults: {steps: 2, width: 64, height: 64}}
  - {id: painter-2, tabs: [image], backend: fake-image, source: fake/q,
     defaults: {steps: 2, width: 64, height: 64}}
"""


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio(MODELS)


def say(studio: Studio, text: str, model: str = "fake", conv: int | None = None, user: str | None = None):
    *_, final = studio.chat(model_id=model, message=text, conversation_id=conv, user=user)
    return final


def test_search_filters_and_pages(studio: Studio) -> None:
    first = say(studio, "Tell me about the Café de Flore")
    say(studio, "and its history", conv=first.conversation_id)
    other = say(studio, "quantum tunnelling", model="fake-2")
    say(studio, "private words", user="someone-else")
    studio.rate(other.generation_id, "down")
    page = studio.library(search="cafe")  # diacritics folded; the output text is searched too
    assert [i["generation_id"] for i in page.items] == [first.generation_id]
    assert studio.library(search="echo tunnelling").total == 1  # every word, prompt or output
    assert studio.library(search='AND OR NEAR * " :').total == 0  # operators are plain words
    assert studio.library(search='"; DROP TABLE generation; --').total == 0
    assert studio.library(model="fake-2").items[0]["rating"] == -1
    assert studio.library(rating="down").total == 1 and studio.library(rating="unrated").total == 2
    assert studio.library(tab="code").total == 0 and studio.library(search="private").total == 0
    pages = [studio.library(page=n, per_page=2) for n in (1, 2)]
    assert [p.total for p in pages] == [3, 3] and pages[0].pages == 2
    ids = [i["generation_id"] for p in pages for i in p.items]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert studio.library(since="2999-01-01").total == 0 and studio.library(until="2000-01-01").total == 0
    with pytest.raises(StudioError, match="not a date"):
        studio.library(since="yesterday")
    with pytest.raises(StudioError, match="rating filter"):
        studio.library(rating="meh")


def test_votes_with_reasons_are_idempotent_and_validated(studio: Studio) -> None:
    gid = say(studio, "hello").generation_id

    def stored() -> list[tuple[int, str | None, str | None]]:
        with Session(studio.engine) as s:
            return [(r.value, r.reason, r.comment) for r in s.exec(select(storage.Rating))]

    studio.rate(gid, "down", reason="inaccurate, Off-topic", comment="  wrong city \x00 ")
    studio.rate(gid, "down", reason="inaccurate, Off-topic", comment="  wrong city \x00 ")
    assert stored() == [(-1, "inaccurate,off-topic", "wrong city")]
    studio.rate(gid, "up")  # changing the vote replaces its reason
    assert stored() == [(1, None, None)]
    studio.rate(gid, None)
    assert stored() == []
    for bad, message in [
        ({"reason": "boring"}, "unknown reason 'boring'"),
        ({"comment": "x" * 2001}, "limit is 2000"),
        ({"comment": 5}, "must be text"),
    ]:
        with pytest.raises(StudioError, match=message):
            studio.rate(gid, "up", **bad)
    with pytest.raises(StudioError, match="does not exist"):
        studio.rate(999, "up")
    with pytest.raises(StudioError, match="a vote is"):
        studio.rate(gid, True)  # type: ignore[arg-type]
    assert stored() == []


def test_compare_prefer_conflicts_and_leaderboard(studio: Studio) -> None:
    a, b = studio.compare(
        tab="chat",
        prompt="same prompt",
        a={"model": "fake", "params": {}},
        b={"model": "fake-2", "params": {}},
    )
    assert (a.model, b.model) == ("fake", "fake-2") and a.text == b.text
    ga, gb = a.generation_id, b.generation_id
    studio.prefer(ga, gb, "a")
    studio.prefer(ga, gb, "a")  # a double click stores one vote
    studio.prefer(gb, ga, "a")  # the same pair named the other way round: B now wins, one row still

    with Session(studio.engine) as s:
        [vote] = s.exec(select(storage.Preference)).all()
        assert (vote.generation_a_id, vote.generation_b_id, vote.choice) == (ga, gb, "b")
    studio.rate(ga, "up")
    board = {row["model"]: row for row in studio.leaderboard(tab="chat")}
    assert board["fake-2"]["elo"] > 1000 > board["fake"]["elo"]
    assert (board["fake-2"]["wins"], board["fake"]["losses"], board["fake"]["thumbs_up_rate"]) == (1, 1, 1.0)
    other = say(studio, "another prompt").generation_id
    for args, message in [
        ((ga, other, "a"), "different prompts"),
        ((ga, ga, "a"), "two different"),
        ((ga, 999, "a"), "999 does not exist"),
        ((ga, gb, "maybe"), "a choice is one of"),
    ]:
        with pytest.raises(StudioError, match=message):
            studio.prefer(*args)
    with pytest.raises(StudioError, match="needs a model"):
        studio.compare(tab="chat", prompt="x", a={}, b={"model": "fake"})
    with pytest.raises(StudioError, match="empty"):
        studio.compare(tab="chat", prompt=" ", a={"model": "fake"}, b={"model": "fake"})


def test_delete_removes_rows_votes_and_media(studio: Studio) -> None:
    a, b = studio.compare(
        tab="image",
        prompt="a red fox",
        a={"model": "painter", "params": {"seed": 1}},
        b={"model": "painter-2"},
    )
    files = [Path(a.files[0]), Path(b.files[0])]
    assert all(f.exists() for f in files)
    studio.prefer(a.generation_id, b.generation_id, "tie")
    studio.rate(a.generation_id, "up")
    assert studio.library(tab="image").items[0]["files"] == [str(files[1])]
    assert studio.delete_generations([a.generation_id]) == 1
    assert not files[0].exists() and files[1].exists()
    with Session(studio.engine) as s:
        assert s.exec(select(storage.Preference)).all() == [] and s.exec(select(storage.Rating)).all() == []
    with pytest.raises(StudioError, match="does not exist"):
        studio.delete_generations([a.generation_id])
    first = say(studio, "chat turn")
    second = say(studio, "second turn", conv=first.conversation_id)
    studio.delete_generations([first.generation_id])
    # The kept turn moves up; the next message becomes turn 1, after it.
    assert [(t.prompt, t.generation_id) for t in studio.conversation(first.conversation_id)] == [
        ("second turn", second.generation_id)
    ]
    third = say(studio, "third turn", conv=first.conversation_id)
    turns = studio.conversation(first.conversation_id)
    assert [t.generation_id for t in turns] == [second.generation_id, third.generation_id]
    studio.delete_generations([second.generation_id, third.generation_id])
    assert studio.conversations() == []  # an emptied conversation goes too
    assert studio.library(search="chat").total == 0


def test_rerun_settings_and_a_conversation_reopens(studio: Studio) -> None:
    *_, turn = studio.chat(model_id="fake-2", message="hi", params={"temperature": 0.3, "seed": 5})
    settings = studio.rerun_settings(turn.generation_id)
    assert settings["tab"] == "chat" and settings["model"] == "fake-2" and settings["prompt"] == "hi"
    assert settings["params"]["temperature"] == 0.3 and settings["params"]["seed"] == 5
    assert [t.prompt for t in studio.conversation(settings["conversation_id"])] == ["hi"]
    with pytest.raises(StudioError, match="does not exist"):
        studio.rerun_settings(turn.generation_id, user="intruder")


def test_pickapic_export_copies_files_and_survives_deleted_media(studio: Studio, tmp_path: Path) -> None:
    pairs = [
        studio.compare(tab="image", prompt=f"fox {i}", a={"model": "painter"}, b={"model": "painter-2"})
        for i in range(3)
    ]
    for (a, b), choice in zip(pairs, ["a", "b", "both_bad"], strict=True):
        studio.prefer(a.generation_id, b.generation_id, choice)
    Path(pairs[1][0].files[0]).unlink()  # deleted by hand outside the studio
    result = studio.export("pickapic", tmp_path / "pp")
    assert result.counts == {"train": 1} and result.skipped == {"media file deleted": 1}
    [record] = [json.loads(line) for line in (tmp_path / "pp" / "train.jsonl").read_text().splitlines()]
    assert record["caption"] == "fox 0" and record["label_0"] == 1.0
    assert (tmp_path / "pp" / record["jpg_0"]).read_bytes() == Path(pairs[0][0].files[0]).read_bytes()
    assert (tmp_path / "pp" / record["jpg_1"]).is_file()
    with pytest.raises(StudioError, match="nothing to export as sft"):
        studio.export("sft", tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_cli_history_prefer_and_export(capsys, tmp_path: Path) -> None:
    args = ["--models", str(write_models(tmp_path, MODELS)), "--data-dir", str(tmp_path / "d")]

    def cli(*extra: str) -> tuple[int, str, str]:
        code = main([*extra, *args])
        out, err = capsys.readouterr()
        return code, out, err

    ids = []
    for model in ("fake", "fake-2"):
        code, out, _ = cli("generate", "chat", "Which sea is saltiest?", "--model", model, "--json")
        ids.append(str(json.loads(out)["generation_id"]))
    assert cli("prefer", *ids)[1] == f"recorded: {ids[0]} preferred over {ids[1]}\n"
    assert cli("prefer", ids[0], ids[0], "--tie")[0] == 2
    code, out, _ = cli("history", "--search", "saltiest", "--json")
    assert code == 0 and [str(r["generation_id"]) for r in json.loads(out)] == ids[::-1]
    code, out, _ = cli("history", "--tab", "image")
    assert code == 0 and out == ""
    code, _, err = cli("export", "--format", "dpo", "--out", str(tmp_path / "x"))
    assert code == 2 and "nothing to export as dpo" in err and not (tmp_path / "x").exists()
    assert cli("rate", ids[0], "up")[0] == 0 and cli("rate", ids[1], "down")[0] == 0
    code, out, _ = cli(
        "export", "--format", "kto", "--out", str(tmp_path / "k"), "--since", "2020-01-01", "--json"
    )
    assert code == 0 and json.loads(out)["counts"] == {"train": 2}
    code, _, err = cli("export", "--format", "kto", "--out", str(tmp_path / "k"), "--since", "soon")
    assert code == 2 and "not a date" in err


def test_thumbs_in_the_tabs_keep_the_reason_until_the_vote_changes(studio: Studio) -> None:
    from studio.ui.feedback import cast_vote

    gid = say(studio, "explain this").generation_id
    assert studio.vote_detail(gid) == {"vote": None, "reasons": [], "comment": ""}
    cast_vote(studio, gid, "down", None)
    studio.rate(gid, "down", reason=["off-topic", "other"], comment="about cats")  # the panel's Save
    cast_vote(studio, gid, "down", None)  # a double click keeps the reason
    assert studio.vote_detail(gid) == {"vote": -1, "reasons": ["off-topic", "other"], "comment": "about cats"}
    cast_vote(studio, gid, "up", None)  # a new vote: the old reason explained the other one
    assert studio.vote_detail(gid) == {"vote": 1, "reasons": [], "comment": ""}
    studio.rate(gid, "up", reason="helpful", comment="ok-ish")
    cast_vote(studio, gid, None, None)  # undo removes the vote with its reason
    assert studio.vote_detail(gid)["vote"] is None
    with Session(studio.engine) as s:
        assert s.exec(select(storage.Rating)).all() == []
    other = say(studio, "not yours", user="someone-else").generation_id
    with pytest.raises(StudioError, match="does not exist"):
        studio.vote_detail(other)


def test_only_an_admin_exports_every_users_data(studio: Studio, tmp_path: Path) -> None:
    from studio.security.accounts import UserStore, add_user

    users = tmp_path / "users.json"
    add_user(users, "ann", "pw-ann-123456", admin=True)
    add_user(users, "bob", "pw-bob-123456")
    studio.accounts = UserStore(users)
    with pytest.raises(StudioError, match="only an admin"):
        studio.export("kto", tmp_path / "out", all_users=True, user="bob")
    assert not (tmp_path / "out").exists()
    with pytest.raises(StudioError, match="nothing to export"):  # allowed, and nothing is rated yet
        studio.export("kto", tmp_path / "out", all_users=True, user="ann")


def test_export_archive_leaves_only_the_zip(studio: Studio) -> None:
    import zipfile

    studio.rate(say(studio, "zip me").generation_id, "up")
    archive, summary = studio.export_archive("kto")
    try:
        with zipfile.ZipFile(archive) as z:
            assert {"train.jsonl", "README.md"} <= set(z.namelist())
        assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no folder left beside it
        assert "studio-kto.zip" in summary
    finally:
        shutil.rmtree(archive.parent)
