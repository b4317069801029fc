"""Tiny random-weight checkpoints built in code, for tests and benchmarks (nothing is downloaded).

Owns: `build_tiny_chat_model(folder)`, a Llama-style causal LM (hidden 64, 2 layers) with a BPE
tokenizer trained on a few sentences plus the 256-byte alphabet (so any text encodes) and a ChatML
chat template, saved with `save_pretrained` so it loads through the same `from_pretrained` path a
user's Hub model takes; `build_wide_chat_model`, the same tokenizer with wider layers, a checkpoint of a
chosen size for memory tests. Random weights answer with gibberish: assert structure, not content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Set before torch, transformers, huggingface_hub or gradio are imported (PLATFORM_NOTES): offline Hub
# lookups then fail at once instead of retrying for ~47 s, no telemetry threads start, and torch uses one
# thread (2 threads on 2 shared cores run tiny models 40-70x slower under any other load).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "The capital of France is Paris. The capital of Japan is Tokyo.",
    "Write a function that adds two numbers in Python.",
    "def add(a, b):\n    return a + b",
    "Stories, poems and songs are made with words.",
]


def build_tiny_chat_model(folder: str | Path, *, context: int = 256, seed: int = 0) -> Path:
    """Save a tiny chat model + tokenizer into `folder` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(folder)
    return folder


def build_wide_chat_model(folder: str | Path, tiny_model_dir: str | Path, hidden: int) -> Path:
    """The tiny model's tokenizer (copied from `tiny_model_dir`) with 3 layers `hidden` wide, into `folder`:
    about 200 MB in float32 at hidden 1024, big enough that a leak shows in memory measurements."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    shutil.copytree(tiny_model_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return Path(folder)


# -- image: a tiny Stable Diffusion pipeline and a LoRA for it -------------------------------------------

# CLIP's BPE marks the end of a word with "</w>"; every merge result must be in the vocabulary.
_SD_MERGES = [
    ("a", "t</w>"), ("c", "at</w>"), ("d", "o"), ("do", "g</w>"), ("r", "e"), ("re", "d</w>"),
    ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("o", "n</w>"), ("s", "k"),
    ("sk", "y</w>"),
]  # fmt: skip


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (as in GPT-2 and CLIP)."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    visible += list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in visible]
    extra = 0
    for b in range(256):
        if b not in visible:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_tiny_clip_tokenizer(folder: Path) -> int:
    """A CLIPTokenizer from a hand-written vocab.json + merges.txt; returns the vocabulary size."""
    import json

    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(pair) for pair in _SD_MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in _SD_MERGES) + "\n"
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    # transformers 5 builds the tokenizer from these two files (its constructor takes in-memory vocab/merges).
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    tokenizer.save_pretrained(folder)
    return len(vocab)


def build_tiny_sd_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random-weight StableDiffusionPipeline into `folder` (created) and return it.

    Sized like diffusers' own `get_dummy_components` (UNet and VAE with 32/64 channels, a 5-layer CLIP text
    encoder of width 32); `AutoPipelineForText2Image.from_pretrained(folder)` loads it offline, and 64x64 in
    2 steps takes well under a second on one CPU thread. The VAE downsamples by 2, not 8 as real SD does.
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = _write_tiny_clip_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=vocab_size,
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_lora(folder: str | Path, pipeline_folder: str | Path, *, rank: int = 4, seed: int = 0) -> Path:
    """Save a random LoRA for the UNet of `build_tiny_sd_pipeline(pipeline_folder)` into `folder`.

    LoRA on the attention projections with a non-zero `lora_B` (a trained LoRA's up-projection; a fresh one
    starts at zero and would change nothing), written by `save_lora_weights` as
    `pytorch_lora_weights.safetensors`, so `pipe.load_lora_weights(folder)` accepts it. Needs `peft`.
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet: Any = UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        init_lora_weights="gaussian",
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
    )
    unet.add_adapter(config)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    return folder


def build_tiny_reward_model(
    folder: str | Path, tiny_model_dir: str | Path, *, labels: int = 1, seed: int = 0
) -> Path:
    """A tiny random sequence-classification checkpoint (a "reward model" with `labels` outputs) on the tiny
    chat model's tokenizer and shape, saved into `folder`: what a Hub scorer looks like, offline."""
    import shutil

    import torch
    from transformers import AutoConfig, LlamaForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in Path(tiny_model_dir).iterdir():
        if name.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(name, folder / name.name)
    config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=labels)
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder


def build_tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random CLIPModel with its processor (the hand-written CLIP tokenizer, 32-pixel pictures) saved
    into `folder`: what an image scorer (PickScore-like) looks like, offline."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    vocab = _write_tiny_clip_tokenizer(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=CLIPTokenizer.from_pretrained(folder)).save_pretrained(
        folder
    )
    return folder
