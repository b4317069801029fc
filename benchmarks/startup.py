"""Start-up costs: app start to serving, the bundled model's warm load, and import times.

  (a) `python app.py --port P --no-preload` as a subprocess (fresh STUDIO_DATA_DIR, the default model
      cache) until `GET /` answers 200; plus a breakdown of where that time goes, measured in-process
      in a fresh interpreter (imports, Studio construction, build_app, launch).
  (b) `Studio.manager.preload("smollm2-135m")` in a fresh subprocess, after the one-time GGUF
      conversion exists (the script does the conversion first if it is missing, and says so). Reported
      twice: as the app pays it (torch and transformers are imported lazily inside load(), so their
      import is part of the first load) and the load alone with those modules already imported.
  (c) import time of `studio.cli` alone (what every `studio ...` command pays before doing anything).

Every measurement runs in a fresh process; one unreported warm-up run first fills the OS file cache.

    .venv/bin/python benchmarks/startup.py --repeats 3
    .venv/bin/python benchmarks/startup.py --smoke     # once each, no warm-ups or breakdown, fewer imports
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import (
    BUNDLED_ID,
    OFFLINE_ENV,
    REPO,
    add_smoke,
    bundled_weights,
    default_model_cache,
    load_note,
    median,
    print_targets,
    table,
)

from tests.helpers.net import free_port

TARGET_SERVE_S = 4.0
TARGET_LOAD_S = 3.0

# Runs in a fresh interpreter; prints one JSON line of timings (seconds).
BREAKDOWN = r"""
import json, sys, time, urllib.request
t0 = time.perf_counter(); marks = {}
import studio.cli
marks["import studio.cli"] = time.perf_counter()
from studio.config import Settings
from studio.service import Studio
marks["import studio.service"] = time.perf_counter()
studio = Studio.from_settings(Settings.from_env())
marks["Studio.from_settings (config, DB tables)"] = time.perf_counter()
import studio.ui as ui
marks["import studio.ui (gradio)"] = time.perf_counter()
app = ui.build_app(studio)
marks["build_app"] = time.perf_counter()
ui.launch(app, studio, host="127.0.0.1", port=int(sys.argv[1]), block=False)
marks["launch (server up)"] = time.perf_counter()
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=30) as r:
    assert r.status == 200
marks["first GET / answered"] = time.perf_counter()
app.close()
out, prev = {}, t0
for k, v in marks.items():
    out[k] = v - prev
    prev = v
out["total"] = prev - t0
print("RESULT " + json.dumps(out))
"""

PRELOAD = r"""
import json, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "pre-imported":
    import torch, transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
