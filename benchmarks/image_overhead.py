"""What the Image tab's service costs on top of the diffusers pipeline: raw `pipe(...)` vs `Studio.image`.

The same loaded pipeline object (the `diffusers` backend's text-to-image `pipe`, kept loaded with
`studio.manager.pin`: no device turn is held, so the service lines up as usual), the same prompt, steps,
guidance 5.0, size and fixed seed, one picture, measured two ways, interleaved (raw, service, service, raw,
...: the order alternates each round):

  raw      backend.pipe(prompt=..., num_inference_steps=..., guidance_scale=..., width=..., height=...,
           generator=torch.Generator().manual_seed(seed)) in the calling thread
  service  list(studio.image(model_id=..., prompt=..., params={...})): validation, the manager, the
           backend's worker thread and its progress events, the scheduler (built once, then cached), then the
           PNG write (parameters chunk, fsync, rename) and the generation row (begun in a short commit,
           finished with the file in one transaction)

on the tiny random-weight Stable Diffusion pipeline of tests.helpers.tiny_chat (its VAE downsamples by 2, so a
128x128 picture is a 64x64 latent: the VAE's attention makes it about 7x the cost of 64x64). Each round
the service's PNG is read back and compared with the raw picture of the same round: the same seed must
give the same pixels.

On 2 shared cores the pipeline's own run time varies by +-20 % between rounds, far more than the few ms
the service adds, so the fixed cost is also measured on its own, many times: the service with the
backend's `pipe` swapped (and then put back) for a stub that runs the progress callback once per step and
returns the service's picture of that size at once, and each piece alone on that picture:
`png.save_png` (encode + fsync + rename, in the media folder) and the encode alone; the generation rows as
the service writes them (the begun row's short commit, then the row read back, filled, flushed, its file
set and committed) and the row's construction alone; the backend's part (worker thread, queue, callback,
the cached scheduler; building a scheduler from its config, which the backend does once per name, is timed
apart); the A1111 parameters text and the validation. raw best / (raw best + fixed cost) is the ratio a
quiet machine would show. Last, save_png and the PNG encode at the sizes real models draw (512x512,
1024x1024; the tiny picture scaled up and a photograph Gradio ships), where the encode dominates.

    .venv/bin/python benchmarks/image_overhead.py                    # 64x64 and 128x128, 4 steps, 15 rounds
    .venv/bin/python benchmarks/image_overhead.py --sizes 64 --repeats 5 --steps 2 --fixed-repeats 50
    .venv/bin/python benchmarks/image_overhead.py --smoke            # 64x64, 1 round, 2 steps
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import add_smoke, load_note, median, pct, pin_torch_threads, print_targets, table

MODEL_ID = "tiny-sd-bench"
PROMPT = "a red cat on the sky and a dog"
SEED = 1234
GUIDANCE = 5.0
TARGET_RATIO = 0.98
REAL_SIZES = (512, 1024)
PIECES = (
    "service, pipeline stubbed",
    "backend.generate, pipeline stubbed",
    "thread start + join (bare)",
    "scheduler rebuilt from config",
    "save_png: encode + fsync + rename",
    "PNG encode (in memory)",
    "DB rows: begin, then finish (2 commits)",
    "Generation() objects alone",
    "validation (model, params, prompt)",
    "A1111 parameters text",
)
LEGEND = """
'x raw' = median over rounds of (raw ms / service ms in the same round): the service's throughput as a
share of the raw pipeline's, with its range; 'best/best' = fastest raw run / fastest service run; '+ms' =
median over rounds of (service ms - raw ms). 'in-service ms' = duration_ms the service stored (manager +
backend.generate: worker thread, scheduler, progress callback and queue, the pipeline itself), before its
save; 'after backend' = service total minus that (validation, PNG + row, the final update).
'CPU time' = process CPU time per run (all its threads, user + sys; 'page faults' = minor faults): other
processes' load barely moves it, so its 'x raw' is the steadier estimate when the machine is busy.
Fixed cost: medians of the pieces timed alone, interleaved; 'rest of the service' = the stubbed service
minus its backend part, save_png, the rows, validation and the text (user id, request, manager, updates)."""


@dataclass
class Case:
    size: int
    raw: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    in_service: list[float] = field(default_factory=list)
    # per run: process CPU ms (all threads, user + sys), of which sys ms, and minor page faults
    cpu: dict[str, list[tuple[float, float, int]]] = field(default_factory=lambda: {"raw": [], "service": []})
    identical: list[bool] = field(default_factory=list)
    max_diff: int = 0
    picture: Any = None  # the service's picture (read back from its PNG), for the fixed-cost pieces
    pieces: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PIECES})


class StubPipeline:
    """Stands in for the pipeline: the progress callback once per step, then a ready picture."""

    def __init__(self, real: Any, picture: Any, steps: int) -> None:
        self.vae_scale_factor = real.vae_scale_factor
        self.scheduler = real.scheduler
        self.num_timesteps = steps
        self._interrupt = False
        self._picture = picture

    def __call__(self, **kwargs: Any) -> Any:
        callback = kwargs["callback_on_step_end"]
        for i in range(kwargs["num_inference_steps"]):
            callback(self, i, i, {})
        return SimpleNamespace(images=[self._picture], nsfw_content_detected=None)


def fs_type(path: Path) -> str:
    """The file system `path` lives on (fsync costs differ a lot between ext4, tmpfs, overlay...)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, typ, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, typ
    except OSError:
        pass
    return kind


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return (time.perf_counter() - started) * 1000, out


