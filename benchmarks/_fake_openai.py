"""A stand-in OpenAI-compatible server for `--smoke` runs: answers at once, streams one word per token.

Owns: `fake_openai(model)`, a loopback HTTP server in a thread with `GET /v1/models` (lists `model`) and a
streaming `POST /v1/chat/completions` (`max_tokens` words, then a usage chunk and `[DONE]`), as
`transformers serve` and vLLM stream them. Starting the real `transformers serve` takes 8 s on an idle
core and minutes on a busy one, too long for a smoke run; the figures of a full run come from the real one.
Ignores: sampling, messages and everything else a real server does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def fake_openai(model: str) -> Iterator[str]:
    """Serve on a free loopback port; yield the base URL (`http://127.0.0.1:<port>/v1`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no chunked encoding

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, "application/json", json.dumps({"data": [{"id": model}]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            tokens = int(body.get("max_tokens") or 16)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(tokens):
                self._event({"choices": [{"index": 0, "delta": {"content": f"word{i} "}}]})
            usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, chunk: dict) -> None:
            chunk |= {"id": "fake", "object": "chat.completion.chunk", "created": 0, "model": model}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        def _send(self, status: int, kind: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
