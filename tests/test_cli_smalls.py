"""Issue 14, item 11: the small things a new user saw in the CLI and the Code tab's syntax check."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main
from studio.formats.code import SyntaxReport, syntax_check, undefined_names
from tests.conftest import FAKE_MODELS, write_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def args(tmp_path: Path) -> list[str]:
    return ["--models", str(write_models(tmp_path, FAKE_MODELS)), "--data-dir", str(tmp_path / "data")]


def test_generate_code_accepts_mode_debug_as_debug_fix(capsys, args: list[str]) -> None:
    code = main(
        [
            "generate",
            "code",
            "def f(): return 1/0",
            "--model",
            "fake",
            "--param",
            "mode=debug",
            "--json",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["params"]["code"]["mode"] == "fix"
    assert "has a bug" in result["text"]  # the Debug / fix template was sent (the fake echoes it)


def test_history_has_a_header_line(capsys, args: list[str]) -> None:
    assert main(["generate", "chat", "Hello there", *args]) == 0
    capsys.readouterr()
    assert main(["history", *args]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "CREATED", "TAB", "MODEL", "STATUS", "VOTE", "PROMPT"]
    # The header's columns line up with the row's.
    assert row.index("chat") == header.index("TAB") and row.index("Hello") == header.index("PROMPT")


def test_export_prints_its_result_once(tmp_path: Path, args: list[str], capsys) -> None:
    assert main(["generate", "chat", "Hello there", *args]) == 0
    assert main(["rate", "1", "up", *args]) == 0
    capsys.readouterr()
    # A process of its own: the CLI's logging set-up is what printed the summary a second time.
    script = (
        "import sys; import tests.helpers.fakes; from studio.cli import main; "
        f"sys.exit(main({['export', '--format', 'sft', '--out', str(tmp_path / 'out'), *args]!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    summary = f"sft: 1 train record(s) in {tmp_path / 'out'}"
    assert (done.stdout + done.stderr).count(summary) == 1 and done.stdout.strip() == summary


def test_serve_help_explains_host_and_port(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--host HOST address to listen on (default: 127.0.0.1" in text
    assert "--port PORT TCP port to serve on (default: $STUDIO_PORT or 7860)" in text


def test_a_busy_port_is_one_line_naming_port(capsys, args: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--no-preload", *args])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: cannot serve on 127.0.0.1:{port} (")
    assert "pick another port with --port" in err and "GRADIO_SERVER_PORT" not in err


def test_python_syntax_check_names_undefined_names_without_running() -> None:
    report = syntax_check("python", "import os\n\ndef f(x):\n    return prnt(os.sep, x)\n")
    assert report == SyntaxReport(False, "line 4: undefined name 'prnt' (Python)", 4)
    # What pyflakes accepts passes: builtins, imports, globals set in functions, closures, comprehensions,
    # names bound by try/except, with, for and del; a star import turns the check off.
    fine = (
        "import sys\nfrom math import pi as PI\n\ncounter = 0\n\n\ndef bump():\n    global counter\n"
        "    counter += 1\n    total = sum(i for i in range(3))\n    def inner():\n        return total\n"
        "    return inner() + len(sys.argv) + PI\n\n\nclass A:\n    def m(self):\n"
        "        return __class__.__name__, __name__\n\n\ntry:\n    import numpy as np\nexcept ImportError:\n"
        "    np = None\nwith open(__file__) as fh:\n    for line in fh:\n        del line\n"
    )
    assert syntax_check("python", fine) == SyntaxReport(True, "Python syntax OK", None)
    assert undefined_names("from os.path import *\nprint(join('a', 'b'))\n") == []
    # A class body's names are not visible in its methods: Python raises NameError there, so do we.
    assert undefined_names("class A:\n    z = 1\n\n    def m(self):\n        return z\n") == [(5, "z")]
    two = syntax_check("python", "print(a)\nprint(b)\n")
    assert two is not None and two.message == "line 1: undefined name 'a' (and 1 more) (Python)"
    # Never executed: a name inside code that would delete files is only reported.
    assert undefined_names("import shutil\nshutil.rmtree(target)\n") == [(2, "target")]