def measured(fn: Callable[[], Any]) -> tuple[float, tuple[float, float, int], Any]:
    """Wall ms, (process CPU ms, sys ms, minor page faults) and the result of fn(). CPU time counts this
    process only, so unlike wall time it barely moves with other processes' load on the machine."""
    before, cpu0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    ms, out = timed(fn)
    after, cpu1 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    sys_ms = (after.ru_stime - before.ru_stime) * 1000
    return ms, ((cpu1 - cpu0) * 1000, sys_ms, after.ru_minflt - before.ru_minflt), out


def image_params(size: int, steps: int) -> dict[str, Any]:
    return {
        "steps": steps,
        "guidance": GUIDANCE,
        "width": size,
        "height": size,
        "seed": SEED,
        "num_images": 1,
    }


# -- raw vs service, interleaved --------------------------------------------------------------------
def run_round(studio: Any, backend: Any, case: Case, steps: int, first: str) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from sqlmodel import Session

    from studio import storage

    size = case.size
    params = image_params(size, steps)
    pipe = backend.pipe  # the backend's own text-to-image pipeline

    def raw() -> Any:
        return pipe(
            prompt=PROMPT,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            width=size,
            height=size,
            generator=torch.Generator().manual_seed(SEED),
        ).images[0]

    def service() -> Any:
        return list(studio.image(model_id=MODEL_ID, prompt=PROMPT, params=params))

    order = ("raw", "service") if first == "raw" else ("service", "raw")
    results = {way: measured(raw if way == "raw" else service) for way in order}
    raw_ms, raw_cpu, raw_image = results["raw"]
    service_ms, service_cpu, updates = results["service"]
    final = updates[-1]
    if final.status != "ok" or not final.files:
        raise SystemExit(f"the service failed: {final.status} {final.error}")
    with Session(studio.engine) as session:
        row = storage.get_generation(session, generation_id=final.generation_ids[0])
        assert row is not None
        in_service = float(row.duration_ms or 0.0)
    with Image.open(final.files[0]) as png:
        case.picture = png.convert("RGB")
    a = np.asarray(raw_image.convert("RGB"), dtype=np.int16)
    b = np.asarray(case.picture, dtype=np.int16)
    same = a.shape == b.shape and bool((a == b).all())
    case.identical.append(same)
    if a.shape == b.shape:
        case.max_diff = max(case.max_diff, int(np.abs(a - b).max()))
    case.raw.append(raw_ms)
    case.service.append(service_ms)
    case.in_service.append(in_service)
    case.cpu["raw"].append(raw_cpu)
    case.cpu["service"].append(service_cpu)


