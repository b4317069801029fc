"""Backend `openai-chat`: chat and code through a remote OpenAI-compatible server (vLLM, SGLang, TGI,
llama.cpp server, Ollama, `transformers serve`).

Owns: the request a turn becomes (`/chat/completions`, streamed), mapping ChatParams onto the server's
sampling fields, stopping (closing the stream: servers cancel a generation whose client went away), and
turning connection errors, timeouts and error answers into messages a user can act on; a server that
refuses the extra sampling fields (422, as `transformers serve` does) gets the turn again without them, once,
and only OpenAI's fields from then on, with a notice.
Ignores: memory (the model lives on the server; the manager counts nothing here), the GPU queue (requests
run in parallel: the server batches them) and context fitting (the server refuses an over-long prompt).

httpx rather than the `openai` client: it is already installed with Gradio (no new runtime dependency),
it exposes the raw stream so Stop can close the connection at once, and it sends the non-standard fields
vLLM-style servers accept (top_k, repetition_penalty, continue_final_message) without `extra_body`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Generator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from studio.backends import Backend, BackendError, Event, Notice, Request, TextDelta, Usage, register
from studio.backends.params import ChatParams
from studio.config import ModelSpec

log = logging.getLogger(__name__)

_DEFAULT_TOP_K = ChatParams.model_fields["top_k"].default
# The fields beyond OpenAI's that vLLM, SGLang and llama.cpp accept, and the servers (base URLs) that
# refused them in this process: those get OpenAI's fields only (see `OpenAIChat.generate`).
EXTRA_FIELDS = ("top_k", "repetition_penalty", "continue_final_message", "add_generation_prompt")
_PLAIN_SERVERS: set[str] = set()


class OpenAIChatOptions(BaseModel):
    """`options:` of an openai-chat model in models.yaml."""

    model_config = ConfigDict(extra="forbid")

    # Seconds to wait for the server to accept a connection, and then for each next piece of the answer.
    connect_timeout: float = Field(default=5.0, gt=0.0, le=300.0)
    read_timeout: float = Field(default=120.0, gt=0.0, le=3600.0)
    # Send the fields vLLM, SGLang and llama.cpp accept beyond OpenAI's (top_k, repetition_penalty,
    # continue_final_message). Servers that refuse unknown fields (OpenAI itself, `transformers serve`)
    # need `false`; those parameters are then not sent and the answer says so.
    extra_params: bool = True
    max_connections: int = Field(default=16, ge=1, le=1024)  # parallel requests to this server


@register
class OpenAIChat(Backend):
    kind = "openai-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    Options = OpenAIChatOptions
    remote: ClassVar[bool] = True  # the manager budgets no local memory for it

    client: Any = None

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> list[str]:
        if not spec.base_url:
            return [
                "field 'base_url': backend 'openai-chat' needs the server's URL, e.g. http://gpu-box:8000/v1"
            ]
        return []

    def load(self) -> None:
        import httpx

        options = OpenAIChatOptions.model_validate(self.spec.options)
        headers = {"Accept": "text/event-stream"}
        if self.spec.api_key_env:
            key = os.environ.get(self.spec.api_key_env)
            if not key:
                raise BackendError(
                    f"model {self.spec.id!r} reads its API key from ${self.spec.api_key_env}, "
                    "which is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.options = options
        self.base_url = str(self.spec.base_url).rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(options.read_timeout, connect=options.connect_timeout),
            limits=httpx.Limits(max_connections=options.max_connections),
        )
        # Fail at load, with the reason, when the server is not there: a chat then says why at once.
        try:
            answer = self.client.get("/models")
        except httpx.TimeoutException as exc:
            self.unload()
            raise BackendError(self._timeout(exc)) from None
        except httpx.HTTPError as exc:
            self.unload()
            raise BackendError(self._unreachable(exc)) from None
        if answer.status_code in (401, 403):
            self.unload()
            raise BackendError(_server_error(answer.status_code, answer.text, self.spec))
        served = _model_ids(answer)
        if served and self.spec.source not in served:
            log.warning(
                "%s does not list %r (it lists %s)", self.base_url, self.spec.source, ", ".join(served)
            )

    def unload(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    @property
    def sends_extra(self) -> bool:
        """Does this server get the extra sampling fields? Yes, unless options say no or it refused them."""
        return self.options.extra_params and self.base_url not in _PLAIN_SERVERS

    def body(self, request: Request) -> tuple[dict[str, Any], list[str]]:
        """The /chat/completions request for a turn, and notices about parameters not sent."""
        params = request.params
        assert isinstance(params, ChatParams)
        if params.num_beams > 1:
            raise BackendError(
                f"beam search (num_beams={params.num_beams}) is not available with model {self.spec.id!r}: "
                "OpenAI-compatible servers do not offer it; set num_beams to 1"
            )
        extra = self.sends_extra
        messages = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
        messages += [{"role": m.role, "content": m.content} for m in request.history]
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {
            "model": self.spec.source,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens,
        }
        if request.continue_from is not None:
            if not extra:
                raise BackendError(
                    f"model {self.spec.id!r} cannot continue an answer: its server is used without "
                    "extra_params (continue_final_message); regenerate instead"
                )
            messages.append({"role": "assistant", "content": request.continue_from})
            body.update(add_generation_prompt=False, continue_final_message=True)
        notices: list[str] = []
        if params.do_sample:
            body.update(temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                body["seed"] = params.seed
        else:
            body["temperature"] = 0.0  # OpenAI-compatible servers decode greedily at temperature 0
        unsent = []
        if params.do_sample and params.top_k:
            if extra:
                body["top_k"] = params.top_k
            elif params.top_k != _DEFAULT_TOP_K:
                unsent.append(f"top_k={params.top_k}")
        if params.repetition_penalty != 1.0:
            if extra:
                body["repetition_penalty"] = params.repetition_penalty
            else:
                unsent.append(f"repetition_penalty={params.repetition_penalty}")
        if unsent:
            why = "options.extra_params is off" if not self.options.extra_params else "it refused them before"
            notices.append(
                f"{', '.join(unsent)} not sent: this model's server takes only OpenAI's standard sampling "
                f"fields ({why})"
            )
        return body, notices

    def generate(self, request: Request) -> Generator[Event, None, None]:
        import httpx

        if self.client is None:
            raise BackendError("backend used before load()")
        body, notices = self.body(request)
        for notice in notices:
            yield Notice(notice)
        try:
            refused = yield from self._stream(body, request)
            if refused:
                # Servers such as `transformers serve` answer 422 to any field beyond OpenAI's: send the turn
                # once more without them, and leave them out for this server from now on.
                _PLAIN_SERVERS.add(self.base_url)
                log.warning(
                    "%s refused %s: only OpenAI's fields from now on", self.base_url, ", ".join(refused)
                )
                yield Notice(
                    f"the model server refused the extra sampling fields ({', '.join(refused)}); sent again "
                    "without them, and they are left out for this server from now on (set `options: "
                    "{extra_params: false}` in models.yaml to say so up front)"
                )
                body, notices = self.body(request)
                for notice in notices:
                    yield Notice(notice)
                yield from self._stream(body, request, retry=False)
        except httpx.TimeoutException as exc:
            raise BackendError(self._timeout(exc)) from None
        except httpx.HTTPError as exc:
            raise BackendError(self._unreachable(exc)) from None

    def _stream(
        self, body: dict[str, Any], request: Request, *, retry: bool = True
    ) -> Generator[Event, None, list[str]]:
        """Stream one request's events; returns the extra fields the server refused (nothing streamed
        then) when `retry` allows sending it again without them, else raises for any error answer."""
        # Leaving this block closes the connection: on Stop, a closed tab or an error the server sees the
        # client go away and cancels the generation.
        with self.client.stream("POST", "/chat/completions", json=body) as answer:
            if answer.status_code >= 400:
                answer.read()
                refused = [f for f in EXTRA_FIELDS if f in body and f in answer.text]
                if (
                    retry
                    and answer.status_code in (400, 422)
                    and refused
                    and "continue_final_message" not in refused
                ):
                    return refused
                raise BackendError(_server_error(answer.status_code, answer.text, self.spec))
            for line in answer.iter_lines():
                if request.stop.is_set():
                    return []
                events, done = self._parse(line)
                yield from events
                if done:
                    return []
        return []

    @staticmethod
    def _parse(line: str) -> tuple[list[Event], bool]:
        """One server-sent-events line -> the events in it, and whether the answer is complete."""
        if not line.startswith("data:"):
            return [], False  # blank separators, comments and `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            return [], True
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise BackendError(f"the model server sent something that is not JSON: {data[:200]!r}") from None
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise BackendError(f"the model server failed during the answer: {message}")
        events: list[Event] = []
        choices = chunk.get("choices") or [{}]
        text = (choices[0].get("delta") or {}).get("content")
        if text:
            events.append(TextDelta(text))
        usage = chunk.get("usage")  # the last chunk (vLLM: a chunk of its own; transformers: the final one)
        if usage:
            events.append(
                Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            )
        return events, False

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"cannot reach the model server for {self.spec.id!r} at {self.base_url} ({type(exc).__name__}: "
            f"{exc or 'no detail'}); is it running, and is base_url in models.yaml right?"
        )

    def _timeout(self, exc: Exception) -> str:
        return (
            f"the model server for {self.spec.id!r} at {self.base_url} did not answer in time "
            f"({type(exc).__name__}; connect {self.options.connect_timeout:g} s, read "
            f"{self.options.read_timeout:g} s, set in options of models.yaml)"
        )


def _model_ids(answer: Any) -> list[str]:
    try:
        return [str(m.get("id")) for m in answer.json().get("data", [])]
    except (ValueError, AttributeError):
        return []


def _server_error(status: int, text: str, spec: ModelSpec) -> str:
    """The server's own message (OpenAI, vLLM and FastAPI shapes), with a hint for the usual causes."""
    message = text.strip()[:500]
    try:
        payload = json.loads(text)
        error = payload.get("error") or payload.get("detail") or payload.get("message")
        message = str(error.get("message") if isinstance(error, dict) else error or message)
    except (ValueError, AttributeError):
        pass
    hint = ""
    if status in (401, 403):
        hint = f"; check the key in ${spec.api_key_env}" if spec.api_key_env else "; set api_key_env"
    elif status == 404:
        hint = f"; models.yaml's source ({spec.source!r}) must be the model name the server serves"
    elif "unexpected field" in message.lower() or "extra" in message.lower():
        hint = "; this server takes only OpenAI's fields: set `options: {extra_params: false}`"
    return f"the model server for {spec.id!r} answered {status}: {message}{hint}"
