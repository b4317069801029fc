"""A tiny random-weight GGUF chat model written in code for the llama-cpp backend's tests (no download).

Owns: `build_tiny_gguf(path)`, the tiny Llama checkpoint of `tiny_chat.py` (hidden 64, 2 layers, byte-level
BPE, ChatML template) written as a llama-architecture GGUF file with the `gguf` package: its hyperparameters,
its tokenizer (tokens, types, merges, special ids), the chat template in the metadata, and its weights in
float32 under llama.cpp's tensor names, with the query/key rows permuted the way llama.cpp's converter does,
so transformers' GGUF reader (which undoes that permutation) sees the same model.
Ignores: quantisation (float32 is enough for a 2-layer model) and any other architecture.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tests.helpers.tiny_chat import CHATML_TEMPLATE, build_tiny_chat_model


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's rotary layout for q/k rows (convert_hf_to_gguf.py's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_tiny_gguf(path: str | Path, *, context: int = 256, seed: int = 0) -> Path:
    """Write the tiny chat model as one GGUF file at `path` (its folder is created) and return the path."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_chat_model(Path(tmp) / "hf", context=context, seed=seed)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = model.config
    vocab: dict[str, int] = spec["model"]["vocab"]
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    specials = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-chat")
    writer.add_context_length(context)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]) if cfg.rope_parameters else 10000.0)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.o_proj": "attn_output",
        "self_attn.v_proj": "attn_v",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        pre = f"model.layers.{i}."
        q, k = state[pre + "self_attn.q_proj.weight"], state[pre + "self_attn.k_proj.weight"]
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(q, cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute(k, cfg.num_key_value_heads))
        for hf, ours in names.items():
            writer.add_tensor(f"blk.{i}.{ours}.weight", state[pre + hf + ".weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