# -- the fixed cost, piece by piece -----------------------------------------------------------------
def fixed_pieces(studio: Any, backend: Any, case: Case, steps: int, scratch: Path) -> dict[str, Callable]:
    """Each piece of the service's work besides the pipeline, as a callable (backend.pipe is the stub)."""
    from PIL import PngImagePlugin
    from sqlmodel import Session

    from studio import storage
    from studio.backends import Request
    from studio.formats import png
    from studio.service.checks import model_for, params_for, prompt_text

    params = image_params(case.size, steps)
    spec = model_for(studio.config, MODEL_ID, "image")
    validated: Any = params_for(spec, params, "image")
    picture = case.picture
    uid = studio.user_id("bench-pieces")

    def text() -> str:
        return png.a1111_parameters(
            prompt=PROMPT,
            negative_prompt=validated.negative_prompt,
            steps=validated.steps,
            guidance=validated.guidance,
            seed=SEED,
            width=validated.width,
            height=validated.height,
            scheduler=validated.scheduler,
            model=MODEL_ID,
            generation_id=1,
        )

    parameters = text()

    def encode() -> None:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
        info.add_text("studio_generation_id", "1")
        picture.save(io.BytesIO(), format="PNG", pnginfo=info)

    def save_png() -> None:
        path = png.save_png(picture, scratch / png.media_name(1, 0), parameters=parameters, generation_id=1)
        path.unlink()

    def new_rows() -> list[Any]:  # the row the service begins with
        return [
            storage.Generation(
                user_id=uid, tab="image", model_id=MODEL_ID, prompt=PROMPT, params=validated.model_dump()
            )
        ]

    def rows() -> (
        None
    ):  # as the service: the begun row in a short commit (runs.py), then ImageTab._save_images
        begun = new_rows()[0]  # without the PNG: the row read back, filled, flushed, its file set, committed
        with Session(studio.engine, expire_on_commit=False) as session:
            storage.begin_generation(session, generation=begun)
        base = {**validated.model_dump(), "img2img": False, "batch": "0123456789ab"}
        with Session(studio.engine, expire_on_commit=False) as session:
            row = session.get(storage.Generation, begun.id)
            assert row is not None
            row.params, row.seed, row.status, row.notices = {**base, "seed": SEED, "index": 0}, SEED, "ok", []
            row.duration_ms, row.active = 100.0, True
            session.add(row)
            session.flush()
            row.files = [f"media/images/2025-01-01/{row.id}-0-0123456789abcdef.png"]
            session.commit()

    def validate() -> None:
        params_for(model_for(studio.config, MODEL_ID, "image"), params, "image")
        prompt_text(PROMPT)

    def thread() -> None:
        worker = threading.Thread(target=lambda: None, daemon=True)
        worker.start()
        worker.join()

    return {
        "service, pipeline stubbed": lambda: list(
            studio.image(model_id=MODEL_ID, prompt=PROMPT, params=params)
        ),
        "backend.generate, pipeline stubbed": lambda: list(
            backend.generate(Request(prompt=PROMPT, params=validated))
        ),
        "thread start + join (bare)": thread,
        # What DiffusersImage._scheduler does the first time a scheduler is asked for (then it is cached).
        "scheduler rebuilt from config": lambda: backend._scheduler_class.from_config(
            backend._scheduler_config
        ),
        "save_png: encode + fsync + rename": save_png,
        "PNG encode (in memory)": encode,
        "DB rows: begin, then finish (2 commits)": rows,
        "Generation() objects alone": new_rows,
        "validation (model, params, prompt)": validate,
        "A1111 parameters text": text,
    }


def measure_fixed(studio: Any, backend: Any, case: Case, steps: int, repeats: int, scratch: Path) -> None:
    real = backend.pipe
    backend.pipe = StubPipeline(real, case.picture, steps)
    try:
        pieces = fixed_pieces(studio, backend, case, steps, scratch)
        for fn in pieces.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in pieces.items():
                case.pieces[name].append(timed(fn)[0])
    finally:
        backend.pipe = real


