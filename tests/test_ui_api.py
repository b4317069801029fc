"""The Gradio app served for real (fake backend): API endpoints and server-side validation for API callers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.sampling import SAMPLING
from tests.helpers.served import served_studio


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    with served_studio(tmp_path_factory.mktemp("served"), FAKE_MODELS) as (studio, url):
        yield studio, url


@pytest.fixture(scope="module")
def client(served) -> Client:
    return Client(served[1], verbose=False)


def count(studio: Studio) -> int:
    with Session(studio.engine) as s:
        return len(s.exec(select(storage.Generation)).all())


def test_chat_endpoint_streams_and_stores(served, client: Client) -> None:
    studio, _ = served
    before = count(studio)
    chatbot, conversation, textbox, _notice = client.predict(
        "hello api", None, "fake", "", *SAMPLING, api_name="/chat"
    )
    assert count(studio) == before + 1
    conv_id = conversation["value"]
    messages = chatbot["value"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "echo: hello api" in messages[1]["content"][0]["text"] and textbox == ""
    # A second call continues the same conversation; regenerate and continue work over the API too.
    client.predict("again", conv_id, "fake", "", *SAMPLING, api_name="/chat")
    client.predict(conv_id, "fake", "", *SAMPLING, api_name="/regenerate")
    client.predict(conv_id, "fake", "", *SAMPLING, api_name="/continue")
    turns = studio.conversation(conv_id)
    assert [t.prompt for t in turns] == ["hello api", "again"] and count(studio) == before + 4
    assert client.predict(turns[-1].generation_id, "up", api_name="/rate") == "ok"
    assert studio.conversation(conv_id)[-1].rating == 1


@pytest.mark.parametrize(
    ("message", "sampling", "expected"),
    [
        ("   ", SAMPLING, "message is empty"),
        ("hi", [False, 0.7, 0.9, 50, 1.0, 16, 1, -5], "seed=-5"),
        ("hi", [False, 0.7, 0.9, 50, 1.0, 16, 1, 2**33], "seed=8589934592"),
    ],
)
def test_api_callers_get_clear_errors_and_no_row(
    served, client: Client, message: str, sampling: list, expected: str
) -> None:
    studio, _ = served
    before = count(studio)
    with pytest.raises(Exception, match=expected):
        client.predict(message, None, "fake", "", *sampling, api_name="/chat")
    assert count(studio) == before


def test_raw_http_nan_is_refused_on_the_server(served) -> None:
    """A hand-written request can carry NaN (the browser and gradio_client cannot)."""
    studio, url = served
    before = count(studio)
    body = '{"data": ["hi", null, "fake", "", false, NaN, 0.9, 50, 1.0, 16, 1, null]}'
    with httpx.Client(base_url=url, timeout=30) as http:
        event = http.post("gradio_api/call/chat", content=body, headers={"content-type": "application/json"})
        assert event.status_code == 200, event.text
        stream = http.get(f"gradio_api/call/chat/{event.json()['event_id']}").text
    assert "event: error" in stream and "complete" not in stream.split("event: error")[0]
    assert count(studio) == before


def test_rate_endpoint_validates(served, client: Client) -> None:
    with pytest.raises(Exception, match="does not exist"):
        client.predict(999999, "up", api_name="/rate")
    with pytest.raises(Exception, match="'up', 'down'"):
        client.predict(1, "sideways", api_name="/rate")


def test_the_data_dir_is_not_served(served) -> None:
    studio, url = served
    db = studio.settings.data_dir / "studio.db"
    assert db.exists()
    with httpx.Client(base_url=url, timeout=10) as http:
        for route in (f"gradio_api/file={db}", f"file={db}", f"gradio_api/file={studio.config.path}"):
            assert http.get(route).status_code in (403, 404), route


def test_a_failed_generation_is_stored_and_reported_in_the_notice(served, client: Client) -> None:
    """Validation errors raise (nothing stored); a generation that fails is stored and reported inline."""
    studio, _ = served
    before = count(studio)
    chatbot, conversation, textbox, notice = client.predict(
        "please FAIL", None, "fake", "", *SAMPLING, api_name="/chat"
    )
    assert count(studio) == before + 1
    assert notice == "Error: the fake model failed on purpose"
    assert textbox == {"__type__": "update"}, "the message box is left as it is (not cleared)"
    assert "**Error:** the fake model failed on purpose" in chatbot["value"][-1]["content"][0]["text"]
    assert studio.conversation(conversation["value"])[-1].status == "error"


CODE_SETTINGS = ["write", "python", "javascript", "", ""]  # mode, language, source language, error, template


def test_code_endpoint_runs_a_code_turn(served, client: Client) -> None:
    studio, _ = served
    before = count(studio)
    outputs = client.predict(
        "a function that adds", None, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code"
    )
    chatbot, conversation, _text, _notice, _code, _check, _explanation, _download, mode, _template = outputs
    assert count(studio) == before + 1
    turns = studio.conversation(conversation["value"])
    assert turns[-1].params["code"] == {
        "mode": "write",
        "language": "python",
        "source_language": None,
        "error": "",
        "template": None,
        "input": "a function that adds",
    }
    assert chatbot["value"][0]["content"][0]["text"] == "a function that adds", "shown as typed"
    assert mode == "follow-up"


@pytest.mark.parametrize(
    ("text", "settings", "expected"),
    [
        ("  ", CODE_SETTINGS, "empty"),
        ("x", ["write", "cobol", "javascript", "", ""], "cobol"),
        ("x", ["write", "python", "javascript", "", "Do {what}: {input}"], "what"),
    ],
)
def test_code_endpoint_refuses_bad_input(
    served, client: Client, text: str, settings: list, expected: str
) -> None:
    studio, _ = served
    before = count(studio)
    with pytest.raises(Exception, match=expected):
        client.predict(text, None, "fake", *settings, *SAMPLING, api_name="/code")
    assert count(studio) == before


def test_code_delete_clears_the_session_and_its_panes(served, client: Client) -> None:
    studio, _ = served
    outputs = client.predict("to delete", None, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code")
    conv = outputs[1]["value"]
    conversation, chatbot, code, check, explanation, download, notice = client.predict(
        conv, api_name="/code_delete"
    )
    assert conversation["value"] is None and chatbot["value"] == []
    assert (code, check, explanation, notice) == ("", "", "", "") and download["visible"] is False
    assert conv not in [cid for cid, _ in studio.conversations(tab="code")]


def test_the_api_lists_only_named_endpoints(make_studio) -> None:
    """Helper events (run keys, paging, Stop) stay private: no `/lambda_N` endpoint is published."""
    from studio.ui import build_app

    app = build_app(make_studio())
    public = [fn.api_name for fn in app.fns.values() if fn.api_visibility == "public"]
    assert public and not [name for name in public if str(name).startswith("lambda")], public


def test_browse_answer_endpoint_makes_a_kept_answer_active(served, client: Client) -> None:
    studio, _ = served
    _chatbot, conversation, _text, _notice = client.predict(
        "browse over the api", None, "fake", "", *SAMPLING, api_name="/chat"
    )
    conv_id = conversation["value"]
    first = studio.conversation(conv_id)[0].generation_id
    client.predict(conv_id, "fake", "", *SAMPLING, api_name="/regenerate")
    second = studio.conversation(conv_id)[0].generation_id
    shown = client.predict(conv_id, 0, -1, api_name="/browse_answer")
    assert shown == [{"generation_id": first, "answer": 1, "answers": 2}]
    assert [t.generation_id for t in studio.conversation(conv_id)] == [first]
    assert client.predict(conv_id, 0, 1, api_name="/browse_answer")[0]["generation_id"] == second
    for args, expected in [((conv_id, 5, 1), "turn 5 does not exist"), ((conv_id, 0, 0.5), "whole numbers")]:
        with pytest.raises(Exception, match=expected):
            client.predict(*args, api_name="/browse_answer")
    assert [t.generation_id for t in studio.conversation(conv_id)] == [second]
