"""The Library tab and the A/B panel served for real (fake backends), called through their API endpoints:
compare, list and search, leaderboard, export as a downloadable zip; and what a re-run fills in."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from studio.service import Studio
from studio.ui.library import rerun_values
from tests.helpers.served import served_studio
from tests.test_library import MODELS


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, Client]]:
    with served_studio(tmp_path_factory.mktemp("served-library"), MODELS) as (studio, url):
        yield studio, Client(url, verbose=False)


def test_compare_vote_list_leaderboard_and_export(served) -> None:
    studio, client = served
    a, b, note = client.predict("Name a colour", "fake", "1", "fake-2", "2", True, api_name="/compare_chat")
    ids = [int(n) for n in re.findall(r"#(\d+)", note)]
    assert (
        a.startswith("echo: Name a colour")
        and b.startswith("echo:")
        and len(ids) == 2
        and note.startswith("Which is better?")
    )
    studio.prefer(ids[0], ids[1], "b")
    pic_a, pic_b, note = client.predict(
        "a fox", "painter", "3", "painter-2", "", True, api_name="/compare_image"
    )
    pic_ids = [int(n) for n in re.findall(r"#(\d+)", note)]
    with pytest.raises(AppError, match="a seed is a whole number"):
        client.predict("a fox", "painter", "x", "painter-2", "", True, api_name="/compare_image")
    assert Path(pic_a).suffix == ".png" and Path(pic_b).is_file() and len(pic_ids) == 2
    studio.prefer(*pic_ids, "a")
    table, count, page = client.predict("colour", "", "", "", "", 1, api_name="/library")
    assert [row[0] for row in table["data"]] == sorted(ids, reverse=True)  # newest first
    assert count.startswith("2 generation(s)") and page == 1
    board, _plot = client.predict("", api_name="/leaderboard")
    models = {row[board["headers"].index("model")]: row for row in board["data"]}
    assert set(models) == {"fake", "fake-2", "painter", "painter-2"}
    note, archive = client.predict("pickapic", "image", "", 0, False, api_name="/export")
    assert note.startswith("Exported pickapic: 1 train record(s)")
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        assert {"train.jsonl", "README.md"} <= names and len([n for n in names if n.endswith(".png")]) == 2
        record = json.loads(z.read("train.jsonl"))
        assert record["caption"] == "a fox" and record["label_0"] == 1.0 and record["jpg_0"] in names
    note, archive = client.predict("sft", "", "", 0, False, api_name="/export")
    assert note.startswith("nothing to export as sft") and archive is None


def test_rerun_fills_the_right_controls() -> None:
    chat = rerun_values(
        {"tab": "chat", "model": "m", "prompt": "hi", "params": {"temperature": 0.3, "system_prompt": "S"}}
    )
    assert chat == {
        "chat-temperature": 0.3,
        "model": "m",
        "message": "hi",
        "conversation": None,
        "system-prompt": "S",
        "chatbot": [],
    }
    code = rerun_values(
        {
            "tab": "code",
            "model": "m",
            "prompt": "filled template",
            "params": {"code": {"input": "x", "mode": "fix"}},
        }
    )
    assert code["code-input"] == "x" and code["code-mode"] == "fix" and code["code-model"] == "m"
    image = rerun_values(
        {"tab": "image", "model": "p", "prompt": "fox", "params": {"seed": 7, "negative_prompt": "blur"}}
    )
    assert image == {
        "image-model": "p",
        "image-prompt": "fox",
        "image-seed": 7,
        "image-negative": "blur",
        "image-num-images": 1,
    }
    assert rerun_values({"tab": "speech", "model": "v", "prompt": "say", "params": {"speed": 1.5}}) == {
        "speech-model": "v",
        "speech-prompt": "say",
        "speech-speed": 1.5,
        "audio-tabs": "speech",
    }
    music = {"duration": 12.0, "guidance": 3.0, "temperature": 0.9, "top_k": 50, "seed": 4, "melody": False}
    assert rerun_values({"tab": "music", "model": "m", "prompt": "jazz", "params": music}) == {
        "music-model": "m",
        "music-prompt": "jazz",
        "music-duration": 12.0,
        "music-guidance": 3.0,
        "music-temperature": 0.9,
        "music-top-k": 50,
        "music-seed": 4,
        "audio-tabs": "music",
    }


def test_rate_endpoint_takes_a_reason_and_a_comment(served) -> None:
    studio, client = served
    *_, final = studio.chat(model_id="fake", message="rate me with a reason")
    gid = final.generation_id
    args = (gid, "down", "inaccurate, unsafe", "made up a city")
    assert client.predict(*args, api_name="/rate") == "ok"
    assert studio.vote_detail(gid) == {
        "vote": -1,
        "reasons": ["inaccurate", "unsafe"],
        "comment": "made up a city",
    }
    with pytest.raises(AppError, match=r"unknown reason .boring. for a 👍 \(up\) vote; reasons: helpful,"):
        client.predict(gid, "up", "boring", "", api_name="/rate")
    assert studio.vote_detail(gid)["vote"] == -1  # the refused call changed nothing
    assert client.predict(gid, "up", api_name="/rate") == "ok"  # reason and comment are optional
    assert studio.vote_detail(gid) == {"vote": 1, "reasons": [], "comment": ""}
    assert client.predict(gid, "", "", "", api_name="/rate") == "ok"
    assert studio.vote_detail(gid)["vote"] is None


def test_every_tab_has_the_feedback_panel(make_studio) -> None:
    from studio.ui import build_app
    from tests.test_audio import MODELS as AUDIO_MODELS

    studio = make_studio(MODELS + AUDIO_MODELS.removeprefix("\nmodels:\n"))
    ids = {c.get("props", {}).get("elem_id") for c in build_app(studio).config["components"]}
    for tab in ("chat", "code", "image", "speech", "music"):
        assert {f"{tab}-feedback", f"{tab}-feedback-reasons", f"{tab}-feedback-save"} <= ids, tab