def photo() -> tuple[str, Any] | None:
    """A real photograph to stand in for a real model's picture: one of those Gradio ships, if present."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    for rel in ("test_data/cheetah2.jpg", "media_assets/images/cheetah.jpg", "media_assets/images/tower.jpg"):
        if (root / rel).is_file():
            with Image.open(root / rel) as image:
                return f"photo {Path(rel).name}", image.convert("RGB")
    return None


def real_size_png(picture: Any, scratch: Path, repeats: int = 5) -> list[list[object]]:
    """save_png and the encode alone at real models' sizes: level 1 (what save_png writes) against Pillow's
    default level 6, on the tiny model's picture scaled up (smooth: zlib's level 6 is at its slowest) and on a
    photograph scaled to the size, the closer stand-in for a real model's picture."""
    from PIL import Image

    from studio.formats import png

    sources = [("tiny picture scaled up", picture)]
    if (found := photo()) is not None:
        sources.append(found)
    rows: list[list[object]] = []
    for size in REAL_SIZES:
        for kind, source in sources:
            big = source.resize((size, size), Image.Resampling.LANCZOS)
            times: dict[str, list[float]] = {"save": [], "6": [], "1": []}
            nbytes: dict[str, int] = {}
            for _ in range(repeats):
                target = scratch / f"big-{size}.png"
                ms, path = timed(lambda: png.save_png(big, target, parameters="x" * 300))  # noqa: B023
                times["save"].append(ms)
                path.unlink()
                for level in ("6", "1"):
                    buf = io.BytesIO()
                    ms, _ = timed(lambda: big.save(buf, format="PNG", compress_level=int(level)))  # noqa: B023
                    times[level].append(ms)
                    nbytes[level] = buf.tell()
            rows.append(
                [
                    f"{size}x{size}, {kind}",
                    median(times["save"]),
                    median(times["6"]),
                    f"{nbytes['6'] // 1024}",
                    median(times["1"]),
                    f"{nbytes['1'] // 1024}",
                ]
            )
    return rows


