"""Many API clients at once against a served studio, over Gradio's queue protocol (raw HTTP + SSE).

Run as a separate process (`python -m tests.helpers.api_clients URL CLIENTS TURNS MODEL [http|gradio_client]`,
prints JSON; `gradio_client` runs tests/test_faults_load.py's `gradio_client` clients instead), so the
clients do not share the server's interpreter lock: in one process they and the server take turns on one
core. Each client is one Gradio session (its own `session_hash`, as a browser tab or `gradio_client.Client`
has) holding one conversation through `/chat`: join the queue, read the event's SSE stream to its
`process_completed` message, carry the conversation id to the next turn. Plain `httpx`, because
`gradio_client` costs about 40 ms of CPU more per call (measured in the README).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.helpers.sampling import BEST_OF_OFF, sampling
from tests.helpers.threads import together

SAMPLING = sampling(max_new_tokens=8)  # short turns: many clients at once


def endpoint(url: str, api_name: str) -> int:
    """The queue's fn_index of a named endpoint, from the app's config."""
    config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
    return int(next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name))


def call(client: httpx.Client, url: str, fn_index: int, data: list[Any], session: str) -> list[Any]:
    """One queued event: its output data, or RuntimeError with the server's error message."""
    base = url.rstrip("/") + "/gradio_api/queue"
    joined = client.post(f"{base}/join", json={"data": data, "fn_index": fn_index, "session_hash": session})
    joined.raise_for_status()
    with client.stream("GET", f"{base}/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                if not message.get("success"):
                    raise RuntimeError(str(message.get("output", {}).get("error") or message))
                return list(message["output"]["data"])
    raise RuntimeError("the event stream ended without a result")


def run_clients(url: str, model: str, clients: int, turns: int) -> tuple[list[int], list[str], float]:
    """`clients` sessions at once, `turns` chat turns each; conversation ids, errors, seconds."""
    fn_index = endpoint(url, "chat")
    conversations: list[int] = []

    def client(n: int, ready: Callable[[], object]) -> None:
        session = uuid.uuid4().hex
        conv = None
        try:
            with httpx.Client(timeout=120) as http:
                ready()
                for turn in range(turns):
                    # The hidden run_key State is an input over raw HTTP; the session hash serves as one.
                    data = [f"c{n} t{turn}", conv, model, "", session, *SAMPLING, *BEST_OF_OFF]
                    update = call(http, url, fn_index, data, session)[1]
                    if isinstance(update, dict) and "value" in update:  # set on a new conversation only
                        conv = update["value"]
        finally:
            conversations.append(conv or 0)

    errors, seconds = together(clients, client)
    return conversations, errors, seconds


if __name__ == "__main__":
    url, clients, turns, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if sys.argv[5:] == ["gradio_client"]:
        from tests.test_faults_load import run_clients as run_gradio_clients

        conversations, errors, seconds = run_gradio_clients(url, model, clients, turns)
    else:
        conversations, errors, seconds = run_clients(url, model, clients, turns)
    print(json.dumps({"conversations": conversations, "errors": errors, "seconds": seconds}))
