"""Tiny random-weight checkpoints built in code, for tests and benchmarks (nothing is downloaded).

Owns: `build_tiny_chat_model(folder)`, a Llama-style causal LM (hidden 64, 2 layers) with a BPE
tokenizer trained on a few sentences plus the 256-byte alphabet (so any text encodes) and a ChatML
chat template, saved with `save_pretrained` so it loads through the same `from_pretrained` path a
user's Hub model takes. Random weights answer with gibberish: assert structure, not content.
"""

from __future__ import annotations

from pathlib import Path

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