# -- report -----------------------------------------------------------------------------------------
def report(case: Case, steps: int) -> tuple[str, dict[str, bool]]:
    nan = float("nan")
    ratios = [r / s for r, s in zip(case.raw, case.service, strict=True)]
    deltas = [s - r for r, s in zip(case.raw, case.service, strict=True)]
    after = [s - i for s, i in zip(case.service, case.in_service, strict=True)]
    inside = [i - r for i, r in zip(case.in_service, case.raw, strict=True)]
    best_ratio = min(case.raw) / min(case.service)
    rows = [
        ["raw", median(case.raw), min(case.raw), pct(case.raw, 0.9), nan, "", "", "", nan],
        [
            "service",
            median(case.service),
            min(case.service),
            pct(case.service, 0.9),
            median(case.in_service),
            f"{median(ratios):.3f}",  # 3 decimals: the target sits at 0.98
            f"{min(ratios):.3f}-{max(ratios):.3f}",
            f"{best_ratio:.3f}",
            median(deltas),
        ],
    ]
    n = len(case.raw)
    name = f"{case.size}x{case.size}"
    title = (
        f"\n== {name}, {steps} steps, guidance {GUIDANCE}, seed {SEED}, 1 picture: "
        f"{n} interleaved rounds (medians) =="
    )
    headers = ["way", "ms", "best ms", "p90 ms", "in-service ms", "x raw", "x raw range", "best/best", "+ms"]
    text = table(headers, rows, title)
    cpu = {way: [c[0] for c in case.cpu[way]] for way in ("raw", "service")}
    cpu_ratios = [r / s for r, s in zip(cpu["raw"], cpu["service"], strict=True)]
    cpu_rows = [
        [
            way,
            median(cpu[way]),
            median([c[1] for c in case.cpu[way]]),
            f"{median([c[2] for c in case.cpu[way]]):.0f}",
            f"{median(cpu_ratios):.3f}" if way == "service" else "",
            f"{min(cpu_ratios):.3f}-{max(cpu_ratios):.3f}" if way == "service" else "",
            median([s - r for r, s in zip(cpu["raw"], cpu["service"], strict=True)])
            if way == "service"
            else nan,
        ]
        for way in ("raw", "service")
    ]
    cpu_headers = ["CPU time", "CPU ms", "of which sys ms", "page faults", "x raw", "x raw range", "+ms"]
    text += "\n" + table(cpu_headers, cpu_rows)
    text += (
        f"\nservice - raw, median of rounds: {median(deltas):.1f} ms = {median(inside):.1f} inside the "
        f"backend (in-service - raw) + {median(after):.1f} after it (total - in-service)"
    )
    same = all(case.identical)
    text += "\n" + (
        f"pixels: service PNG == raw picture in {sum(case.identical)}/{n} rounds (same seed)"
        if same
        else f"WARNING: pixels differ in {n - sum(case.identical)}/{n} rounds (max |diff| {case.max_diff})"
    )

    cpu_ratio = median(cpu_ratios)
    checks = {
        f"[{name}] raw/service throughput >= {TARGET_RATIO} (wall time)": median(ratios) >= TARGET_RATIO,
        f"[{name}] raw/service throughput >= {TARGET_RATIO} (process CPU time)": cpu_ratio >= TARGET_RATIO,
    }
    if case.pieces[PIECES[0]]:
        p = {k: median(v) for k, v in case.pieces.items()}
        fixed = p["service, pipeline stubbed"]
        rest = fixed - sum(
            p[k]
            for k in (
                "backend.generate, pipeline stubbed",
                "save_png: encode + fsync + rename",
                "DB rows: begin, then finish (2 commits)",
                "validation (model, params, prompt)",
                "A1111 parameters text",
            )
        )

        def line(label: str, key: str | None, value: float | None = None) -> list[object]:
            ms = p[key] if key else (value if value is not None else nan)
            return [label, ms, pct(case.pieces[key], 0.9) if key else nan, f"{100 * ms / fixed:.0f}%"]

        brk = [
            line("service, pipeline stubbed (= fixed cost)", "service, pipeline stubbed"),
            line("  backend.generate (thread, queue, callback)", "backend.generate, pipeline stubbed"),
            line("    of which: thread start + join (bare)", "thread start + join (bare)"),
            line("    (once per name: scheduler from config)", "scheduler rebuilt from config"),
            line("  save_png: encode + fsync + rename", "save_png: encode + fsync + rename"),
            line("    of which: PNG encode (in memory)", "PNG encode (in memory)"),
            line("  DB rows: begin, then finish (2 commits)", "DB rows: begin, then finish (2 commits)"),
            line("    of which: Generation() objects", "Generation() objects alone"),
            line("  validation (model, params, prompt)", "validation (model, params, prompt)"),
            line("  A1111 parameters text", "A1111 parameters text"),
            line("  rest of the service", None, rest),
        ]
        reps = len(case.pieces[PIECES[0]])
        title = f"fixed cost per picture ({name}, {reps} interleaved repeats, pipeline stubbed)"
        text += "\n" + table(["piece", "median ms", "p90 ms", "share"], brk, title)
        predicted = min(case.raw) / (min(case.raw) + fixed)
        text += (
            f"\nfrom the fixed cost alone: raw best {min(case.raw):.1f} ms / (raw best + {fixed:.2f} ms) = "
            f"{predicted:.3f}; the fixed cost is {100 * fixed / median(case.raw):.1f}% of the raw median"
        )
        extra_cpu = median([s - r for r, s in zip(cpu["raw"], cpu["service"], strict=True)])
        faults = {way: median([c[2] for c in case.cpu[way]]) for way in ("raw", "service")}
        sys_ms = {way: median([c[1] for c in case.cpu[way]]) for way in ("raw", "service")}
        thread = extra_cpu - fixed
        text += (
            f"\nservice CPU - raw CPU = {extra_cpu:.1f} ms = the fixed cost ({fixed:.1f} ms) "
            f"{'+' if thread >= 0 else '-'} {abs(thread):.1f} ms from running the pipeline in the backend's "
            f"worker thread instead of the caller's (minor page faults {faults['service']:.0f} vs "
            f"{faults['raw']:.0f}, sys {sys_ms['service']:.1f} vs {sys_ms['raw']:.1f} ms per run)"
        )
    checks[f"[{name}] service picture == raw picture (same seed)"] = same
    return text, checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="interleaved rounds (after 1 warm-up round)")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per picture")
    ap.add_argument(
        "--sizes", default="64,128", help="square sizes in pixels, comma-separated (multiples of 8)"
    )
    ap.add_argument(
        "--fixed-repeats", type=int, default=100, help="repeats of the fixed-cost pieces per size (0 = skip)"
    )
    ap.add_argument("--skip-real-sizes", action="store_true", help="skip the PNG cost at 512 and 1024")
    ap.add_argument(
        "--tmp-dir", default=None, help="where the temporary data folder goes (its disk's fsync counts)"
    )
    add_smoke(ap)
    args = ap.parse_args()
    if args.smoke:
        args.repeats, args.steps, args.sizes, args.fixed_repeats, args.skip_real_sizes = 1, 2, "64", 2, True
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    pin_torch_threads()
    import torch
    import yaml
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    print(f"start: {load_note()}", flush=True)
    in_thread: list[int] = []
    worker = threading.Thread(target=lambda: in_thread.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    print(
        f"torch threads: {torch.get_num_threads()} (main), {in_thread[0]} (a new thread, like the worker's)"
    )

    from studio.config import Settings
    from studio.service import Studio
    from tests.helpers.tiny_chat import build_tiny_sd_pipeline

    tmp = Path(tempfile.mkdtemp(prefix="studio-image-bench-", dir=args.tmp_dir))
    studio = None
    png_rows: list[list[object]] = []
    try:
        started = time.perf_counter()
        build_tiny_sd_pipeline(tmp / "tiny-sd")
        print(f"tiny SD pipeline built in {time.perf_counter() - started:.1f} s")
        spec = {"id": MODEL_ID, "tabs": ["image"], "backend": "diffusers", "source": str(tmp / "tiny-sd")}
        models_file = tmp / "models.yaml"
        models_file.write_text(yaml.safe_dump({"models": [spec]}), encoding="utf-8")
        data = tmp / "data"
        studio = Studio.from_settings(Settings.from_env(models_file=models_file, data_dir=data))
        print(f"loading {MODEL_ID}: {studio.manager.preload(MODEL_ID):.2f} s")
        scratch = studio.settings.media_dir / "bench-pieces"
        scratch.mkdir(parents=True, exist_ok=True)
        print(f"data folder {data} ({fs_type(data)})", flush=True)

        cases = [Case(size) for size in sizes]
        # Pinned: never evicted, and no device turn held, so the service's runs line up for theirs. The raw
        # calls run the pipeline directly (nothing else runs in this process meanwhile).
        with studio.manager.pin(MODEL_ID) as backend:
            for case in cases:  # warm-up round, not counted
                run_round(studio, backend, Case(case.size), args.steps, "raw")
            for i in range(args.repeats):
                first = "raw" if i % 2 == 0 else "service"
                for case in cases:
                    run_round(studio, backend, case, args.steps, first)
                done = ", ".join(
                    f"{c.size}px raw {c.raw[-1]:.0f} / service {c.service[-1]:.0f} ms" for c in cases
                )
                print(f"  round {i + 1}/{args.repeats}: {done}", flush=True)
            if args.fixed_repeats:
                for case in cases:
                    measure_fixed(studio, backend, case, args.steps, args.fixed_repeats, scratch)
            if not args.skip_real_sizes and cases and cases[-1].picture is not None:
                png_rows = real_size_png(cases[-1].picture, scratch)
    finally:
        if studio is not None:
            studio.close()

    checks: dict[str, bool] = {}
    for case in cases:
        text, case_checks = report(case, args.steps)
        print(text)
        checks.update(case_checks)
    if png_rows:
        print()
        title = "== PNG cost at real models' sizes (medians of 5) =="
        headers = ["size, picture", "save_png ms", "encode ms (level 6)", "KB", "encode ms (level 1)", "KB"]
        print(table(headers, png_rows, title))
        print("save_png writes compress_level 1; the level-6 column is what Pillow's default would cost")
    print(LEGEND)
    print(f"\nend: {load_note()}")
    print_targets(checks)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
