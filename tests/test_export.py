"""Export as pure functions and files: TRL's column names per format, which rows count, conversational vs
standard, pairs and their conflicts, odd text, deleted media, the split, Parquet and the empty case."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from studio import export
from studio.errors import StudioError
from studio.export import files as export_files

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(gid: int, rating: int, *, prompt: str = "Q", text: str = "", **extra) -> dict:
    """One rated generation as storage.rated_rows returns it."""
    base = {
        "id": gid,
        "user_id": 1,
        "tab": "chat",
        "model_id": "m1",
        "prompt": prompt,
        "output_text": text or f"answer {gid}",
        "history": [],
        "files": [],
        "system_prompt": None,
        "conversation_id": gid,
        "turn_index": 0,
        "status": "ok",
        "created_at": T0 + timedelta(minutes=gid),
        "rating": rating,
        "reason": None,
    }
    return base | extra


def pref(pid: int, a: dict, b: dict, choice: str) -> dict:
    return {"id": pid, "user_id": 1, "tab": a["tab"], "choice": choice, "a": a, "b": b}


def test_kto_is_standard_without_history_and_skips_failed_runs() -> None:
    rows = [row(1, 1), row(2, -1), row(3, 1, status="error"), row(4, 1, status="stopped")]
    data = export.kto(rows)
    assert data.records == [
        {"prompt": "Q", "completion": "answer 1", "label": True},
        {"prompt": "Q", "completion": "answer 2", "label": False},
    ]
    assert not data.conversational and data.models == {"m1"} and data.first == T0 + timedelta(minutes=1)


def test_one_history_or_system_prompt_makes_the_whole_dataset_conversational() -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows = [row(1, 1), row(2, -1, history=history, system_prompt="Be brief.", turn_index=1)]
    data = export.kto(rows)
    assert data.conversational
    assert data.records[0]["prompt"] == [{"role": "user", "content": "Q"}]
    assert data.records[1]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "Q"},
    ]
    assert data.records[1]["completion"] == [{"role": "assistant", "content": "answer 2"}]


def test_sft_keeps_liked_turns_without_disliked_history_and_no_prefixes() -> None:
    turn0 = row(1, 1, prompt="a", text="A", conversation_id=7)
    turn1 = row(
        2,
        1,
        prompt="b",
        text="B",
        conversation_id=7,
        turn_index=1,
        history=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "A"}],
    )
    bad = row(3, -1, prompt="c", text="C", conversation_id=8)
    after_bad = row(
        4,
        1,
        prompt="d",
        text="D",
        conversation_id=8,
        turn_index=1,
        history=[{"role": "user", "content": "c"}, {"role": "assistant", "content": "C"}],
    )
    data = export.sft([turn0, turn1, bad, after_bad])
    assert data.records == [
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "A"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "B"},
            ]
        }
    ]
    assert data.skipped == {"already inside a longer liked conversation": 1}


def test_dpo_from_ab_votes_and_thumbs_with_ab_winning_conflicts() -> None:
    a, b = row(1, 1, text="good"), row(2, -1, text="bad")
    c = row(3, -1, text="worse")
    # Thumbs alone: good beats bad and worse.
    assert [(r["chosen"], r["rejected"]) for r in export.dpo([a, b, c], []).records] == [
        ("good", "bad"),
        ("good", "worse"),
    ]
    # An A/B vote on (good, bad) says bad won: it replaces the thumbs pair; ties and both-bad make no pair.
    votes = [pref(1, a, b, "b"), pref(2, b, c, "tie"), pref(3, a, c, "both_bad")]
    records = export.dpo([a, b, c], votes).records
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in records] == [("Q", "bad", "good")]


def test_pairs_need_the_same_request_and_different_answers() -> None:
    rows = [row(1, 1, prompt="x"), row(2, -1, prompt="y"), row(3, 1, text="same"), row(4, -1, text="same")]
    assert export.dpo(rows, []).records == []
    assert export.dpo([row(1, 1)], [pref(1, row(5, 0, text="t"), row(6, 0, text="t"), "a")]).records == []


def test_reward_is_conversational_with_an_implicit_prompt() -> None:
    data = export.reward([row(1, 1, text="good"), row(2, -1, text="bad")], [])
    assert data.records == [
        {
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
        }
    ]


def media(gid: int, rating: int, tab: str = "image", suffix: str = ".png", **extra) -> dict:
    return row(gid, rating, tab=tab, text=" ", files=[f"media/{tab}/{gid}{suffix}"], **extra)


def test_pickapic_layout_labels_and_deleted_files() -> None:
    a, b, c = media(1, 0, model_id="m1"), media(2, 0, model_id="m2"), media(3, 0)
    votes = [pref(1, a, b, "b"), pref(2, a, c, "tie"), pref(3, b, c, "both_bad")]
    data = export.pickapic([], votes, exists=lambda path: True)
    assert data.records[0] == {
        "caption": "Q",
        "jpg_0": "files/1.png",
        "jpg_1": "files/2.png",
        "label_0": 0.0,
        "label_1": 1.0,
        "model_0": "m1",
        "model_1": "m2",
    }
    assert [r["label_0"] for r in data.records] == [0.0, 0.5]
    assert data.media == {
        "files/1.png": "media/image/1.png",
        "files/2.png": "media/image/2.png",
        "files/3.png": "media/image/3.png",
    }
    gone = export.pickapic([], votes, exists=lambda path: not path.endswith("2.png"))
    assert len(gone.records) == 1 and gone.skipped == {"media file deleted": 1}
    with pytest.raises(StudioError, match="several tabs"):
        export.pickapic(
            [],
            [*votes, pref(4, media(5, 0, "speech", ".wav"), media(6, 0, "speech", ".wav"), "a")],
            exists=lambda path: True,
        )


def test_odd_text_survives_jsonl_and_parquet(tmp_path: Path) -> None:
    odd = "zero\x00byte \u202etxet ʇxǝʇ 🧪 \ud800 " + "long " * 40_000
    data = export.kto([row(1, 1, prompt=odd, text=odd), row(2, -1, prompt="é\r\n\t", text="ok")])
    export_files.write(data, tmp_path / "j")
    lines = (tmp_path / "j" / "train.jsonl").read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert (
        len(lines) == 2
        and first["prompt"].startswith("zero\x00byte \u202etxet")
        and "\ufffd" in first["prompt"]
    )
    assert json.loads(lines[1])["prompt"] == "é\r\n\t"
    pq = pytest.importorskip("pyarrow.parquet")
    export_files.write(data, tmp_path / "p", parquet=True)
    table = pq.read_table(tmp_path / "p" / "train.parquet")
    assert table.column_names == ["prompt", "completion", "label"] and table.num_rows == 2
    assert table.column("label").to_pylist() == [True, False]


def test_nothing_to_export_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match=r"nothing to export as dpo.*needs A/B votes"):
        export_files.write(export.dpo([row(1, 1)], []), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(StudioError, match="unknown export format 'csv'"):
        export.build("csv", [], [])


def test_split_is_deterministic_and_card_maps_the_splits(tmp_path: Path) -> None:
    rows = [row(i, 1 if i % 2 else -1) for i in range(1, 201)]
    flags = export.split([f"g{i}" for i in range(1, 201)], 0.25)
    assert flags == export.split([f"g{i}" for i in range(1, 201)], 0.25)
    assert 25 <= sum(flags) <= 75  # about a quarter
    # Adding records does not move the old ones between splits.
    assert export.split([f"g{i}" for i in range(1, 301)], 0.25)[:200] == flags
    data = export.kto(rows)
    tests = sum(export.split(data.keys, 0.25))
    result = export_files.write(data, tmp_path / "s", test_fraction=0.25)
    assert result.counts == {"train": 200 - tests, "test": tests}
    assert len((tmp_path / "s" / "test.jsonl").read_bytes().splitlines()) == tests
    card = (tmp_path / "s" / "README.md").read_text()
    assert "path: train.jsonl" in card and "path: test.jsonl" in card and "`kto`" in card and "m1" in card
    assert "2026-11-01" in card
    with pytest.raises(StudioError, match="fraction"):
        export.split(["a"], 1.5)
