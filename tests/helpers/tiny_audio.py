"""Tiny random-weight audio checkpoints built in code, for tests and benchmarks (nothing is downloaded).

Owns: `build_tiny_vits(folder)` (a VITS model in the MMS-TTS layout with a character VitsTokenizer, what
`facebook/mms-tts-eng` is), `build_tiny_musicgen(folder)` (a MusicGen model with a tiny T5 text encoder,
a Unigram T5 tokenizer trained with the `tokenizers` library and a tiny EnCodec whose frame rate is low so a
few seconds of music take few steps; `melody=True` makes a MusicGen-Melody one), and, in
tiny_speech, tiny Bark and SpeechT5 checkpoints. All are saved with `save_pretrained` and load back
through the same `from_pretrained` path a user's Hub model takes. Random weights make noise: assert
structure, not sound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_LETTERS = list("abcdefghijklmnopqrstuvwxyz '.,!?-")

_MUSIC_CORPUS = [
    "an upbeat electronic dance track with a strong bass line",
    "calm piano melody with soft strings in the background",
    "lofi hip hop beat to relax and study to",
    "epic orchestral music with drums and brass",
    "a happy rock song with electric guitars",
]


def build_tiny_vits(
    folder: str | Path, *, seed: int = 0, sampling_rate: int = 16_000, hidden_size: int = 16, layers: int = 1
) -> Path:
    """Save a tiny VITS (MMS-TTS layout) + character tokenizer into `folder`; 16 kHz mono output.

    `hidden_size` and `layers` grow it (benchmarks use a larger one, so the model's own work is measurable
    next to the service's fixed costs); the defaults are the fast test size.
    """
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1} | {ch: i + 2 for i, ch in enumerate(_LETTERS)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = VitsTokenizer(
        vocab_file=str(folder / "vocab.json"), phonemize=False, add_blank=True, normalize=True
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = VitsConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        ffn_dim=2 * hidden_size,
        window_size=2,
        flow_size=8,
        spectrogram_bins=9,
        upsample_initial_channel=hidden_size,
        upsample_rates=[8, 8],
        upsample_kernel_sizes=[16, 16],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=1,
        sampling_rate=sampling_rate,
    )
    VitsModel(config).save_pretrained(folder)
    return folder


def _write_t5_tokenizer(folder: Path) -> Any:
    """A T5TokenizerFast from a Unigram model trained on a few prompts (no sentencepiece needed)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=120,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"),
    )
    tok.train_from_iterator(_MUSIC_CORPUS, trainer)
    t5_tokenizer: Any = getattr(transformers, "T5TokenizerFast")  # noqa: B009 - present, but not in the stubs
    fast = t5_tokenizer(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0
    )
    fast.save_pretrained(folder)
    return fast


def build_tiny_musicgen(
    folder: str | Path,
    *,
    seed: int = 0,
    sampling_rate: int = 8_000,
    max_positions: int = 64,
    hidden_size: int = 16,
    layers: int = 2,
    melody: bool = False,
) -> Path:
    """Save a tiny random-weight MusicGen (text encoder, EnCodec, decoder) + tokenizer into `folder`.

    EnCodec downsamples by 10 x 10, so 8 kHz audio is 80 frames a second, and the decoder has
    `max_positions` positions: its window is under a second, so continuation is exercised in a short test.
    `hidden_size` and `layers` size the decoder (benchmarks use a larger one). `melody=True` builds a
    MusicGen-Melody model (chroma conditioning, 32 chroma frames of 256 samples) with the extractor settings
    in `preprocessor_config.json`, written as data because transformers' melody extractor needs torchaudio.
    """
    import torch
    import transformers
    from transformers import EncodecConfig, EncodecFeatureExtractor, MusicgenProcessor, T5Config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _write_t5_tokenizer(folder)
    torch.manual_seed(seed)
    codebooks = 2
    text_config: Any = T5Config(
        vocab_size=len(tokenizer),
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    audio_config = EncodecConfig(
        sampling_rate=sampling_rate,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[10, 10],
        codebook_size=64,
        codebook_dim=16,
        # quantizers = 1000 * bandwidth // (80 frames/s * 6 bits): 1.0 kbps gives 2, the decoder codebooks.
        target_bandwidths=[1.0],
        use_causal_conv=True,
        normalize=False,
        compress=2,
        num_lstm_layers=1,
    )
    prefix = "MusicgenMelody" if melody else "Musicgen"
    decoder_config = getattr(transformers, f"{prefix}DecoderConfig")(
        vocab_size=64,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        ffn_dim=2 * hidden_size,
        max_position_embeddings=max_positions,
        num_codebooks=codebooks,
        pad_token_id=64,
        bos_token_id=64,
        audio_channels=1,
        # The default 0.02 leaves a random decoder deaf to its conditioning (the sinusoidal positions dominate
        # every logit); the melody test needs the chroma prefix to steer what is sampled.
        **({"initializer_factor": 0.5} if melody else {}),
    )
    parts = {
        "text_encoder": text_config.to_dict(),
        "audio_encoder": audio_config.to_dict(),
        "decoder": decoder_config.to_dict(),
    }
    config = getattr(transformers, f"{prefix}Config")(**parts, **({"chroma_length": 32} if melody else {}))
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    with torch.no_grad():  # EnCodec's codebooks start as zeros (k-means fills them in training): every code
        for name, buffer in model.audio_encoder.named_buffers():  # would decode to the same sound
            if name.endswith("codebook.embed") or name.endswith("codebook.embed_avg"):
                buffer.copy_(torch.randn_like(buffer))
    model.generation_config.decoder_start_token_id = 64
    model.generation_config.pad_token_id = 64
    model.generation_config.do_sample = True
    model.generation_config.max_length = max_positions
    model.save_pretrained(folder)
    if melody:
        extractor = {
            "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
            "processor_class": "MusicgenMelodyProcessor",
            "feature_size": 12,
            "num_chroma": 12,
            "sampling_rate": sampling_rate,
            "n_fft": 1024,
            "hop_length": 256,
            "chunk_length": 30,
            "padding_value": 0.0,
            "return_attention_mask": True,
            "stem_indices": [3, 2],
        }
        (folder / "preprocessor_config.json").write_text(json.dumps(extractor, indent=1), encoding="utf-8")
        return folder
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(sampling_rate=sampling_rate), tokenizer=tokenizer
    )
    processor.save_pretrained(folder)
    return folder
