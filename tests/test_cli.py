"""The `studio` console script: models list, generate --json, rate, history, and its error exits."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from studio.cli import main, parse_param
from tests.conftest import FAKE_MODELS, tiny_models_yaml, write_models


@pytest.fixture
def fake_args(tmp_path: Path) -> list[str]:
    return ["--models", str(write_models(tmp_path, FAKE_MODELS)), "--data-dir", str(tmp_path / "data")]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_param_reads_yaml_scalars() -> None:
    assert parse_param("temperature=0.5") == ("temperature", 0.5)
    assert parse_param("do_sample=false") == ("do_sample", False)
    assert parse_param("seed=null") == ("seed", None)
    assert parse_param("system_prompt=Be brief: always.") == ("system_prompt", "Be brief: always.")
    assert parse_param("system_prompt=[1, 2]") == ("system_prompt", "[1, 2]")


@pytest.mark.tiny
def test_generate_json_rate_and_history(capsys, tmp_path: Path, tiny_model_dir: Path) -> None:
    args = [
        "--models",
        str(write_models(tmp_path, tiny_models_yaml(tiny_model_dir))),
        "--data-dir",
        str(tmp_path / "d"),
    ]
    code, out, _ = run_cli(
        capsys,
        "generate",
        "chat",
        "Hello",
        *args,
        "--model",
        "tiny",
        "--param",
        "max_new_tokens=5",
        "--param",
        "seed=3",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"generation_id", "tab", "model", "text", "files", "params"}
    assert result["model"] == "tiny" and result["tab"] == "chat" and result["params"]["max_new_tokens"] == 5
    gid = str(result["generation_id"])
    assert run_cli(capsys, "rate", gid, "up", *args)[0] == 0
    code, out, _ = run_cli(capsys, "history", "--json", *args)
    [row] = json.loads(out)
    assert row["generation_id"] == result["generation_id"] and row["rating"] == 1 and row["prompt"] == "Hello"
    code, out, _ = run_cli(capsys, "history", *args)
    assert code == 0 and "Hello" in out and "+1" in out


@pytest.mark.tiny
def test_generate_continues_a_conversation_and_reports_speed(
    capsys, tmp_path: Path, tiny_model_dir: Path
) -> None:
    models = write_models(tmp_path, tiny_models_yaml(tiny_model_dir))
    args = ["--models", str(models), "--data-dir", str(tmp_path / "d"), "--model", "tiny", "--json"]
    code, out, _ = run_cli(capsys, "generate", "chat", "Hello", *args, "--param", "max_new_tokens=6")
    first = json.loads(out)
    assert code == 0 and first["tokens"] >= 1 and first["ttft_ms"] > 0
    assert first["tokens_per_s"] is None or first["tokens_per_s"] > 0
    conv = str(first["conversation_id"])
    code, out, _ = run_cli(capsys, "generate", "chat", "And then?", *args, "--conversation", conv)
    second = json.loads(out)
    assert code == 0 and second["conversation_id"] == first["conversation_id"]
    code, out, _ = run_cli(
        capsys, "history", "--json", "--models", str(models), "--data-dir", str(tmp_path / "d")
    )
    assert sorted(r["prompt"] for r in json.loads(out)) == ["And then?", "Hello"]
    code, _, err = run_cli(capsys, "generate", "chat", "Hi", *args, "--conversation", "999")
    assert code == 2 and "999" in err
    code, _, err = run_cli(capsys, "generate", "image", "a cat", *args, "--conversation", conv)
    assert code == 2 and "--conversation continues a chat or code conversation" in err


def test_models_list_shows_status(capsys, fake_args: list[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "list", "--json", *fake_args)
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["fake", "fake-2"] and {r["status"] for r in rows} == {"ready"}


def test_errors_exit_non_zero_with_a_message(capsys, fake_args: list[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "generate", "chat", "hi", "--param", "temperature=9", *fake_args)
    assert code == 2 and "temperature=9" in err and "valid" in err
    code, _, err = run_cli(capsys, "generate", "chat", "", *fake_args)
    assert code == 2 and "empty" in err
    code, _, err = run_cli(capsys, "generate", "chat", "please FAIL", *fake_args)
    assert code == 1 and "failed on purpose" in err
    code, _, err = run_cli(capsys, "rate", "999", "up", *fake_args)
    assert code == 2 and "does not exist" in err
    (tmp_path / "bad").mkdir()
    bad = write_models(tmp_path / "bad", "models:\n  - {id: x, tabs: [chat], backend: nope, source: a/b}\n")
    code, _, err = run_cli(capsys, "models", "list", "--models", str(bad))
    assert code == 2 and "unknown backend 'nope'" in err
    code, _, err = run_cli(capsys, "models", "pull", "ghost", *fake_args)
    assert code == 2 and "unknown model 'ghost'" in err


def test_console_script_is_installed() -> None:
    exe = shutil.which("studio") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "studio")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "serve" in out and "generate" in out and "history" in out
