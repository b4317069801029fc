"""Every public Gradio endpoint has a test of its owner's path and a test of bad input (issue 21, item 3).

`ENDPOINT_TESTS` maps each `api_name` to the test that calls it as its owner and succeeds, and the test that
sends it bad input and gets a clear error with nothing stored. The first test here fails when the app
publishes an endpoint the table does not name, or names one the app no longer has; and checks that every
listed test exists and calls its endpoint by name (`"/<api_name>"` in its source). The owner paths and
refusals that had no test elsewhere are below, on one app served for real over fake backends.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from sqlmodel import Session, select

from studio import storage
from studio.service import Studio
from studio.ui.safety import CATEGORIES as SAFETY_CATEGORIES
from studio.ui.safety import TABS as SAFETY_TABS
from tests import test_audio  # noqa: F401  (registers the fake speech and music kinds)
from tests.conftest import FAKE_MODELS
from tests.helpers.sampling import SAMPLING
from tests.helpers.served import served_studio

MORE_MODELS = "".join(
    f"  - {{id: {mid}, tabs: [{tab}], backend: fake-{kind}, source: fake/{mid}}}\n"
    for mid, tab, kind in (
        ("painter", "image", "image"),
        ("voice", "speech", "speech"),
        ("band", "music", "music"),
        ("band-2", "music", "music"),
    )
)
CODE_SETTINGS = ["write", "python", "javascript", "", ""]  # mode, language, source language, error, template
NO_INPUT = None  # an endpoint that takes no input has no bad input to send

# api_name -> (owner-success test, bad-input test), as "file.py::test_name".
UI, HERE, TRAIN = "test_ui_api.py::", "test_endpoints.py::", "test_train_tab.py::"
BAD = f"{HERE}test_bad_input_is_refused_and_stores_nothing"
CHAT = f"{UI}test_chat_endpoint_streams_and_stores"
LIBRARY = "test_library_ui.py::test_compare_vote_list_leaderboard_and_export"
MODELS = "test_models_panel.py::test_models_tab_lists_loads_and_unloads"
IMAGE = "test_image_tab.py::test_image_endpoint_over_http"
BROWSE = f"{UI}test_browse_answer_endpoint_makes_a_kept_answer_active"
ENDPOINT_TESTS: dict[str, tuple[str, str | None]] = {
    "chat": (CHAT, f"{UI}test_api_callers_get_clear_errors_and_no_row"),
    "regenerate": (CHAT, BAD),
    "continue": (CHAT, BAD),
    "rate": (CHAT, f"{UI}test_rate_endpoint_validates"),
    "browse_answer": (BROWSE, BROWSE),
    "rename_conversation": (f"{HERE}test_rename_and_delete_a_conversation", BAD),
    "delete_conversation": (f"{HERE}test_rename_and_delete_a_conversation", BAD),
    "code": (f"{UI}test_code_endpoint_runs_a_code_turn", f"{UI}test_code_endpoint_refuses_bad_input"),
    "code_regenerate": (f"{HERE}test_code_regenerate_and_continue", BAD),
    "code_continue": (f"{HERE}test_code_regenerate_and_continue", BAD),
    "code_delete": (f"{UI}test_code_delete_clears_the_session_and_its_panes", BAD),
    "compare_chat": (LIBRARY, BAD),
    "compare_code": (f"{HERE}test_compare_code_speech_and_music", BAD),
    "compare_image": (LIBRARY, LIBRARY),
    "compare_speech": (f"{HERE}test_compare_code_speech_and_music", BAD),
    "compare_music": (f"{HERE}test_compare_code_speech_and_music", BAD),
    "image": (IMAGE, IMAGE),
    "speech": (f"{HERE}test_speech_and_music", BAD),
    "music": (f"{HERE}test_speech_and_music", BAD),
    "library": (LIBRARY, BAD),
    "leaderboard": (LIBRARY, NO_INPUT),
    "export": (LIBRARY, BAD),
    "models_list": (MODELS, NO_INPUT),
    "load_model": (MODELS, BAD),
    "unload_model": (MODELS, BAD),
    "pull_model": (f"{HERE}test_pull_model_and_train_runs", BAD),
    "train": (
        f"{TRAIN}test_a_run_from_the_tab_registers_a_variant_the_chat_tab_lists_at_once",
        f"{TRAIN}test_a_bad_setting_is_refused_with_its_range",
    ),
    "train_runs": (f"{HERE}test_pull_model_and_train_runs", NO_INPUT),
    "train_compare": (f"{TRAIN}test_compare_promote_and_discard", BAD),
    "promote_variant": (f"{TRAIN}test_compare_promote_and_discard", BAD),
    "discard_variant": (f"{TRAIN}test_compare_promote_and_discard", BAD),
    "safety_policy": (f"{HERE}test_safety_policy_log_and_check", BAD),
    "safety_log": (f"{HERE}test_safety_policy_log_and_check", NO_INPUT),
    "safety_check": (f"{HERE}test_safety_policy_log_and_check", BAD),
}


def public_endpoints(studio: Studio) -> set[str]:
    from studio.ui import build_app

    return {str(fn.api_name) for fn in build_app(studio).fns.values() if fn.api_visibility == "public"}


def test_every_public_endpoint_has_an_owner_test_and_a_bad_input_test(make_studio) -> None:
    published = public_endpoints(make_studio(FAKE_MODELS + MORE_MODELS))
    assert sorted(published - set(ENDPOINT_TESTS)) == [], "new endpoints: add their tests to ENDPOINT_TESTS"
    assert sorted(set(ENDPOINT_TESTS) - published) == [], "endpoints the app no longer publishes"
    for name, tests in ENDPOINT_TESTS.items():
        for test in tests:
            if test is None:
                continue
            module_file, function = test.split("::")
            module = importlib.import_module(f"tests.{module_file.removesuffix('.py')}")
            source = inspect.getsource(getattr(module, function))  # AttributeError: the test is gone
            assert f'"/{name}"' in source, f"{test} does not call /{name}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    with served_studio(tmp_path_factory.mktemp("endpoints"), FAKE_MODELS + MORE_MODELS) as (studio, url):
        studio.user_id(None)
        yield studio, url


@pytest.fixture(scope="module")
def client(served: tuple[Studio, str]) -> Client:
    return Client(served[1], verbose=False)


def rows(studio: Studio, tab: str | None = None) -> list[storage.Generation]:
    with Session(studio.engine) as session:
        query = select(storage.Generation).order_by(storage.Generation.id)  # type: ignore[arg-type]
        found = session.exec(query).all()
    return [row for row in found if tab is None or row.tab == tab]


def chat_conversation(client: Client, message: str) -> int:
    _, conversation, _, _ = client.predict(message, None, "fake", "", *SAMPLING, api_name="/chat")
    return int(conversation["value"])


def code_conversation(client: Client, message: str) -> int:
    outputs = client.predict(message, None, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code")
    return int(outputs[1]["value"])


def test_rename_and_delete_a_conversation(served: tuple[Studio, str], client: Client) -> None:
    studio, _ = served
    conv = chat_conversation(client, "a conversation to rename")
    listing, rename_box = client.predict(conv, "Plans for the garden", api_name="/rename_conversation")
    assert (conv, "Plans for the garden") in studio.conversations(tab="chat")
    assert listing["value"] == conv and rename_box in ("", {"__type__": "update", "value": ""})
    listing, chatbot = client.predict(conv, api_name="/delete_conversation")
    assert conv not in [cid for cid, _ in studio.conversations(tab="chat")]
    assert chatbot["value"] == [] and listing["value"] != conv


def test_code_regenerate_and_continue(served: tuple[Studio, str], client: Client) -> None:
    studio, _ = served
    conv = code_conversation(client, "a function that adds")
    first = studio.conversation(conv)[-1]
    client.predict(conv, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code_regenerate")
    again = studio.conversation(conv)[-1]
    assert again.generation_id != first.generation_id and again.prompt == first.prompt
    assert len(studio.conversation(conv)) == 1, "a new answer to the same turn, not a new turn"
    outputs = client.predict(conv, "fake", *CODE_SETTINGS, *SAMPLING, api_name="/code_continue")
    went_on = studio.conversation(conv)[-1]
    assert went_on.generation_id != again.generation_id and went_on.reply.startswith(again.reply)
    assert len(went_on.reply) > len(again.reply)
    assert outputs[0]["value"][-1]["content"][0]["text"].startswith(again.reply[:20])


def test_compare_code_speech_and_music(served: tuple[Studio, str], client: Client) -> None:
    studio, _ = served
    for api_name, args, tab in [
        ("/compare_code", ("a function that adds", "fake", "1", "fake", "2", True), "code"),
        ("/compare_speech", ("two words", "voice", "1", "voice", "2", True), "speech"),
        ("/compare_music", ("slow drums", "band", "1", "band-2", "2", True), "music"),
    ]:
        before = len(rows(studio, tab))
        a, b, _note = client.predict(*args, api_name=api_name)
        made = rows(studio, tab)[before:]
        assert len(made) == 2 and {row.status for row in made} == {"ok"}, api_name
        assert a and b, api_name


def test_speech_and_music(served: tuple[Studio, str], client: Client) -> None:
    studio, _ = served
    clip, *_ = client.predict("two words", "voice", 1.0, "", 3, api_name="/speech")
    (row,) = rows(studio, "speech")[-1:]
    assert row.status == "ok" and row.prompt == "two words" and Path(clip).stat().st_size > 44
    clip, *_ = client.predict("slow drums", "band", None, 2.0, 3.0, 1.0, 250, 4, api_name="/music")
    (row,) = rows(studio, "music")[-1:]
    assert row.status == "ok" and row.prompt == "slow drums" and row.params["duration"] == 2.0
    assert Path(clip).stat().st_size > 44


def test_pull_model_and_train_runs(served: tuple[Studio, str], client: Client) -> None:
    job = client.submit("fake", api_name="/pull_model")  # its weights are here: nothing to fetch
    job.result()
    lines = [out[0] for out in job.outputs() if isinstance(out[0], str)]
    assert lines == ["fake is already here"], job.outputs()
    runs, _variant = client.predict(api_name="/train_runs")
    assert runs["headers"] and runs["data"] in ([], [[""] * len(runs["headers"])])  # none yet, for this user


def test_safety_policy_log_and_check(served: tuple[Studio, str], client: Client) -> None:
    studio, _ = served
    before = studio.safety_policy()
    modes = [before["modes"][tab] for tab in SAFETY_TABS]
    thresholds = [before["thresholds"][c] for c in SAFETY_CATEGORIES]
    try:
        note, _ = client.predict("block", *modes[1:], 0.9, *thresholds[1:], api_name="/safety_policy")
        assert note.startswith("Applied"), note  # the one local user is the admin
        assert studio.safety_policy()["modes"]["chat"] == "block"
        assert studio.safety_policy()["thresholds"]["profanity"] == 0.9
    finally:
        studio.set_safety_policy(modes=before["modes"], thresholds=before["thresholds"])
    note, log = client.predict(api_name="/safety_log")
    assert note == "" and log["headers"]
    verdict = client.predict("what a lovely morning for a walk", api_name="/safety_check")
    assert verdict["media"] == "text" and verdict["verdict"] == "ok", verdict  # no checkers in this config


MISSING = 999_999  # an id nothing has


@pytest.mark.parametrize(
    ("api_name", "args", "expected"),
    [
        ("/regenerate", [MISSING, "fake", "", *SAMPLING], "not in the list of choices"),
        ("/continue", [MISSING, "fake", "", *SAMPLING], "not in the list of choices"),
        ("/rename_conversation", [MISSING, "a title"], "not in the list of choices"),
        ("/delete_conversation", [MISSING], "not in the list of choices"),
        ("/code_regenerate", [MISSING, "fake", *CODE_SETTINGS, *SAMPLING], "not in the list of choices"),
        ("/code_continue", [MISSING, "fake", *CODE_SETTINGS, *SAMPLING], "not in the list of choices"),
        ("/code_delete", [MISSING], "not in the list of choices"),
        ("/compare_chat", ["   ", "fake", "", "fake-2", "", True], "empty"),
        ("/compare_code", ["a function", "fake", "x", "fake", "", True], "a seed is a whole number"),
        ("/compare_speech", ["two words", "voice", "1.5", "voice", "", True], "a seed is a whole number"),
        ("/compare_music", ["", "band", "", "band-2", "", True], "empty"),
        ("/speech", ["   ", "voice", 1.0, "", 3], "empty"),
        ("/music", ["drums", "band", None, 0.0, 3.0, 1.0, 250, 1], "less than minimum value 1"),
        ("/library", ["", "", "", "", "", 0], "less than minimum value 1"),
        ("/export", ["sft", "", "not a date", 0, False], "'not a date' is not a date like"),
        ("/load_model", ["nope"], "nope"),
        ("/unload_model", ["nope"], "nope"),
        ("/pull_model", ["nope"], "nope"),
        ("/train_compare", [MISSING, "hello"], r"\*\*Error:\*\* .*variant"),
        ("/promote_variant", [MISSING], r"\*\*Error:\*\* .*variant"),
        ("/discard_variant", [MISSING], r"\*\*Error:\*\* .*variant"),
        ("/safety_policy", ["maybe", *["off"] * 4, *[0.5] * 8], "not in the list of choices"),
        ("/safety_policy", [*["off"] * 5, 1.5, *[0.5] * 7], "greater than maximum value 1"),
        ("/safety_check", ["   "], "text"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    served: tuple[Studio, str], client: Client, api_name: str, args: list, expected: str
) -> None:
    studio, _ = served
    before = [(row.id, row.status) for row in rows(studio)]
    conversations = studio.conversations(tab="chat") + studio.conversations(tab="code")
    try:
        shown = client.predict(*args, api_name=api_name)
    except Exception as exc:  # a raised gr.Error (a toast), or Gradio's own check of the value
        assert re.search(expected, str(exc)), str(exc)
    else:  # endpoints with a note panel report the error in it
        notes = [out for out in (shown if isinstance(shown, tuple) else (shown,)) if isinstance(out, str)]
        assert any(re.search(expected, note) for note in notes), shown
    assert [(row.id, row.status) for row in rows(studio)] == before
    assert studio.conversations(tab="chat") + studio.conversations(tab="code") == conversations
