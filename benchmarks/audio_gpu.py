"""GPU real-time factor of MusicGen-small-sized random weights (decoder 1024 x 24 layers, 4 codebooks of 2048,
EnCodec 32 kHz at 50 frames a second, a T5-base-sized text encoder), built in memory: nothing is downloaded.

RTF = seconds of compute / seconds of audio, for one window of 10 s and of 30 s (MusicGen's window), batch 1,
sampling with top-k 250 and classifier-free guidance 3 (as `studio` runs it), float16 and float32, median of a
few runs after a warm-up. Random weights make noise: only the speed is meaningful.

    .venv/bin/python benchmarks/audio_gpu.py            # needs a CUDA GPU
    .venv/bin/python benchmarks/audio_gpu.py --seconds 10 --repeats 2
    .venv/bin/python benchmarks/audio_gpu.py --smoke    # a tiny config, 0.2 s, on the GPU or else the CPU
"""

from __future__ import annotations

import argparse
import time

from _common import add_smoke, median, table

# MusicGen small's sizes, and a tiny config with the same shape for --smoke.
SMALL = {"text": 768, "ffn": 3072, "kv": 64, "layers": 12, "heads": 12, "filters": 64, "codec": 128}
SMALL |= {"hidden": 1024, "decoder_layers": 24, "decoder_heads": 16, "codebook": 2048}
TINY = {"text": 32, "ffn": 64, "kv": 16, "layers": 2, "heads": 2, "filters": 8, "codec": 16}
TINY |= {"hidden": 32, "decoder_layers": 2, "decoder_heads": 2, "codebook": 64}


def build(dtype: object, device: str = "cuda", size: dict[str, int] = SMALL) -> object:
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    text = T5Config(
        vocab_size=32128,
        d_model=size["text"],
        d_ff=size["ffn"],
        d_kv=size["kv"],
        num_layers=size["layers"],
        num_heads=size["heads"],
    )
    codec = EncodecConfig(
        sampling_rate=32_000,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        codebook_size=size["codebook"],
        num_filters=size["filters"],
        hidden_size=size["codec"],
        num_lstm_layers=2,
        normalize=False,
        use_causal_conv=False,
    )
    pad = size["codebook"]
    decoder = MusicgenDecoderConfig(
        vocab_size=size["codebook"],
        hidden_size=size["hidden"],
        num_hidden_layers=size["decoder_layers"],
        num_attention_heads=size["decoder_heads"],
        ffn_dim=size["hidden"] * 4,
        max_position_embeddings=2048,
        num_codebooks=4,
        pad_token_id=pad,
        bos_token_id=pad,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()
    )
    model = MusicgenForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = pad
    model.generation_config.pad_token_id = pad
    return model.to(device, dtype).eval()  # type: ignore[arg-type]


def timed_generate(model: object, text: dict, frames: int) -> float:
    import torch

    cuda = text["input_ids"].is_cuda
    torch.manual_seed(0)
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(  # type: ignore[attr-defined]
            **text, do_sample=True, top_k=250, guidance_scale=3.0, max_new_tokens=frames + 3
        )
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--repeats", type=int, default=3)
    add_smoke(parser)
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit(
            "no CUDA GPU: this benchmark only runs on a GPU (--smoke runs a tiny config on the CPU)"
        )
    device = "cuda" if cuda else "cpu"
    size = TINY if args.smoke else SMALL
    if args.smoke:
        args.seconds, args.repeats = [0.2], 1
        if not cuda:
            print("skipped: no CUDA (the GPU figures); --smoke runs the tiny config on the CPU instead")
    print(torch.cuda.get_device_name(0) if cuda else "CPU", "torch", torch.__version__)
    rows = []
    dtypes = (torch.float16, torch.float32) if cuda else (torch.float32,)
    for dtype in dtypes:
        model = build(dtype, device, size)
        params = sum(p.numel() for p in model.parameters()) / 1e6  # type: ignore[attr-defined]
        text = {"input_ids": torch.randint(0, 32128, (1, 12), device=device)}
        text["attention_mask"] = torch.ones_like(text["input_ids"])
        for seconds in args.seconds:
            frames = int(seconds * 50)

            timed_generate(model, text, 10 if args.smoke else 50)  # warm-up
            took = median([timed_generate(model, text, frames) for _ in range(args.repeats)])
            rows.append([f"{str(dtype).removeprefix('torch.')}, {seconds:g} s", params, took, took / seconds])
        del model
        if cuda:
            torch.cuda.empty_cache()
    name = "MusicGen-small-sized" if size is SMALL else "tiny MusicGen (smoke)"
    print(table([name, "M params", "seconds", "RTF"], rows, f"\n== {device}, batch 1 =="))


if __name__ == "__main__":
    main()
