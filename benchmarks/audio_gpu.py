"""GPU real-time factor of MusicGen-small-sized random weights (decoder 1024 x 24 layers, 4 codebooks of 2048,
EnCodec 32 kHz at 50 frames a second, a T5-base-sized text encoder), built in memory: nothing is downloaded.

RTF = seconds of compute / seconds of audio, for one window of 10 s and of 30 s (MusicGen's window), batch 1,
sampling with top-k 250 and classifier-free guidance 3 (as `studio` runs it), float16 and float32, median of a
few runs after a warm-up. Random weights make noise: only the speed is meaningful.

    .venv/bin/python benchmarks/audio_gpu.py            # needs a CUDA GPU
    .venv/bin/python benchmarks/audio_gpu.py --seconds 10 --repeats 2
"""

from __future__ import annotations

import argparse
import time

from _common import median, table


def build(dtype: object) -> object:
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    text = T5Config(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12)
    codec = EncodecConfig(
        sampling_rate=32_000,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        codebook_size=2048,
        num_filters=64,
        hidden_size=128,
        num_lstm_layers=2,
        normalize=False,
        use_causal_conv=False,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        max_position_embeddings=2048,
        num_codebooks=4,
        pad_token_id=2048,
        bos_token_id=2048,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()
    )
    model = MusicgenForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = 2048
    model.generation_config.pad_token_id = 2048
    return model.to("cuda", dtype).eval()  # type: ignore[arg-type]


def timed_generate(model: object, text: dict, frames: int) -> float:
    import torch

    torch.manual_seed(0)
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(  # type: ignore[attr-defined]
            **text, do_sample=True, top_k=250, guidance_scale=3.0, max_new_tokens=frames + 3
        )
    torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark only runs on a GPU")
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    rows = []
    for dtype in (torch.float16, torch.float32):
        model = build(dtype)
        params = sum(p.numel() for p in model.parameters()) / 1e6  # type: ignore[attr-defined]
        text = {"input_ids": torch.randint(0, 32128, (1, 12), device="cuda")}
        text["attention_mask"] = torch.ones_like(text["input_ids"])
        for seconds in args.seconds:
            frames = int(seconds * 50)

            timed_generate(model, text, 50)  # warm-up
            took = median([timed_generate(model, text, frames) for _ in range(args.repeats)])
            rows.append([f"{str(dtype).removeprefix('torch.')}, {seconds:g} s", params, took, took / seconds])
        del model
        torch.cuda.empty_cache()
    print(table(["MusicGen-small-sized", "M params", "seconds", "RTF"], rows, "\n== GPU, batch 1 =="))


if __name__ == "__main__":
    main()
