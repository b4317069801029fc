"""Tiny random-weight Bark and SpeechT5 checkpoints built in code, for tests (nothing is downloaded).

Owns: `build_tiny_bark(folder)` (semantic, coarse and fine models, a tiny EnCodec codec, a BERT word-piece
tokenizer and one voice preset, `v2/tiny_speaker`) and `build_tiny_speecht5(folder)` (a SpeechT5 model with a
sentencepiece character tokenizer, a HiFi-GAN vocoder in a sub-folder and two speaker-embedding files).
Both save with `save_pretrained` and load back through the `transformers-tts` backend's real paths.
Ignores: VITS and MusicGen (tests.helpers.tiny_audio). Random weights make noise: assert structure, not sound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_LETTERS = list("abcdefghijklmnopqrstuvwxyz'.,!?")


_SPEECH_CORPUS = [
    "hello world, this is a tiny voice.",
    "the quick brown fox jumps over the lazy dog!",
    "speech and music complete the studio's modalities?",
]


def build_tiny_bark(folder: str | Path, *, seed: int = 0, sampling_rate: int = 8_000) -> Path:
    """Save a tiny random-weight Bark + processor with one voice preset, `v2/tiny_speaker`, into `folder`.

    Token ranges are shrunk to match (semantic vocabulary 20, codebooks of 16 codes) and the semantic model
    stops after 12 tokens, so one piece takes about 0.1 s and yields 0.15 s of audio at `sampling_rate`.
    """
    import numpy as np
    import torch
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkModel,
        BarkProcessor,
        BarkSemanticConfig,
        BertTokenizer,
        EncodecConfig,
        GenerationConfig,
    )
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_LETTERS, *(f"##{c}" for c in _LETTERS[:26])]
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    semantic_vocab, codes, hidden = 20, 16, 16
    text_offset = semantic_vocab + 4  # text ids are shifted past the semantic ids, as in Bark
    text_pad = text_offset + len(tokenizer)
    coarse_pad = semantic_vocab + 2 * codes  # the coarse model reads semantic ids and two codebooks
    small: dict[str, Any] = {"num_layers": 1, "num_heads": 2, "hidden_size": hidden}
    config = BarkConfig(
        semantic_config=BarkSemanticConfig(
            block_size=600, input_vocab_size=text_pad + 2, output_vocab_size=semantic_vocab + 4, **small
        ).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(
            block_size=512, input_vocab_size=coarse_pad + 3, output_vocab_size=coarse_pad + 3, **small
        ).to_dict(),
        fine_acoustics_config=BarkFineConfig(
            block_size=512,
            input_vocab_size=codes + 1,
            output_vocab_size=codes,
            n_codes_total=8,
            n_codes_given=1,
            **small,
        ).to_dict(),
        codec_config=EncodecConfig(
            sampling_rate=sampling_rate,
            hidden_size=16,
            num_filters=4,
            num_residual_layers=1,
            upsampling_ratios=[10, 10],
            codebook_size=codes,
            codebook_dim=16,
            target_bandwidths=[
                2.56
            ],  # 8 quantizers = 2560 bps / (80 frames/s * 4 bits): Bark's 8 fine codebooks
            use_causal_conv=True,
            normalize=False,
            compress=2,
            num_lstm_layers=1,
        ).to_dict(),
    )
    torch.manual_seed(seed)
    model = BarkModel(config)
    with torch.no_grad():  # EnCodec's codebooks start as zeros: every code would decode to the same sound
        for name, buffer in model.codec_model.named_buffers():
            if name.endswith("codebook.embed") or name.endswith("codebook.embed_avg"):
                buffer.copy_(torch.randn_like(buffer))
    generation = BarkGenerationConfig(
        semantic_config={
            "eos_token_id": semantic_vocab,
            "text_encoding_offset": text_offset,
            "text_pad_token": text_pad,
            "semantic_infer_token": text_pad + 1,
            "semantic_vocab_size": semantic_vocab,
            "max_new_tokens": 12,
            "semantic_rate_hz": 40.0,
        },
        coarse_acoustics_config={
            "coarse_semantic_pad_token": coarse_pad,
            "coarse_infer_token": coarse_pad + 1,
            "coarse_rate_hz": 80,
            "max_coarse_history": 120,
            "sliding_window_len": 30,
        },
        fine_acoustics_config={"max_fine_history_length": 256, "max_fine_input_length": 384},
        sample_rate=sampling_rate,
        codebook_size=codes,
    )
    # BarkGenerationConfig.save_pretrained fails in transformers 5.24 (its __init__ skips the base class's, so
    # validate() misses attributes): save the weights with a plain config, then write Bark's nested one as the
    # JSON the Hub's Bark checkpoints carry, which BarkModel.from_pretrained reads back.
    model.generation_config = GenerationConfig()
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(
        json.dumps(generation.to_dict(), indent=1), encoding="utf-8"
    )
    rng = np.random.default_rng(seed)
    preset = {
        "semantic_prompt": rng.integers(0, semantic_vocab, 40),
        "coarse_prompt": rng.integers(0, codes, (2, 60)),
        "fine_prompt": rng.integers(0, codes, (8, 60)),
    }
    (folder / "speaker_embeddings").mkdir(exist_ok=True)
    entry = {}
    for key, array in preset.items():
        np.save(folder / "speaker_embeddings" / f"tiny_speaker_{key}.npy", array.astype(np.int64))
        entry[key] = f"speaker_embeddings/tiny_speaker_{key}.npy"
    paths = {"repo_or_path": str(folder), "v2/tiny_speaker": entry}
    (folder / "speaker_embeddings_path.json").write_text(json.dumps(paths), encoding="utf-8")
    BarkProcessor(tokenizer=tokenizer).save_pretrained(folder)  # the tokenizer; the presets are written above
    return folder


def build_tiny_speecht5(folder: str | Path, *, seed: int = 0, sampling_rate: int = 16_000) -> Path:
    """Save a tiny SpeechT5 + processor into `folder`, its HiFi-GAN vocoder into `folder/vocoder` and two
    speaker embeddings (`speaker_a.npy`, `speaker_b.npy`, 8 numbers each) beside them.

    The stop-token head is biased off, so a piece always runs to SpeechT5's maximum length (20 mel frames
    per text token, 4 per step): output length is fixed by the text, and the speaker embedding shapes it.
    """
    import io

    import numpy as np
    import sentencepiece as spm
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_SPEECH_CORPUS),
        model_writer=model_file,
        vocab_size=40,
        model_type="char",
        character_coverage=1.0,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    (folder / "spm_char.model").write_bytes(model_file.getvalue())
    tokenizer = SpeechT5Tokenizer(str(folder / "spm_char.model"))
    mels = 8
    SpeechT5Processor(
        tokenizer=tokenizer, feature_extractor=SpeechT5FeatureExtractor(num_mel_bins=mels)
    ).save_pretrained(folder)
    torch.manual_seed(seed)
    config = SpeechT5Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        speech_decoder_prenet_units=16,
        speech_decoder_postnet_units=16,
        speech_decoder_postnet_layers=2,
        speech_decoder_postnet_kernel=3,
        num_mel_bins=mels,
        reduction_factor=4,
        speaker_embedding_dim=8,
        max_text_positions=600,
        max_speech_positions=1600,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = SpeechT5ForTextToSpeech(config)
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.bias.fill_(-20.0)
    model.save_pretrained(folder)
    vocoder = SpeechT5HifiGanConfig(
        model_in_dim=mels,
        sampling_rate=sampling_rate,
        upsample_initial_channel=16,
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        initializer_range=0.3,  # at 0.01 a random vocoder is quieter than 16-bit audio's smallest step
    )
    SpeechT5HifiGan(vocoder).save_pretrained(folder / "vocoder")
    for name, speaker_seed in (("a", 1), ("b", 2)):
        vector = np.random.default_rng(speaker_seed).standard_normal(8).astype(np.float32)
        np.save(folder / f"speaker_{name}.npy", vector)
    return folder
