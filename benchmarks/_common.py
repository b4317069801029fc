"""Shared helpers for the benchmark scripts: stable environment, timing statistics, tables.

Import this module FIRST in every benchmark (before torch, transformers or gradio): it pins the
environment that keeps numbers stable on 2 shared cores and keeps everything offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))

from tests.helpers.tiny_chat import OFFLINE_ENV  # noqa: E402  (light: imports no heavy library)

os.environ.update(OFFLINE_ENV)

BUNDLED_ID = "smollm2-135m"
SMOKE_HELP = (
    "a quick check that the script runs (what CI does for every benchmark): tiny models, one round, a few "
    "seconds, no network; its figures mean nothing"
)


def add_smoke(parser: argparse.ArgumentParser) -> None:
    """The `--smoke` flag every benchmark takes."""
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def pin_torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


def default_model_cache() -> Path:
    """The model cache `Settings.from_env()` uses when no STUDIO_* variable is set."""
    from studio.config import Settings

    saved = {k: os.environ.pop(k) for k in ("STUDIO_DATA_DIR", "STUDIO_MODEL_CACHE") if k in os.environ}
    try:
        return Settings.from_env().model_cache
    finally:
        os.environ.update(saved)


def bundled_spec() -> dict:
    """The bundled chat model's entry from the repository's models.yaml, as a plain dict."""
    import yaml

    data = yaml.safe_load((REPO / "models.yaml").read_text(encoding="utf-8"))
    return next(m for m in data["models"] if m["id"] == BUNDLED_ID)


def bundled_weights(cache: Path) -> tuple[Path, Path]:
    """(GGUF file, converted safetensors folder) of the bundled model inside `cache`."""
    spec = bundled_spec()
    member = spec["source"].partition("#")[2]
    return cache / BUNDLED_ID / Path(member).name, cache / BUNDLED_ID / "converted"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    """A plain monospace table; floats are shown with 2 decimals (1 when >= 100)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = []
    if title:
        out.append(title)

    def join(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out.append(join(headers))
    out.append(line)
    out.extend(join(r) for r in cells)
    return "\n".join(out)


def load_note() -> str:
    """The machine's load average: other work on 2 shared cores is the main source of noise."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def print_targets(checks: dict[str, bool | None]) -> None:
    print("\n== targets ==")
    for name, ok in checks.items():
        print(f"  {verdict(ok):8} {name}")
