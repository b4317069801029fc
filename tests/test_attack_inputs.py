"""Attacks (issue 15, items 6, 7 and 9) on the served app and the service: oversized input, wrong types and
bad parameters. Before: a refused 10 MB value came back in a 10 MB error and went into the log; lists and
bools were stored as "['x']" and 1.0; a bad hibari voice or speed, an id of 1.5 or 1e308 and a lone
surrogate became error rows or raw driver errors. Now all are refused before a row, with short messages.

The hypothesis test enumerates the app's events (named or not), so an endpoint added later is covered."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio, StudioError
from studio.ui import build_app
from studio.ui.entry import MAX_FIELD_CHARS, check_inputs
from tests.conftest import FAKE_MODELS
from tests.helpers.sampling import BEST_OF_OFF, SAMPLING, sampling
from tests.helpers.served import served_studio, studio_at
from tests.test_audio import MODELS as AUDIO_MODELS

MODELS = (
    FAKE_MODELS
    + "  - id: painter\n    tabs: [image]\n    backend: fake-image\n    source: fake/p\n"
    + AUDIO_MODELS.split("models:\n", 1)[1]
    + "  - id: hibari-heart\n    tabs: [speech]\n    backend: hibari-tts\n"
    + "    source: pip:hibari-tts==0.2.1#hibari/assets/hibari.onnx\n"
)


def rows(studio: Studio) -> int:
    with Session(studio.engine) as session:
        return len(session.exec(select(storage.Generation)).all())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    with served_studio(tmp_path_factory.mktemp("attack"), MODELS) as pair:
        yield pair


def raw_call(url: str, api_name: str, data: list[Any]) -> tuple[str, str]:
    """One call by hand over HTTP (any JSON, as an attacker sends it): (outcome event, whole stream)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        body = json.dumps({"data": data})
        event = http.post(
            f"gradio_api/call/{api_name}", content=body, headers={"content-type": "application/json"}
        )
        assert event.status_code == 200, event.text[:300]
        stream = http.get(f"gradio_api/call/{api_name}/{event.json()['event_id']}").text
    outcome = "error" if "event: error" in stream else "complete" if "event: complete" in stream else "?"
    return outcome, stream


# -- item 6: oversized input ----------------------------------------------------------------------------
def test_a_10mb_value_to_rate_gets_a_short_answer_and_one_short_log_line(
    served, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    huge = "x" * 10_000_000
    calls = ([huge, "up", "", ""], [1, huge, "", ""], [1, "up", huge, ""], [1, "up", "", huge], [huge])
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        for data in calls:
            outcome, stream = raw_call(url, "rate", data)
            assert outcome == "error" and len(stream) < 2_000, stream[:300]
            assert "10,000,000 characters long; the limit is 200,000" in stream
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert len(server_lines) == len(calls), server_lines  # one line per refused call
    assert all(len(line) < 300 for line in server_lines), server_lines
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err and len(printed.out) + len(printed.err) < 5_000


def test_a_long_value_is_quoted_at_most_200_characters(fake_studio: Studio) -> None:
    with pytest.raises(StudioError) as caught:
        fake_studio.rate(1, "y" * 5_000)
    assert len(str(caught.value)) < 400 and "5000 characters" in str(caught.value)
    with pytest.raises(StudioError) as caught:
        list(fake_studio.chat(model_id="fake", message="hi", params={"system_prompt": "z" * 9_000}))
    assert len(str(caught.value)) < 600
    for call in (
        lambda: list(fake_studio.chat(model_id="m" * 150_000, message="hi")),
        lambda: fake_studio.export_archive("f" * 150_000),
        lambda: fake_studio.library(rating="r" * 150_000),
    ):
        with pytest.raises(StudioError) as caught:
            call()
        assert len(str(caught.value)) < 600, str(caught.value)[:300]


# -- item 7: wrong types ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([["x"], None, "fake", "", *SAMPLING], "must be text, not a list"),
        ([{"a": 1}, None, "fake", "", *SAMPLING], "must be text, not an object"),
        ([5, None, "fake", "", *SAMPLING], "must be text, not a number"),
        (["hi", None, "fake", "", *sampling(temperature=True), *BEST_OF_OFF], "'Temperature' must be a"),
        (["hi", None, "fake", "", *sampling(do_sample="yes"), *BEST_OF_OFF], "must be true or false"),
        (["hi", None, ["fake"], "", *SAMPLING], "'Model' must be one of its choices, not a list"),
    ],
)
def test_wrong_types_to_chat_are_refused_and_store_nothing(served, data: list, expected: str) -> None:
    studio, url = served
    before = rows(studio)
    outcome, stream = raw_call(url, "chat", data)
    assert outcome == "error" and expected in stream, stream[:400]
    assert rows(studio) == before


def test_the_service_refuses_true_as_a_slider_value(fake_studio: Studio) -> None:
    with pytest.raises(StudioError, match="temperature=True"):
        list(fake_studio.chat(model_id="fake", message="hi", params={"temperature": True}))
    with pytest.raises(StudioError, match="must be text"):
        list(fake_studio.chat(model_id="fake", message=["x"]))  # type: ignore[arg-type]
    assert rows(fake_studio) == 0


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """Every event of the app built over fake backends of every tab, named or not."""
    studio = studio_at(tmp_path_factory.mktemp("events"), MODELS)
    app = build_app(studio)
    found = [fn for fn in app.fns.values() if any(type(c).__name__ != "State" for c in fn.inputs)]
    yield found
    studio.close()


