"""The four ways `chat_overhead.py` runs one chat turn: raw generate, the service, and the Gradio API twice.

raw: `model.generate` + `TextIteratorStreamer` in a thread; service: `Studio.chat`; gradio-client: the
"/chat" endpoint through `gradio_client` (which polls every 50 ms); gradio-sse: the same endpoint over the
raw queue protocol with arrival timestamps (the server's own overhead).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    ttft_ms: float
    total_ms: float
    tokens: int
    service_ms: float = float("nan")  # the service's own duration_ms for the turn (stored on the row)

    @property
    def tok_s(self) -> float:
        return self.tokens / (self.total_ms / 1000) if self.total_ms > 0 else float("nan")


# -- the four ways ---------------------------------------------------------------------------------
def run_raw(backend: Any, prompt: str, n: int) -> Run:
    import torch
    from transformers import TextIteratorStreamer

    model, tokenizer = backend.model, backend.tokenizer
    started = time.perf_counter()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    ).to(model.device)
    prompt_len = int(inputs["input_ids"].shape[1])
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: list[Any] = []

    def work() -> None:
        with torch.inference_mode():
            out.append(
                model.generate(
                    **inputs,
                    max_new_tokens=n,
                    do_sample=False,
                    streamer=streamer,
                    # Same as the backend passes; they only silence warnings, no extra work per token.
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            )

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    first = None
    for piece in streamer:
        if piece and first is None:
            first = time.perf_counter()
    worker.join()
    end = time.perf_counter()
    tokens = int(out[0].shape[1]) - prompt_len
    return Run(((first or end) - started) * 1000, (end - started) * 1000, tokens)


def run_service(studio: Any, model_id: str, prompt: str, n: int) -> Run:
    from sqlmodel import Session

    from studio import storage

    params = {"do_sample": False, "max_new_tokens": n, "repetition_penalty": 1.0}
    started = time.perf_counter()
    first = None
    final = None
    for update in studio.chat(model_id=model_id, message=prompt, params=params):
        if update.done:
            final = update
        elif update.text and first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    assert final is not None and final.status == "ok", final
    with Session(studio.engine) as session:
        row = storage.get_generation(session, generation_id=final.generation_id)
        tokens, inner = int(row.completion_tokens or 0), float(row.duration_ms or "nan")
    return Run(((first or end) - started) * 1000, (end - started) * 1000, tokens, inner)


def _last_generation(studio: Any) -> tuple[int, float]:
    """(completion tokens, the service's duration_ms) of the newest stored generation."""
    from sqlmodel import Session

    from studio import storage

    with Session(studio.engine) as session:
        row = storage.list_generations(session, limit=1)[0]
        assert row.status == "ok", (row.status, row.error)
        return int(row.completion_tokens or 0), float(row.duration_ms or "nan")


def gradio_values(model_id: str, prompt: str, n: int) -> list[Any]:
    # text, conversation, model, system prompt, do_sample, temperature, top_p, top_k,
    # repetition_penalty, max_new_tokens, num_beams, seed, min_p, typical_p, prompt_lookup_num_tokens,
    # then Best of n's n and scorer (one candidate: an ordinary turn). The run_key State is not in the API.
    return [prompt, None, model_id, "", False, 0.7, 0.95, 50, 1.0, n, 1, 0, 0.0, 1.0, 0, 1, "(no scorer)"]


def _assistant_text(chat_value: Any) -> str | None:
    value = chat_value.get("value") if isinstance(chat_value, dict) else chat_value
    if not value:
        return None
    last = value[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def run_gradio_client(client: Any, studio: Any, model_id: str, prompt: str, n: int) -> Run:
    started = time.perf_counter()
    job = client.submit(*gradio_values(model_id, prompt, n), api_name="/chat")
    first = None
    for out in job:
        if first is None and _assistant_text(out[0]) not in (None, "…"):
            first = time.perf_counter()
    end = time.perf_counter()
    job.result()  # raises if the event failed
    return Run(((first or end) - started) * 1000, (end - started) * 1000, *_last_generation(studio))


class SSECaller:
    """Call a queued Gradio endpoint over the raw queue protocol with one keep-alive httpx client."""

    def __init__(self, client: Any, api_name: str):
        import httpx

        endpoint = next(e for e in client.endpoints.values() if e.api_name == api_name)
        self.endpoint = endpoint
        self.join_url = client.sse_data_url  # .../gradio_api/queue/join
        self.data_url = client.sse_url  # .../gradio_api/queue/data
        self.http = httpx.Client(timeout=httpx.Timeout(120.0))

    def __call__(self, values: list[Any]) -> tuple[float | None, float]:
        """Return (seconds to first generating message, seconds to completion) from the call's start."""
        import uuid

        session = uuid.uuid4().hex
        data = list(self.endpoint.insert_empty_state(*values))
        started = time.perf_counter()
        resp = self.http.post(
            self.join_url,
            json={
                "data": data,
                "fn_index": self.endpoint.fn_index,
                "session_hash": session,
                "event_data": None,
                "trigger_id": None,
            },
        )
        resp.raise_for_status()
        event_id = resp.json()["event_id"]
        first = None
        with self.http.stream("GET", self.data_url, params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                kind = msg.get("msg")
                if kind == "process_generating" and first is None:
                    first = time.perf_counter() - started
                elif kind == "process_completed":
                    if not msg.get("success", True):
                        raise RuntimeError(f"gradio event failed: {msg.get('output')}")
                    return first, time.perf_counter() - started
                elif kind == "close_stream":
                    break
        raise RuntimeError("the SSE stream closed before process_completed")

    def close(self) -> None:
        self.http.close()


def run_gradio_sse(caller: SSECaller, studio: Any, model_id: str, prompt: str, n: int) -> Run:
    first, total = caller(gradio_values(model_id, prompt, n))
    return Run((first if first is not None else total) * 1000, total * 1000, *_last_generation(studio))