t1 = time.perf_counter()
# No torch import here: in "lazy" mode load() imports it, as in the app (threads come from OMP_NUM_THREADS=1).
from studio.config import Settings
from studio.service import Studio
studio = Studio.from_settings(Settings.from_env())
t2 = time.perf_counter()
seconds = studio.manager.preload(sys.argv[2])
t3 = time.perf_counter()
out = {"imports": t1 - t0, "studio": t2 - t1, "preload": t3 - t2, "reported": seconds}
print("RESULT " + json.dumps(out))
"""

IMPORT = r"""
import json, sys, time
t = time.perf_counter()
__import__(sys.argv[1])
print("RESULT " + json.dumps({"seconds": time.perf_counter() - t}))
"""


def env_for(data_dir: Path, cache: Path) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV}
    env.update(STUDIO_DATA_DIR=str(data_dir), STUDIO_MODEL_CACHE=str(cache), PYTHONPATH=str(REPO))
    env.pop("STUDIO_MODELS", None)
    env.pop("STUDIO_DATABASE_URL", None)
    return env


def run_json(code: str, args: list[str], env: dict[str, str], timeout: float = 300) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(
        f"subprocess failed (rc {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


def serve_once(cache: Path, tmp: Path, i: int) -> float:
    """Seconds from spawning `python app.py --no-preload` until GET / returns 200."""
    port = free_port()
    env = env_for(tmp / f"serve-{i}", cache)
    log = (tmp / f"serve-{i}.log").open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--no-preload"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"app.py did not answer within 120 s; see {log.name}")
            time.sleep(0.02)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per measurement (median)")
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    add_smoke(ap)
    args = ap.parse_args()
    if args.smoke:
        args.repeats = 1
    warm = not args.smoke  # the unreported runs that fill the OS file cache first

    cache = default_model_cache()
    tmp = Path(tempfile.mkdtemp(prefix="studio-startup-"))
    print(f"start: {load_note()}", flush=True)
    checks: dict[str, bool | None] = {}
    reps = args.repeats

    # (c) imports
    rows = []
    modules = (
        ("studio.cli", "studio.service") if args.smoke else ("studio.cli", "studio.service", "studio.ui")
    )
    for module in (*modules, "torch", "transformers") if not args.smoke else modules:
        env = env_for(tmp / "imports", cache)
        if warm:
            run_json(IMPORT, [module], env)  # warm the file cache
        times = [run_json(IMPORT, [module], env)["seconds"] for _ in range(reps)]
        rows.append([f"import {module}", median(times), min(times), max(times)])
    print(table(["fresh interpreter", "median s", "min s", "max s"], rows, "== import times =="), flush=True)

    # (a) app start to serving
    if not args.skip_serve:
        if warm:
            serve_once(cache, tmp, 0)  # warm-up, not counted
        times = [serve_once(cache, tmp, i + 1) for i in range(reps)]
        med = median(times)
        checks[f"app start to serving (GET / = 200) median <= {TARGET_SERVE_S:.0f} s"] = med <= TARGET_SERVE_S
        print()
        rows = [["python app.py --no-preload -> GET / 200", med, min(times), max(times)]]
        print(
            table(["app start to serving", "median s", "min s", "max s"], rows, "== (a) start to serving ==")
        )
        parts: dict[str, list[float]] = {}
        for i in range(0 if args.smoke else reps):  # smoke: app.py above runs the same steps
            result = run_json(BREAKDOWN, [str(free_port())], env_for(tmp / f"breakdown-{i}", cache))
            for k, v in result.items():
                parts.setdefault(k, []).append(v)
        print()
        rows = [[k, median(v), min(v), max(v)] for k, v in parts.items()]
        print(
            table(
                ["step (same work, in one fresh process)", "median s", "min s", "max s"],
                rows,
                "== (a) where the start-up time goes ==",
            ),
            flush=True,
        )

    # (b) bundled model warm load
    if not args.skip_load:
        gguf, converted = bundled_weights(cache)
        print()
        if not gguf.exists():
            print(f"SKIP bundled warm load: {gguf} is absent; run `studio models pull --bundled` first")
            checks[f"bundled warm load <= {TARGET_LOAD_S:.0f} s"] = None
        elif args.smoke and not (converted / "config.json").exists():
            print(
                "SKIP bundled warm load in --smoke: the GGUF is not converted yet (a first load: about 20 s)"
            )
        else:
            env = env_for(tmp / "load", cache)
            if not (converted / "config.json").exists():
                print("converting the GGUF once (not timed; about 20 s) ...", flush=True)
                run_json(PRELOAD, ["lazy", BUNDLED_ID], env, timeout=600)
            elif warm:
                run_json(PRELOAD, ["lazy", BUNDLED_ID], env)  # warm the file cache
            rows = []
            result = {}
            for mode in ("lazy",) if args.smoke else ("lazy", "pre-imported"):
                runs = [run_json(PRELOAD, [mode, BUNDLED_ID], env) for _ in range(reps)]
                result[mode] = runs
                pre = [r["preload"] for r in runs]
                label = {
                    "lazy": "preload() in a fresh process (includes torch+transformers import)",
                    "pre-imported": "preload() with torch+transformers already imported",
                }[mode]
                rows.append([label, median(pre), min(pre), max(pre)])
            if "pre-imported" in result:
                imp = [r["imports"] for r in result["pre-imported"]]
                rows.append(
                    ["(import torch + transformers + AutoModel classes)", median(imp), min(imp), max(imp)]
                )
            print(
                table(
                    [f"{BUNDLED_ID} warm load", "median s", "min s", "max s"],
                    rows,
                    "== (b) bundled model warm load (safetensors conversion present) ==",
                )
            )
            checks[f"bundled warm load (fresh process, as the app pays it) <= {TARGET_LOAD_S:.0f} s"] = (
                rows[0][1] <= TARGET_LOAD_S
            )
            if "pre-imported" in result:
                checks[f"bundled warm load (modules already imported) <= {TARGET_LOAD_S:.0f} s"] = (
                    rows[1][1] <= TARGET_LOAD_S
                )

    print(f"\nend: {load_note()}")
    print_targets(checks)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
