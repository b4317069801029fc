"""The Audio tab's speed: the bundled voice's real-time factor, and what the service adds to a raw model call.

1. Real-time factor (RTF = seconds of compute / seconds of audio; below 1 is faster than real time) of the
   bundled hibari "heart" voice on this CPU, one onnxruntime thread, for a short and a paragraph-long text:
   raw `Hibari(...)(text, seed=...)` and the same text through `Studio.speech` (pieces, progress, WAV +
   waveform PNG + the generation row).
2. Service vs raw model call, same loaded objects (kept loaded with `studio.manager.pin`, which holds no
   device turn, so the service lines up as usual; the raw call runs the model directly), same inputs and
   seed, interleaved rounds (the order alternates), median of per-round ratios raw/service (>= 0.97 wanted):
     hibari   raw: tts(text, seed)                          service: list(studio.speech(...))
     vits     raw: backend.pipe(text) after manual_seed     service: list(studio.speech(...))
     musicgen raw: model.generate(..., max_new_tokens=N)    service: list(studio.music(...))   (one window)
   each on two random-weight sizes built by tests.helpers.tiny_audio: the tests' size (a few ms a clip, so the
   service's fixed cost, WAV and PNG writes with fsync and the row, dominates) and a larger "bench" size
   whose model does about as much work per clip as a small real model on a fast machine. The fixed cost
   is also timed alone.

    .venv/bin/python benchmarks/audio.py                 # about a minute
    .venv/bin/python benchmarks/audio.py --rounds 5
    .venv/bin/python benchmarks/audio.py --smoke         # the tests' sizes only, 1 round
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import add_smoke, load_note, median, pin_torch_threads, print_targets, table

SHORT = "Hello there. The studio speaks offline on this computer."
PARAGRAPH = (
    "Speech and music complete the studio's modalities. Every clip is stored with its settings, so it can be "
    "rated, reused and exported later. The bundled voice needs no download: its weights come with the "
    "package, and it runs on one processor core faster than real time. Longer texts are split at sentence "
    "boundaries and spoken piece by piece, with progress shown as each piece is done."
)
TARGET_RATIO = 0.97


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(
    raw: Callable[[], Any], service: Callable[[], Any], rounds: int
) -> tuple[float, float, float]:
    """(median raw s, median service s, median of per-round raw/service ratios), after one warm-up each."""
    raw()
    service()
    raws, services, ratios = [], [], []
    for i in range(rounds):
        if i % 2:
            s, r = timed(service), timed(raw)
        else:
            r, s = timed(raw), timed(service)
        raws.append(r)
        services.append(s)
        ratios.append(r / s)
    return median(raws), median(services), median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9)
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds = 1
    pin_torch_threads()
    import hibari
    import torch

    from studio import Settings
    from studio.formats import wav as wav_format
    from studio.service import Studio
    from tests.helpers.tiny_audio import build_tiny_musicgen, build_tiny_vits

    print(load_note())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {"vits": build_tiny_vits(root / "vits"), "musicgen": build_tiny_musicgen(root / "musicgen")}
        if not args.smoke:  # the larger "bench" sizes
            folders["vits-bench"] = build_tiny_vits(root / "vits-bench", hidden_size=192, layers=6)
            folders["musicgen-bench"] = build_tiny_musicgen(
                root / "musicgen-bench", hidden_size=256, layers=6, max_positions=160
            )
        lines = [
            "models:",
            "  - {id: heart, tabs: [speech], backend: hibari-tts,"
            " source: 'pip:hibari-tts==0.2.1#hibari/assets/hibari.onnx'}",
        ]
        for name, folder in folders.items():
            kind = "musicgen" if name.startswith("musicgen") else "transformers-tts"
            tab = "music" if name.startswith("musicgen") else "speech"
            lines.append(f"  - {{id: {name}, tabs: [{tab}], backend: {kind}, source: '{folder}'}}")
        (root / "models.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        studio = Studio.from_settings(
            Settings.from_env(models_file=root / "models.yaml", data_dir=root / "data"), max_loaded=5
        )
        try:
            checks = run(studio, args.rounds, hibari, torch, wav_format, sorted(folders), args.smoke)
        finally:
            studio.close()
    print_targets(checks)


def run(
    studio: Any, rounds: int, hibari: Any, torch: Any, audio: Any, built: list[str], smoke: bool = False
) -> dict[str, bool | None]:
    def service(tab: str, model: str, text: str, params: dict[str, Any]) -> Callable[[], Any]:
        def go() -> Any:
            jobs = studio.speech if tab == "speech" else studio.music
            key = "text" if tab == "speech" else "prompt"
            final = list(jobs(model_id=model, params=params, **{key: text}))[-1]
            assert final.status == "ok", final.error
            return final

        return go

    rtf_rows, ratio_rows = [], []
    checks: dict[str, bool | None] = {}
    with studio.manager.pin("heart") as backend:  # loaded, no turn held: the service lines up for its own
        tts = backend.tts
        for name, text in (("short", SHORT), ("paragraph", PARAGRAPH)):
            seconds = len(tts(text, seed=1)) / tts.sample_rate

            def raw(text: str = text) -> Any:
                return tts(text, seed=1)

            r, s, ratio = interleaved(raw, service("speech", "heart", text, {"seed": 1}), rounds)
            rtf_rows.append([f"hibari heart, {name}", seconds, r / seconds, s / seconds, seconds / r])
            ratio_rows.append([f"hibari heart, {name} ({seconds:.1f} s of speech)", r * 1e3, s * 1e3, ratio])
            checks[f"bundled voice faster than real time ({name}: RTF {s / seconds:.3f} < 1)"] = s < seconds
            checks[f"hibari service/raw >= {TARGET_RATIO} ({name}: {ratio:.3f})"] = ratio >= TARGET_RATIO

    for name, text in (("vits", "hello world, this is a tiny voice."), ("vits-bench", PARAGRAPH[:290])):
        if name not in built:
            continue
        with studio.manager.pin(name) as backend:
            pipe = backend.pipe

            def raw_vits(pipe: Any = pipe, text: str = text) -> Any:
                torch.manual_seed(1)
                return pipe(text)["audio"]

            r, s, ratio = interleaved(raw_vits, service("speech", name, text, {"seed": 1}), rounds)
        ratio_rows.append([f"VITS {name} (random weights)", r * 1e3, s * 1e3, ratio])
        checks[f"{name} service/raw >= {TARGET_RATIO} ({ratio:.3f})"] = ratio >= TARGET_RATIO

    for name in ("musicgen", "musicgen-bench"):
        if name not in built:
            continue
        with studio.manager.pin(name) as backend:
            model, tokenizer = backend.model, backend.tokenizer
            frames = backend.window_frames  # one window: the raw call is a single generate()
            duration = frames / backend.frame_rate
            codebooks = model.decoder.num_codebooks

            def raw_music(
                model: Any = model,
                tokenizer: Any = tokenizer,
                frames: int = frames,
                codebooks: int = codebooks,
            ) -> Any:
                torch.manual_seed(1)
                inputs = tokenizer(["calm piano"], return_tensors="pt")
                with torch.inference_mode():
                    return model.generate(
                        **inputs,
                        do_sample=True,
                        guidance_scale=3.0,
                        top_k=250,
                        max_new_tokens=frames + codebooks - 1,
                    )

            params = {"seed": 1, "duration": duration, "guidance": 3.0, "top_k": 250}
            r, s, ratio = interleaved(raw_music, service("music", name, "calm piano", params), rounds)
        ratio_rows.append([f"MusicGen {name}, one window ({frames} frames)", r * 1e3, s * 1e3, ratio])
        checks[f"{name} service/raw >= {TARGET_RATIO} ({ratio:.3f})"] = ratio >= TARGET_RATIO

    # What the service adds per clip, alone: the WAV (fsync), the waveform picture, the row's two writes.
    import numpy as np

    from studio import storage
    from studio.backends import AudioOutput

    folder = studio.settings.media_dir / "bench"
    fixed = []
    uid = studio.user_id(None)

    def begun() -> Any:  # the row runs.py begins before the model runs (a short commit of its own)
        row = storage.Generation(
            user_id=uid,
            tab="speech",
            model_id="heart",
            prompt="x",
            params={"seed": 1, "melody": False},
            seed=1,
        )
        studio.begin_row(row)
        return row

    for seconds in (5,) if smoke else (5, 25):
        clip = np.random.default_rng(0).uniform(-0.5, 0.5, seconds * 24_000).astype(np.float32)
        wav = median(
            [timed(lambda c=clip: audio.save_wav(c, 24_000, folder / "x.wav")) for _ in range(rounds * 3)]
        )
        png = median(
            [timed(lambda c=clip: audio.waveform_png(c, folder / "x.png")) for _ in range(rounds * 3)]
        )
        output = AudioOutput(audio=clip, sample_rate=24_000, seed=1)
        begin, save = [], []
        for _ in range(rounds * 3):
            started = time.perf_counter()
            row = begun()
            begin.append(time.perf_counter() - started)
            save.append(timed(lambda o=output, r=row: studio._save_clip(r, o)))  # what the run's save does
        fixed.append(
            f"{seconds} s: WAV write {wav * 1e3:.2f} ms, waveform PNG {png * 1e3:.2f} ms, the row begun "
            f"{median(begin) * 1e3:.2f} ms, the save step (row finished + WAV in a worker + PNG) "
            f"{median(save) * 1e3:.2f} ms"
        )

    print(table(["voice", "audio s", "RTF raw", "RTF service", "x real time (raw)"], rtf_rows,
                "\n== bundled voice, real-time factor (1 onnxruntime thread) =="))  # fmt: skip
    print(table(["model", "raw ms", "service ms", "raw/service"], ratio_rows,
                f"\n== service vs raw call ({rounds} interleaved rounds, medians) =="))  # fmt: skip
    print("\nfixed cost per clip at 24 kHz: " + "; ".join(fixed))
    return checks


if __name__ == "__main__":
    main()
