"""The A/B panel, the leaderboard plot and the Speech controls as the built app defines them (no browser):
model B starts on a model that is ready, the verdict buttons start disabled, the leaderboard draws one
interval per model and one plot per tab (also through the served `/leaderboard` endpoint), and the voice
preset shows only for Bark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gradio_client import Client

from studio.service import Studio
from tests.helpers.served import served_studio


def components(studio: Studio) -> dict[str, dict[str, Any]]:
    """elem id -> props of every component of the built app."""
    from studio.ui import build_app

    config = build_app(studio).config
    return {
        c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("props", {}).get("elem_id")
    }


def test_model_b_starts_on_a_ready_model_and_the_verdicts_start_disabled(make_studio, tmp_path: Path) -> None:
    here = tmp_path / "weights"
    here.mkdir()  # a local source that exists: "ready"; fake/missing is a Hub id not in the cache
    studio = make_studio(
        "models:\n"
        f"  - {{id: first, tabs: [chat], backend: fake-chat, source: {here}}}\n"
        "  - {id: absent, tabs: [chat], backend: fake-chat, source: fake/missing}\n"
        f"  - {{id: second, tabs: [chat], backend: fake-chat, source: {here}}}\n"
    )
    assert {m.id: m.status for m in studio.models("chat")}["absent"] == "not downloaded"
    props = components(studio)
    assert props["chat-compare-model-a"]["value"] == "first"
    assert props["chat-compare-model-b"]["value"] == "second"
    for verdict in ("a", "b", "tie", "both_bad"):
        assert props[f"chat-compare-vote-{verdict}"]["interactive"] is False, verdict


def test_model_b_is_model_a_when_no_other_model_is_ready(make_studio, tmp_path: Path) -> None:
    studio = make_studio(
        "models:\n"
        f"  - {{id: only, tabs: [chat], backend: fake-chat, source: {tmp_path}}}\n"
        "  - {id: absent, tabs: [chat], backend: fake-chat, source: fake/missing}\n"
    )
    assert components(studio)["chat-compare-model-b"]["value"] == "only"  # two seeds of one model


def test_the_plot_draws_one_interval_per_model_and_one_plot_per_tab() -> None:
    from studio.ui.leaderboard import leaderboard_view

    rows = [
        {
            "tab": "chat",
            "model": "m",
            "rank": 1,
            "bt": 1016.0,
            "ci_low": 990.0,
            "ci_high": 1040.0,
            "elo": 1016.0,
        },
        {
            "tab": "chat",
            "model": "n",
            "rank": 1,
            "bt": 984.0,
            "ci_low": 960.0,
            "ci_high": 1010.0,
            "elo": 984.0,
        },
        {
            "tab": "code",
            "model": "m",
            "rank": 1,
            "bt": 1000.0,
            "ci_low": 980.0,
            "ci_high": 1020.0,
            "elo": 1000.0,
        },
        {
            "tab": "code",
            "model": "t",
            "rank": None,
            "bt": None,
            "ci_low": None,
            "ci_high": None,
            "elo": 1000.0,
        },
    ]
    frame, html = leaderboard_view(rows)
    assert list(frame["model"]) == ["m", "n", "m", "t"]  # the table keeps every row and column
    assert list(frame.columns[:6]) == ["tab", "rank", "model", "bt", "ci_low", "ci_high"]
    assert html.count("<svg") == 2 and 'data-tab="chat"' in html and 'data-tab="code"' in html
    assert html.count('class="ci"') == 3 and html.count('class="bt"') == 3  # thumbs-only models: no bar
    chat = html[: html.index('data-tab="code"')]
    xs = [float(v) for v in re.findall(r'class="ci" x1="([\d.]+)" x2="([\d.]+)"', chat)[0]]
    dot = float(re.findall(r'class="bt" cx="([\d.]+)"', chat)[0])
    assert xs[0] < dot < xs[1]  # the rating sits inside its interval
    assert "No votes yet" in leaderboard_view([])[1]


def test_the_leaderboard_endpoint_ranks_each_tab_with_intervals(tmp_path: Path) -> None:
    models = (
        "models:\n"
        "  - {id: fake, tabs: [chat, code], backend: fake-chat, source: fake/a}\n"
        "  - {id: fake-2, tabs: [chat, code], backend: fake-chat, source: fake/b}\n"
    )
    with served_studio(tmp_path, models) as (studio, url):
        for tab, winner in (("chat", "a"), ("code", "b")):
            a, b = studio.compare(tab=tab, prompt="p", a={"model": "fake"}, b={"model": "fake-2"})
            studio.prefer(a.generation_id, b.generation_id, winner)
        board, html = Client(url, verbose=False).predict("", api_name="/leaderboard")
    assert len(board["data"]) == 4
    rows = [dict(zip(board["headers"], row, strict=True)) for row in board["data"]]
    best = {
        r["tab"]: r["model"] for r in rows if r["bt"] == max(x["bt"] for x in rows if x["tab"] == r["tab"])
    }
    assert best == {"chat": "fake", "code": "fake-2"}
    assert all(r["ci_low"] <= r["bt"] <= r["ci_high"] and r["rank"] == 1 for r in rows)  # one vote: overlap
    assert html.count("<svg") == 2


def test_the_voice_preset_shows_only_for_bark(make_studio) -> None:
    wheel = "pip:hibari-tts==0.2.1#hibari/assets/hibari.onnx"
    hibari = f"  - {{id: voice, tabs: [speech], backend: hibari-tts, source: '{wheel}'}}\n"
    bark = "  - {id: bark, tabs: [speech], backend: transformers-tts, source: suno/bark-small}\n"
    props = components(make_studio("models:\n" + hibari + bark))
    assert props["speech-speed"]["visible"] is True and props["speech-voice"]["visible"] is False
    assert components(make_studio("models:\n" + bark))["speech-voice"]["visible"] is True


def test_the_speech_endpoint_still_returns_the_waveform_picture(tmp_path: Path) -> None:
    """The picture is not shown (the player draws the waveform) but API callers still get its path."""
    import tests.test_audio  # noqa: F401 - registers the fake speech backend

    models = "models:\n  - {id: voice, tabs: [speech], backend: fake-speech, source: fake/voice}\n"
    with served_studio(tmp_path, models) as (studio, url):
        clip, picture, info, _clips, notice = Client(url, verbose=False).predict(
            "two words", "voice", 1.0, "", 3, api_name="/speech"
        )
        [clip_row] = studio.recent_clips("speech")
    assert Path(clip).suffix == ".wav" and Path(picture).suffix == ".png" and "seed 3" in notice
    assert Path(picture).read_bytes() == clip_row.picture.read_bytes() and "👍" not in info
