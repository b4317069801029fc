"""The Code tab's service: every mode through the real backend (tiny checkpoint, marked `tiny`), settings,
checks and files (fake backend, fast tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from studio import storage
from studio.cli import main
from studio.formats.code import MODES
from studio.service import Studio, StudioError
from tests.conftest import tiny_models_yaml, write_models

SNIPPET = "def add(a, b):\n    return a - b\n"
MODE_INPUTS = {
    "write": ({}, "a function that adds two numbers"),
    "explain": ({}, SNIPPET),
    "fix": ({"error": "add(1, 2) returns -1"}, SNIPPET),
    "translate": ({"source_language": "javascript"}, "function add(a, b) { return a + b; }"),
    "tests": ({}, SNIPPET),
    "follow-up": ({}, "make it iterative"),
}


def rows(studio: Studio) -> list[storage.Generation]:
    with Session(studio.engine) as s:
        return list(s.exec(select(storage.Generation).order_by(storage.Generation.id)))


@pytest.mark.tiny
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_runs_through_the_real_backend(tiny_studio: Studio, mode: str) -> None:
    extra, text = MODE_INPUTS[mode]
    final = list(
        tiny_studio.code(model_id="tiny", text=text, settings={"mode": mode, "language": "python", **extra})
    )[-1]
    assert final.status == "ok" and final.generation_id
    [row] = rows(tiny_studio)
    assert row.tab == "code" and row.params["code"]["mode"] == mode and row.params["code"]["input"] == text
    assert text.strip().splitlines()[0] in row.prompt, "the input is inside the prompt the model saw"
    assert row.params["temperature"] == 0.2, "code-friendly default"
    result = tiny_studio.code_result(row.output_text, "python")
    assert result.language == "python" and result.extension == ".py"
    if not result.blocks:  # random weights rarely write fences: the answer is shown as text
        assert "no code block" in result.notice


@pytest.mark.tiny
def test_follow_up_turns_keep_the_conversation(tiny_studio: Studio) -> None:
    first = list(tiny_studio.code(model_id="tiny", text="a function that adds", settings={"mode": "write"}))[
        -1
    ]
    conv = first.conversation_id
    list(
        tiny_studio.code(
            model_id="tiny", text="add type hints", settings={"mode": "follow-up"}, conversation_id=conv
        )
    )
    second = rows(tiny_studio)[-1]
    assert second.prompt == "add type hints" and second.history[0]["content"] == rows(tiny_studio)[0].prompt
    assert len(tiny_studio.conversation(conv)) == 2
    assert tiny_studio.conversations(tab="code") == [(conv, "a function that adds")], "titled as typed"
    assert tiny_studio.conversations(tab="chat") == []
    tiny_studio.rate(second.id or 0, "up")
    assert tiny_studio.conversation(conv)[-1].rating == 1
    regen = list(tiny_studio.code(model_id="tiny", conversation_id=conv, action="regenerate"))[-1]
    assert regen.status == "ok" and rows(tiny_studio)[-1].action == "regenerate"
    stored = tiny_studio.conversation(conv)[-1].params["code"]
    assert stored["mode"] == "follow-up" and stored["input"] == "add type hints", "settings kept for reuse"


@pytest.mark.tiny
def test_input_beyond_the_context_is_cut_with_a_notice(tiny_studio: Studio) -> None:
    big = "x = 1\n" * 400  # the tiny model's context is 256 tokens
    final = list(tiny_studio.code(model_id="tiny", text=big, settings={"mode": "explain"}))[-1]
    assert final.status == "ok"
    assert any("input was cut" in n for n in final.notices)
    assert rows(tiny_studio)[-1].notices == final.notices


@pytest.mark.parametrize(
    ("settings", "text", "expected"),
    [
        ({"mode": "write"}, "   ", "empty"),
        ({"mode": "conjure"}, "x", "unknown mode 'conjure'"),
        ({"language": "cobol"}, "x", "unknown language 'cobol'"),
        ({"mode": "translate"}, "x", "source"),
        ({"mode": "translate", "source_language": "python"}, "x", "both python"),
        ({"template": "Do {nonsense} with {input}"}, "x", "nonsense"),
        ({"colour": "blue"}, "x", "invalid code settings"),
        ({"error": "e" * 20_001}, "x", "invalid code settings"),
    ],
)
def test_bad_code_input_is_refused_and_stores_nothing(
    fake_studio: Studio, settings: dict, text: str, expected: str
) -> None:
    with pytest.raises(StudioError) as err:
        list(fake_studio.code(model_id="fake", text=text, settings=settings))
    assert expected in str(err.value).lower() or expected in str(err.value)
    assert rows(fake_studio) == []


def test_extracted_code_is_checked_and_downloadable(fake_studio: Studio, tmp_path: Path) -> None:
    answer = "Here you go:\n```python\ndef f(:\n    pass\n```\nIt has a bug."
    result = fake_studio.code_result(answer, "python")
    assert result.code == "def f(:\n    pass" and result.explanation.startswith("Here you go")
    assert result.check is not None and not result.check.ok and result.check.line == 1
    ok = fake_studio.code_result('```json\n{"a": 1}\n```', "json")
    assert ok.check is not None and ok.check.ok
    final = list(fake_studio.code(model_id="fake", text="print(1)", settings={"mode": "follow-up"}))[-1]
    # The fake backend echoes its prompt; no fences -> no code to download.
    with pytest.raises(StudioError, match="no code"):
        fake_studio.code_file(final.generation_id or 0)
    with pytest.raises(StudioError, match="does not exist"):
        fake_studio.code_file(final.generation_id or 0, user="someone-else")


def test_code_file_has_the_language_extension(fake_studio: Studio) -> None:
    with Session(fake_studio.engine) as session:
        row = storage.record_generation(
            session,
            generation=storage.Generation(
                user_id=fake_studio.user_id(None),
                tab="code",
                model_id="fake",
                prompt="p",
                output_text="Done:\n```go\npackage main\n```",
                params={"code": {"mode": "write", "language": "go"}},
            ),
        )
        generation_id = row.id or 0
    path = fake_studio.code_file(generation_id)
    assert path.suffix == ".go" and path.read_text() == "package main\n"


@pytest.mark.tiny
def test_cli_generate_code_json(capsys, tmp_path: Path, tiny_model_dir: Path) -> None:
    models = write_models(tmp_path, tiny_models_yaml(tiny_model_dir))
    code = main(
        [
            "generate",
            "code",
            "a function",
            "--models",
            str(models),
            "--data-dir",
            str(tmp_path / "d"),
            "--param",
            "mode=write",
            "--param",
            "language=rust",
            "--param",
            "max_new_tokens=8",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tab"] == "code" and out["params"]["code"]["language"] == "rust"
    assert isinstance(out["code"], list) and "syntax_check" in out
    code = main(
        [
            "generate",
            "code",
            "x",
            "--models",
            str(models),
            "--data-dir",
            str(tmp_path / "d"),
            "--param",
            "language=cobol",
        ]
    )
    assert code == 2 and "unknown language 'cobol'" in capsys.readouterr().err
