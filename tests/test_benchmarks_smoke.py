"""The benchmarks' smoke runs stay wired: every script in benchmarks/ takes `--smoke`, and CI runs them all.

The runs themselves are `bash benchmarks/smoke.sh` (a step of .ci/run, about a minute or two): here only what
costs nothing, so a new benchmark without a smoke mode, or a CI step dropped, fails the fast tier.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_takes_smoke_and_argparse_sees_it() -> None:
    assert len(SCRIPTS) >= 11
    missing = []
    for script in SCRIPTS:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        calls = {
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
        }
        flags = {
            arg.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            for arg in node.args
            if isinstance(arg, ast.Constant)
        }
        if "add_smoke" not in calls and "--smoke" not in flags:
            missing.append(script.name)
    assert not missing, f"benchmarks without --smoke: {missing}"


def test_ci_smoke_runs_every_benchmark_under_a_time_limit() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index('step "benchmarks (smoke)"') < ci.index('step "pytest"')
    assert "bash benchmarks/smoke.sh" in ci
    runner = (ROOT / "benchmarks" / "smoke.sh").read_text(encoding="utf-8")
    assert "benchmarks/[!_]*.py" in runner and "timeout" in runner and "--smoke" in runner
