"""Backend `transformers-chat`: causal language models run in-process with transformers.

Owns: loading (Hub id, local folder, or a GGUF file converted once to safetensors in the model cache),
serving a trained variant on its loaded base (its LoRA adapter attached to the base's model, switched
per request: backends/adapters.py), the weights folder training reads (`training_weights`), building the
chat prompt with the tokenizer's chat template, dropping the oldest turns when the conversation outgrows
the context, streaming tokens, stopping between tokens, and beam search.
Ignores: storage, validation of user input (the service did it) and which tab asked.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.backends import (
    Backend,
    BackendError,
    Event,
    Notice,
    Request,
    TextDelta,
    Usage,
    register,
    release_accelerator_memory,
)
from studio.backends.adapters import SharedAdapters
from studio.backends.chat_prompt import ChatPrompting
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import ChatParams
from studio.backends.prefix_cache import PrefixCache
from studio.config import ModelSpec

log = logging.getLogger(__name__)
MB = 1024**2


class TransformersChatOptions(BaseModel):
    """models.yaml `options:` of a transformers-chat model."""

    model_config = ConfigDict(extra="forbid")

    # Keep conversations' KV caches between turns (backends/prefix_cache.py), at most this many MB in all
    # (counted in the memory budget as soon as the model loads).
    prefix_cache: bool = True
    prefix_cache_mb: int = Field(default=256, ge=1, le=1_048_576)
    # int8: dynamic int8 linear layers on the CPU (torch.ao quantize_dynamic), about 2x faster decoding with
    # slightly different text (benchmarks/README.md has its quality figures).
    quantize: Literal["int8"] | None = None


@register
class TransformersChat(ChatPrompting, Backend):
    kind = "transformers-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    Options = TransformersChatOptions

    model: Any = None
    tokenizer: Any = None
    adapters: SharedAdapters | None = None  # the adapters on this model (shared with the base's variants)
    _base: TransformersChat | None = None  # a variant: the loaded backend of its base
    _adapter: str | None = None  # a variant: its adapter's name (its model id)
    _adapter_bytes = 0
    _own_base: TransformersChat | None = None  # a variant whose base runs on another engine: its own copy
    prefix: PrefixCache | None = None  # conversations' KV caches kept between turns (None: off)
    device: str = "cpu"

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> list[str]:
        problems = super().check_spec(spec)
        if spec.options.get("quantize") == "int8" and spec.device != "cpu":
            problems.append("field 'options': quantize: int8 runs on the CPU only; set device: cpu")
        return problems

    # -- loading -----------------------------------------------------------------------------------
    def share_base(self, base: Backend) -> None:
        if base.spec.options.get("quantize"):
            raise BackendError(f"the variant {self.spec.id!r} cannot run on a quantized base")
        if isinstance(base, TransformersChat) and base.model is not None:
            self._base = base
            return
        if base.remote or base.spec.options.get("quantize"):
            raise BackendError(f"the variant {self.spec.id!r} needs its base loaded by {self.kind}")
        # The base runs on another engine (llama.cpp, for a GGUF): LoRA needs transformers, so the variant
        # loads a transformers copy of the base weights of its own (and counts it in its memory).
        spec = base.spec.model_copy(update={"backend": self.kind, "options": {}})
        self._own_base = self._base = TransformersChat(spec, base.context)

    def training_weights(self) -> Path | str:
        """The folder (or Hub id) training loads the base from: a GGUF file is converted once first."""
        where = weights_path(self.spec, self.context)
        if isinstance(where, Path) and where.suffix == ".gguf":
            where = self._converted_gguf(where)
        return where

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._base is not None:  # a variant: the base's weights plus its adapter
            base = self._base
            if self._own_base is not None and base.model is None:
                base.load()
            assert base.adapters is not None
            folder = weights_path(self.spec, self.context)
            if isinstance(folder, str) or not folder.is_dir():
                raise BackendError(f"the adapter folder of {self.spec.id!r} ({folder}) is missing")
            self._adapter_bytes = base.adapters.attach(self.spec.id, folder)
            self.model, self.tokenizer, self.device = base.model, base.tokenizer, base.device
            self.adapters, self._adapter = base.adapters, self.spec.id
            return
        where = self.training_weights()
        device, dtype = device_and_dtype(self.spec, half_on_cpu=True)  # transformers runs float16 on the CPU
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where)
            model: Any = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
            self.model = model.to(device)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "transformers model folder") from None
        if self.tokenizer.chat_template is None:
            raise BackendError(f"model {self.spec.id!r} has no chat template; it is not a chat model")
        self.model.eval()
        self.device = device
        options = TransformersChatOptions.model_validate(self.spec.options)
        if options.quantize == "int8":
            self.model = quantized_int8(self.model)
        self.adapters = SharedAdapters(self.model)
        if options.prefix_cache:
            self.prefix = PrefixCache(options.prefix_cache_mb * MB)

    def _converted_gguf(self, gguf: Path) -> Path:
        """Dequantise a GGUF file once and keep a safetensors copy: later loads take a second, not 20."""
        out = self.context.model_cache / self.spec.id / "converted"
        if (out / "config.json").exists():
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to safetensors once (about 20 s on 2 cores)", gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The tensors are already dequantised to float32; only the GGUF quantizer flag blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = out.with_name("converted.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)
        return out

    def unload(self) -> None:
        if self._adapter is not None and self.adapters is not None:
            self.adapters.detach(self._adapter)  # the base stays loaded: only the adapter goes
        if self._own_base is not None:
            self._own_base.unload()
        if self.prefix is not None:
            self.prefix.clear()
        self.prefix = None
        self.model = None
        self.tokenizer = None
        self.adapters = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        """The weights this model adds: a variant's adapter only (its base is counted once, as itself)."""
        if self._own_base is not None:
            return self._adapter_bytes + self._own_base.memory_bytes()
        if self._base is not None:
            return self._adapter_bytes
        reserved = self.prefix.max_bytes if self.prefix is not None else 0  # the kept KV caches' bound
        return parameter_bytes(self.model) + packed_bytes(self.model) + reserved

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: Request) -> Generator[Event, None, None]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if self.model is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, ChatParams)
        inputs, notices = self.fit_to_context(request)
        for notice in notices:
            yield Notice(notice)
        inputs = inputs.to(self.device)
        prompt_len = int(inputs["input_ids"].shape[1])

        stop = request.stop
        # Set when our consumer goes away (closed tab, error) without the user pressing Stop.
        abandoned = threading.Event()

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                halt = stop.is_set() or abandoned.is_set()
                return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "num_beams": params.num_beams,
            "repetition_penalty": params.repetition_penalty,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvent()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
            kwargs.update(min_p=params.min_p or None, typical_p=params.typical_p)
        else:  # keep greedy runs free of the model's sampling defaults (and their warnings)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.prompt_lookup_num_tokens:  # drafts copied from the prompt, checked by the model in one pass
            kwargs["prompt_lookup_num_tokens"] = params.prompt_lookup_num_tokens
        if params.do_sample and params.seed is not None:  # greedy and beam search do not draw
            torch.manual_seed(params.seed)

        keep = None
        if self.prefix is not None and params.num_beams == 1 and not params.prompt_lookup_num_tokens:
            keep = self._reuse_prefix(kwargs)
        assert self.adapters is not None
        with self.adapters.active(self._adapter):  # this variant's adapter on; for a base, every one off
            if params.num_beams > 1:
                # transformers cannot stream beam search: the best beam is only known at the end.
                with torch.inference_mode():
                    out = self.model.generate(**kwargs)
                new_ids = out[0][prompt_len:]
                yield TextDelta(self.tokenizer.decode(new_ids, skip_special_tokens=True))
                yield Usage(prompt_len, int(new_ids.shape[0]))
                return
            yield from self._stream(kwargs, prompt_len, abandoned, keep)

    def _reuse_prefix(self, kwargs: dict[str, Any]) -> Any:
        """Start from the KV cache of the longest kept prefix of this prompt (a fresh cache when none);
        returns what to call with the finished sequence so its cache is kept for the next turn."""
        from transformers import DynamicCache

        assert self.prefix is not None
        prefix = self.prefix
        ids = kwargs["input_ids"][0].tolist()
        cache, _reused = prefix.take(self._adapter, ids)
        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        kwargs["cache"] = cache  # transformers 5.24 names it `cache` (`past_key_values` is deprecated)
        scope = self._adapter

        def keep(sequence: Any) -> None:
            held = cache.get_seq_length()
            prefix.put(scope, sequence[0][:held].tolist(), cache)

        return keep

    def _stream(
        self, kwargs: dict[str, Any], prompt_len: int, abandoned: threading.Event, keep: Any = None
    ) -> Generator[Event, None, None]:
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        counter = _TokenCounter()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    out = self.model.generate(**kwargs, streamer=streamer)
                counter.n = int(out.shape[1]) - prompt_len
                if keep is not None:
                    keep(out)
            except BaseException as exc:  # surfaced in the consumer below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name=f"generate-{self.spec.id}", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield TextDelta(piece)
        finally:
            # Reached on normal end, on error, and when the consumer closes us (Stop, closed tab).
            abandoned.set()
            worker.join()
        if failure:
            raise BackendError(f"generation failed: {failure[0]}") from failure[0]
        yield Usage(prompt_len, counter.n)


class _TokenCounter:
    n = 0


def quantized_int8(model: Any) -> Any:
    """The model with dynamic int8 linear layers (weights int8, activations quantised per batch): about 2x
    faster decoding on the CPU at this size, where float32 decoding is bound by memory bandwidth."""
    import torch

    model = model.float()  # quantize_dynamic takes float32 weights
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def packed_bytes(model: Any) -> int:
    """Bytes of dynamically quantised linear weights, which `parameters()` does not list."""
    if model is None:
        return 0
    total = 0
    for module in model.modules():
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            weight = module.weight()
            total += weight.numel() * weight.element_size() + weight.shape[0] * 8  # int8 + per-row scales
    return total
