"""Building a transformers chat model's prompt so that it fits the context.

Owns: `ChatPrompting`, the half of `transformers-chat` that turns a request (system prompt, history, message,
a partial answer to continue) into token ids with the tokenizer's chat template, dropping the oldest turns
when the conversation outgrows the context and, when the request allows it, cutting the message itself,
with notices saying what was left out.
`ContextFitting` is the loop itself, shared with the llama-cpp kind.
Ignores: generation, loading and caches (backends/transformers_chat.py).
"""

from __future__ import annotations

from typing import Any

from studio.backends import BackendError, Message, Request
from studio.backends.params import ChatParams
from studio.config import ModelSpec


class ContextFitting:
    """The in-process chat kinds' way to fit a conversation in the context (transformers-chat, llama-cpp):
    drop the oldest turns, then (when the request allows it) cut the message itself, with notices saying
    what was left out. A kind supplies the encoding and the tokenizer (the three methods below)."""

    spec: ModelSpec

    @property
    def context_length(self) -> int:
        raise NotImplementedError

    def _encode_turns(self, request: Request, history: list[Message], prompt: str) -> tuple[Any, int]:
        """The model's input for these turns, and its length in tokens."""
        raise NotImplementedError

    def _token_ids(self, text: str) -> list[int]:
        """`text`'s tokens, without special tokens."""
        raise NotImplementedError

    def _text_of(self, ids: list[int]) -> str:
        raise NotImplementedError

    def fit_to_context(self, request: Request) -> tuple[Any, list[str]]:
        """Encode the conversation so it fits the context with max_new_tokens: drop the oldest turns, then
        (when the request allows it) cut the message. Returns the input and notices saying what was left
        out."""
        params = request.params
        assert isinstance(params, ChatParams)
        budget = self.context_length - params.max_new_tokens
        history = list(request.history)
        prompt = request.prompt
        dropped = 0
        notices: list[str] = []
        while True:
            encoded, n = self._encode_turns(request, history, prompt)
            if n <= budget:
                if dropped:
                    notices.insert(0, f"{dropped} oldest message(s) were left out to fit the model's context")
                return encoded, notices
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
        ids = self._token_ids(prompt)
        marker = "\n[... the rest of the input was cut to fit the context]"
        keep = len(ids) - overflow - len(self._token_ids(marker)) - 8
        if keep <= 0:
            raise BackendError(
                f"model {self.spec.id!r} cannot fit this request even with its input cut; "
                "lower max_new_tokens"
            )
        return self._text_of(ids[:keep]) + marker, keep, len(ids)


class ChatPrompting(ContextFitting):
    """Mixed into TransformersChat: needs `spec`, a loaded `tokenizer`, and `model` for the context length."""

    spec: ModelSpec
    model: Any
    tokenizer: Any

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

    def _encode_turns(self, request: Request, history: list[Message], prompt: str) -> tuple[Any, int]:
        inputs = self._encode(self._messages(request, history, prompt), request.continue_from is not None)
        return inputs, int(inputs["input_ids"].shape[1])

    def _token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _text_of(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))
