"""A small HTTP front of the real `Studio` service, run as a subprocess that the fault tests kill -9.

Not the Gradio app: starting Gradio costs about 5 s, and the kill tests start a server 20 times. What is
under test is the same service and storage code the app calls (`Studio.rate`, `Studio.chat`), on a real
SQLite file, acknowledged only after they return.

    python -m tests.helpers.faults_server MODELS_YAML DATA_DIR PORT_FILE
    python -m tests.helpers.faults_server --zygote  # then "MODELS_YAML DATA_DIR PORT_FILE" lines on stdin:
                                                    # each forks a server, prints its pid (skips imports)
    POST /rate?generation=ID&user=NAME&vote=up|down   -> 200 "ok" once the vote is committed
    POST /chat?prompt=TEXT[&model=ID]                 -> 200 with the generation id when it ends
    python -m tests.helpers.faults_server --serve serve --models M --data-dir D --port P  # `studio serve`
A prompt with SLOW runs for about 20 s; the model `fatal` fails as a corrupted CUDA context does (torch's
real `AcceleratorError`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from studio import Settings
from studio.backends import Backend, Request, TextDelta, register
from studio.backends.params import ChatParams
from studio.service import Studio
from tests.helpers import fakes  # noqa: F401  (registers the fake backends)
from tests.helpers.fakes import fake_weights
from tests.helpers.net import free_port


@register
class FatalChat(Backend):
    kind = "fatal-chat"
    tabs = frozenset({"chat"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Iterator[TextDelta]:
        import torch  # torch's own class (>= 2.8) for CUDA runtime failures; a CPU build never raises it

        yield TextDelta("partial ")
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")


def main(models: str, data_dir: str, port_file: str) -> None:
    studio = Studio.from_settings(Settings.from_env(models_file=models, data_dir=data_dir))
    studio.recover_interrupted()  # as `studio serve` does when it starts

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/rate":
                    studio.rate(int(query["generation"]), query["vote"], user=query["user"])
                    body = b"ok"
                else:
                    slow = {"max_new_tokens": 4096} if "SLOW" in query["prompt"] else {}
                    model = query.get("model", "fake")
                    *_, final = studio.chat(model_id=model, message=query["prompt"], params=slow)
                    body = str(final.generation_id).encode()
                status = 200
            except Exception as exc:  # the client records it as not acknowledged
                status, body = 500, repr(exc).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(port_file)  # the test waits for this file: the server is listening
    server.serve_forever()


def gradio(models: str, data_dir: str, port_file: str) -> None:
    """The real Gradio app (no logins, no rate limit) in its own process, for the load test."""
    from studio.ui import build_app, launch

    studio = Studio.from_settings(Settings.from_env(models_file=models, data_dir=data_dir))
    studio.user_id(None)
    app = build_app(studio)
    port = free_port()
    launch(app, studio, host="127.0.0.1", port=port, block=False, queue_size=256, rate_limit=None)
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(port))
    tmp.rename(port_file)
    app.block_thread()


def zygote() -> None:
    """Imports done once; every line on stdin forks a fresh server process (the tests kill it with -9)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed children are reaped at once
    for line in sys.stdin:
        args = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                main(*args)
            finally:
                os._exit(1)
        print(pid, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote()
    elif sys.argv[1] == "--gradio":
        gradio(*sys.argv[2:5])
    elif sys.argv[1] == "--serve":  # the real `studio serve`, with this module's test kinds registered
        from studio.cli import main as studio_main

        sys.exit(studio_main(sys.argv[2:]))
    else:
        main(*sys.argv[1:4])
