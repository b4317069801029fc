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
from typing import Any

from studio.backends import (
    Backend,
    BackendError,
    Event,
    Message,
    Notice,
    Request,
    TextDelta,
    Usage,
    register,
    release_accelerator_memory,
)
from studio.backends.adapters import SharedAdapters
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import ChatParams

log = logging.getLogger(__name__)


@register
class TransformersChat(Backend):
    kind = "transformers-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams

    model: Any = None
    tokenizer: Any = None
    adapters: SharedAdapters | None = None  # the adapters on this model (shared with the base's variants)
    _base: TransformersChat | None = None  # a variant: the loaded backend of its base
    _adapter: str | None = None  # a variant: its adapter's name (its model id)
    _adapter_bytes = 0
    device: str = "cpu"

    # -- loading -----------------------------------------------------------------------------------
    def share_base(self, base: Backend) -> None:
        if not isinstance(base, TransformersChat) or base.model is None:
            raise BackendError(f"the variant {self.spec.id!r} needs its base loaded by {self.kind}")
        self._base = base

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
        self.adapters = SharedAdapters(self.model)

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
        self.model = None
        self.tokenizer = None
        self.adapters = None
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        """The weights this model adds: a variant's adapter only (its base is counted once, as itself)."""
        if self._base is not None:
            return self._adapter_bytes
        return parameter_bytes(self.model)

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        length: Any = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048)
        return int(length)

    # -- prompting ---------------------------------------------------------------------------------
    def _messages(self, request: Request, history: list[Message], prompt: str) -> list[dict[str, str]]:
        params = request.params
        assert isinstance(params, ChatParams)
        msgs = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
        msgs += [{"role": m.role, "content": m.content} for m in history]
        msgs.append({"role": "user", "content": prompt})
        if request.continue_from is not None:
            msgs.append({"role": "assistant", "content": request.continue_from})
        return msgs

    def _encode(self, msgs: list[dict[str, str]], cont: bool) -> Any:
        return self.tokenizer.apply_chat_template(
            msgs,
            add_generation_prompt=not cont,
            continue_final_message=cont,
            return_tensors="pt",
            return_dict=True,
        )

    def fit_to_context(self, request: Request) -> tuple[Any, list[str]]:
        """Encode the conversation so it fits the context: drop the oldest turns, then (when the request
        allows it) cut the message itself. Returns the inputs and notices saying what was left out."""
        params = request.params
        assert isinstance(params, ChatParams)
        budget = self.context_length - params.max_new_tokens
        history = list(request.history)
        prompt = request.prompt
        dropped = 0
        notices: list[str] = []
        cont = request.continue_from is not None
        while True:
            inputs = self._encode(self._messages(request, history, prompt), cont)
            n = int(inputs["input_ids"].shape[1])
            if n <= budget:
                if dropped:
                    notices.insert(0, f"{dropped} oldest message(s) were left out to fit the model's context")
                return inputs, notices
            if not history and request.truncate_prompt and prompt == request.prompt:
                prompt, kept, total = self._truncated(prompt, n - budget)
                notices.append(
                    f"the input was cut to fit the model's context ({self.context_length} tokens): "
                    f"{kept} of its {total} tokens were kept"
                )
                continue
            if not history:
                raise BackendError(
                    f"the message is too long for model {self.spec.id!r}: {n} tokens plus max_new_tokens="
                    f"{params.max_new_tokens} exceed its context of {self.context_length} tokens; shorten it "
                    "or lower max_new_tokens"
                )
            # Drop a whole exchange (user + assistant) so roles keep alternating.
            drop = 2 if len(history) >= 2 and history[1].role == "assistant" else 1
            history = history[drop:]
            dropped += drop

    def _truncated(self, prompt: str, overflow: int) -> tuple[str, int, int]:
        """Keep the head of an over-long prompt (templates put the instructions first)."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        marker = "\n[... the rest of the input was cut to fit the context]"
        keep = len(ids) - overflow - len(self.tokenizer(marker, add_special_tokens=False)["input_ids"]) - 8
        if keep <= 0:
            raise BackendError(
                f"model {self.spec.id!r} cannot fit this request even with its input cut; "
                "lower max_new_tokens"
            )
        return self.tokenizer.decode(ids[:keep]) + marker, keep, len(ids)

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
        else:  # keep greedy runs free of the model's sampling defaults (and their warnings)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.do_sample and params.seed is not None:  # greedy and beam search do not draw
            torch.manual_seed(params.seed)

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
            yield from self._stream(kwargs, prompt_len, abandoned)

    def _stream(
        self, kwargs: dict[str, Any], prompt_len: int, abandoned: threading.Event
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