def test_every_public_endpoint_is_enumerated(events: list[Any]) -> None:
    names = {fn.api_name for fn in events}
    for name in ("chat", "rate", "browse_answer", "image", "speech", "music", "code", "export", "library"):
        assert name in names, name


WRONG = {
    "Textbox": st.one_of(
        st.lists(st.text(max_size=3), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.integers(),
        st.floats(),
        st.booleans(),
    ),
    "Slider": st.one_of(
        st.booleans(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.floats(allow_nan=True).filter(lambda f: f != f or f in (float("inf"), float("-inf"))),
    ),
    "Number": st.one_of(
        st.booleans(), st.text(max_size=5), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
    ),
    "Checkbox": st.one_of(st.integers(), st.text(max_size=5), st.lists(st.booleans(), max_size=2)),
    "Dropdown": st.one_of(
        st.booleans(),
        st.lists(st.lists(st.text(max_size=2), max_size=1), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
    "Radio": st.one_of(st.booleans(), st.lists(st.text(max_size=2), max_size=2)),
    "CheckboxGroup": st.one_of(
        st.text(min_size=1, max_size=5),
        st.integers(),
        st.lists(
            st.one_of(st.booleans(), st.dictionaries(st.text(max_size=1), st.integers(), max_size=1)),
            min_size=1,
            max_size=2,
        ),
    ),
}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_parameter_of_every_event_refuses_a_wrong_type(events: list[Any], data: st.DataObject) -> None:
    fn = data.draw(st.sampled_from(events))
    places = [i for i, c in enumerate(fn.inputs) if type(c).__name__ in WRONG or type(c).__name__ == "Api"]
    if not places:
        return
    place = data.draw(st.sampled_from(places))
    component = fn.inputs[place]
    kind = type(component).__name__
    if kind == "Api":
        wanted = component.api_info().get("type")
        kind = {"string": "Textbox", "number": "Number"}.get(wanted, "")
        if not kind:
            return
    if kind == "Dropdown" and getattr(component, "multiselect", False):
        return
    values: list[Any] = [None] * len(fn.inputs)  # empty fields are each handler's to answer
    values[place] = data.draw(WRONG[kind])
    with pytest.raises(ValueError, match=r"must be|characters long|items"):
        check_inputs(fn.inputs, values)


def test_every_event_refuses_an_oversized_or_unstorable_text(events: list[Any]) -> None:
    for fn in events:
        for place, component in enumerate(fn.inputs):
            if type(component).__name__ not in ("Textbox", "Api"):
                continue
            if type(component).__name__ == "Api" and component.api_info().get("type") != "string":
                continue
            for bad, expected in (("x" * (MAX_FIELD_CHARS + 1), "characters long"), ("a\ud800", "surrogate")):
                values: list[Any] = [None] * len(fn.inputs)
                values[place] = bad
                with pytest.raises(ValueError, match=expected):
                    check_inputs(fn.inputs, values)


# -- item 9: refused before a row ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("generation_id", "expected"),
    [
        (1.5, "whole number, not 1.5"),
        (1e308, "out of range"),
        (True, "must be a number, not true/false"),
        (0, "out of range"),
    ],
)
def test_rate_ids_that_are_not_whole_numbers_are_refused(
    served, generation_id: Any, expected: str, capfd: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    capfd.readouterr()
    outcome, stream = raw_call(url, "rate", [generation_id, "up", "", ""])
    assert outcome == "error" and expected in stream, stream[:400]
    assert "Traceback" not in capfd.readouterr().err, "a refusal prints no traceback"


def test_a_lone_surrogate_gets_the_studios_message(served, fake_studio: Studio) -> None:
    studio, url = served
    before = rows(studio)
    outcome, stream = raw_call(url, "chat", ["a\ud800b", None, "fake", "", *SAMPLING])
    assert outcome == "error" and "lone surrogate character (U+D800)" in stream, stream[:400]
    assert rows(studio) == before
    with pytest.raises(StudioError, match="lone surrogate"):
        list(fake_studio.chat(model_id="fake", message="a\ud800b"))
    assert rows(fake_studio) == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"voice": "emma"}, "has one voice, 'heart', not 'emma'"),
        ({"speed": 3.0}, "speed=3.0"),
        ({"speed": 0.3}, "speed=0.3"),
    ],
)
def test_hibari_refuses_a_voice_or_speed_before_a_row(served, params: dict, expected: str) -> None:
    studio, _ = served
    before = rows(studio)
    with pytest.raises(StudioError, match=expected):
        list(studio.speech(model_id="hibari-heart", text="hello", params=params))
    assert rows(studio) == before


def test_hibari_voice_from_the_cli_is_refused(
    served, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from studio import cli

    studio, _ = served
    monkeypatch.setenv("STUDIO_DATA_DIR", str(studio.settings.data_dir))
    monkeypatch.setenv("STUDIO_MODELS", str(studio.config.path))
    before = rows(studio)
    code = cli.main(["generate", "speech", "--model", "hibari-heart", "--param", "voice=emma", "hello"])
    assert code != 0 and "has one voice" in capsys.readouterr().err
    assert rows(studio) == before


@pytest.mark.tiny
def test_max_new_tokens_beyond_the_context_is_refused_before_a_row(tiny_studio: Studio) -> None:
    with pytest.raises(StudioError, match="does not fit the model's context of"):
        list(tiny_studio.chat(model_id="tiny", message="hi", params={"max_new_tokens": 4096}))
    assert rows(tiny_studio) == 0
