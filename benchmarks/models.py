"""Model manager and remote engine costs: cold load vs warm reuse, and openai-chat vs a plain OpenAI client.

(a) Cold load vs warm reuse, per tab's tiny model (chat/code: the tiny Llama; image: the tiny Stable
    Diffusion pipeline) and the bundled SmolLM2-135M when it has been pulled: `manager.preload` after an
    unload (cold; the first load in the process is reported apart: libraries are imported by then) vs
    `with manager.use(id)` on the loaded model (warm), plus the first and second `Studio.chat` turn.
(b) Tokens per second through a real `transformers serve` (tiny model, greedy, exactly N new tokens):
    the plain `openai` client streaming the same request vs the studio's openai-chat backend
    (`backend.generate`) and the whole service (`Studio.chat`, incl. the DB write). Rounds alternate
    the ways; ratios are medians of per-round ratios. Target: backend/plain >= 0.97.

(c) Remote requests through the served app: N Gradio API clients asking the remote model at once vs the same
    N requests one after another, with the shared generation queue as shipped (PARALLEL_RUNS at once) and
    as before this change (one at a time: what every event got when all shared the `gpu` id). The server
    is `transformers serve` with --continuous-batching (pass --no-batching for its one-at-a-time mode).

  .venv/bin/python benchmarks/models.py --rounds 9 --tokens 128 [--clients 4] [--app-only]
  .venv/bin/python benchmarks/models.py --smoke     # tiny models, 1 round, 8 tokens, 2 clients, the
                                                    # shipped queue only, a stand-in OpenAI server
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    BUNDLED_ID,
    add_smoke,
    bundled_weights,
    default_model_cache,
    load_note,
    median,
    pin_torch_threads,
    print_targets,
    table,
)


def _studio(folder: Path, body: str):  # type: ignore[no-untyped-def]
    from studio import Settings
    from studio.service import Studio

    (folder / "models.yaml").write_text(body, encoding="utf-8")
    return Studio.from_settings(
        Settings.from_env(models_file=folder / "models.yaml", data_dir=folder / "data")
    )


def load_costs(work: Path, repeats: int, bundled: bool = True) -> list[list[object]]:
    from tests.helpers.tiny_chat import build_tiny_chat_model, build_tiny_sd_pipeline

    chat = build_tiny_chat_model(work / "tiny-chat")
    image = build_tiny_sd_pipeline(work / "tiny-sd")
    cache = default_model_cache()
    _gguf, converted = bundled_weights(cache)
    entries = [
        ("tiny chat/code", "chat", f"backend: transformers-chat\n    source: {chat}\n    tabs: [chat, code]"),
        ("tiny image", "image", f"backend: diffusers\n    source: {image}\n    tabs: [image]"),
    ]
    if bundled and converted.exists():
        entries.append(
            (
                f"bundled {BUNDLED_ID}",
                "chat",
                f"backend: transformers-chat\n    source: {converted}\n    tabs: [chat]",
            )
        )
    elif bundled:
        print(f"bundled {BUNDLED_ID}: skipped (not pulled; run `studio models pull --bundled`)")
    body = "models:\n" + "".join(f"  - id: m{i}\n    {e[2]}\n" for i, e in enumerate(entries))
    studio = _studio(work, body)
    rows: list[list[object]] = []
    try:
        for i, (name, tab, _) in enumerate(entries):
            mid = f"m{i}"
            started = time.perf_counter()
            studio.manager.preload(mid)
            first = time.perf_counter() - started
            cold, warm = [], []
            for _ in range(repeats):
                studio.manager.unload(mid)
                started = time.perf_counter()
                studio.manager.preload(mid)
                cold.append(time.perf_counter() - started)
                for _ in range(20):
                    started = time.perf_counter()
                    with studio.manager.use(mid):
                        pass
                    warm.append(time.perf_counter() - started)
            turn_cold = turn_warm = float("nan")
            if tab == "chat":
                studio.manager.unload(mid)
                params = {"do_sample": False, "max_new_tokens": 8}
                started = time.perf_counter()
                list(studio.chat(model_id=mid, message="hi", params=params))
                turn_cold = time.perf_counter() - started
                started = time.perf_counter()
                list(studio.chat(model_id=mid, message="hi", params=params))
                turn_warm = time.perf_counter() - started
            size = next(s.memory_bytes for s in studio.manager.states() if s.id == mid) / 2**20
            rows.append(
                [
                    name,
                    size,
                    first,
                    median(cold),
                    median(warm) * 1e6,
                    median(cold) / median(warm),
                    turn_cold,
                    turn_warm,
                ]
            )
            studio.manager.unload(mid)
    finally:
        studio.close()
    return rows


def remote_rates(
    work: Path, url: str, model: Path, rounds: int, tokens: int
) -> tuple[list[list[object]], float]:
    """(b) against `transformers serve` of `model` at `url`."""
    from openai import OpenAI

    from studio.backends import Request
    from studio.backends.params import ChatParams

    messages = [{"role": "user", "content": "Hello, how are you?"}]
    body = f"models:\n  - id: remote\n    tabs: [chat]\n    backend: openai-chat\n    base_url: {url}\n"
    body += f"    source: {model}\n    options: {{extra_params: false}}\n"
    studio = _studio(work, body)
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    params = ChatParams(do_sample=False, max_new_tokens=tokens)

    def plain() -> float:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model=str(model),
            messages=messages,
            max_tokens=tokens,
            temperature=0.0,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},  # as the backend asks: the count comes at the end
        )
        done = 0
        for chunk in stream:
            if chunk.usage:
                done = chunk.usage.completion_tokens
        assert done == tokens, done
        return done / (time.perf_counter() - started)

    def backend() -> float:
        with studio.manager.use("remote") as b:
            started = time.perf_counter()
            usage = [
                e for e in b.generate(Request("Hello, how are you?", params)) if type(e).__name__ == "Usage"
            ]
            assert usage[-1].completion_tokens == tokens  # type: ignore[attr-defined]
            return tokens / (time.perf_counter() - started)

    def service() -> float:
        started = time.perf_counter()
        list(studio.chat(model_id="remote", message="Hello, how are you?", params=params.model_dump()))
        return tokens / (time.perf_counter() - started)

    try:
        studio.manager.preload("remote")
        for way in (plain, backend, service):  # warm-up: connections, the server's first request
            way()
        results: dict[str, list[float]] = {"plain": [], "backend": [], "service": []}
        for r in range(rounds):
            order = [("plain", plain), ("backend", backend), ("service", service)]
            for name, way in order if r % 2 == 0 else order[::-1]:
                results[name].append(way())
    finally:
        studio.close()
    base = results["plain"]
    rows: list[list[object]] = []
    for name, rates in results.items():
        ratios = [x / y for x, y in zip(rates, base, strict=True)]
        rows.append([name, median(rates), median(ratios)])
    return rows, median([x / y for x, y in zip(results["backend"], base, strict=True)])


def app_parallel(
    work: Path, url: str, model: Path, clients: int, tokens: int, rounds: int, before: bool = True
) -> list[list[object]]:
    """(c) against `transformers serve` of `model` at `url`; `before`: also with the queue of one."""
    from studio.ui import conversation

    rows: list[list[object]] = []
    body = f"models:\n  - id: remote\n    tabs: [chat]\n    backend: openai-chat\n    base_url: {url}\n"
    body += f"    source: {model}\n    options: {{extra_params: false}}\n"
    shipped = conversation.PARALLEL_RUNS
    queues = [("one at a time (before)", 1)] if before else []
    for label, limit in [*queues, (f"generation, {shipped} at once", shipped)]:
        folder = work / f"app-{limit}"
        folder.mkdir()
        seq, par = _app_rounds(_studio(folder, body), limit, clients, tokens, rounds)
        ratio = median([s / p for s, p in zip(seq, par, strict=True)])
        rows.append([label, median(seq), median(par), clients * tokens / median(par), ratio])
    return rows


def _app_rounds(
    studio: Any, limit: int, clients: int, tokens: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Serve the app with the generation queue limited to `limit`; time N requests one by one and at once."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    from studio.ui import build_app, conversation, launch
    from tests.helpers.net import free_port

    sampling = [False, 0.7, 0.9, 50, 1.0, tokens, 1, None]  # the chat API's Sampling panel, greedy
    conversation.GENERATION_QUEUE["concurrency_limit"] = limit  # read by the tabs while the app is built
    try:
        app = build_app(studio)
    finally:
        conversation.GENERATION_QUEUE["concurrency_limit"] = conversation.PARALLEL_RUNS
    port = free_port()
    launch(app, studio, host="127.0.0.1", port=port, block=False)
    pool = [Client(f"http://127.0.0.1:{port}/", verbose=False) for _ in range(clients)]

    def ask(client: Client, i: int) -> None:
        client.predict(f"Question {i}: how are you?", None, "remote", "", *sampling, api_name="/chat")

    def one_by_one() -> float:
        started = time.perf_counter()
        for i, client in enumerate(pool):
            ask(client, i)
        return time.perf_counter() - started

    def at_once() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as ex:
            list(ex.map(ask, pool, range(clients)))
        return time.perf_counter() - started

    seq: list[float] = []
    par: list[float] = []
    try:
        one_by_one()  # warm-up
        for r in range(rounds):
            order = [(seq, one_by_one), (par, at_once)]
            for out, way in order if r % 2 == 0 else order[::-1]:
                out.append(way())
    finally:
        app.close()
        studio.close()
    return seq, par


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="cold loads per model")
    parser.add_argument("--clients", type=int, default=4, help="API clients at once in (c)")
    parser.add_argument("--no-batching", action="store_true", help="(c) without continuous batching")
    parser.add_argument("--app-only", action="store_true", help="only (c)")
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.tokens, args.repeats, args.clients = 1, 8, 1, 2
    pin_torch_threads()
    print(load_note())
    from _fake_openai import fake_openai

    from tests.helpers.openai_server import transformers_serve
    from tests.helpers.tiny_chat import build_tiny_chat_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for part in "abc":
            (work / part).mkdir()
        model = build_tiny_chat_model(work / "served")
        batching = not args.no_batching and not args.smoke
        flags = ["--continuous-batching"] if batching else []
        rates: list[list[object]] = []
        # The smoke run's server is a stand-in that answers at once, for (c) and (b): `transformers serve`
        # takes 8 s to start on an idle core (35 s with --continuous-batching), minutes on a busy one.
        server = (
            fake_openai(str(model))
            if args.smoke
            else transformers_serve(model, log=work / "serve-app.log", extra=flags)
        )
        with server as url:
            app_rows = app_parallel(
                work / "c", url, model, args.clients, args.tokens, args.rounds, before=not args.smoke
            )
            print(
                table(
                    ["app queue", "one by one s", "at once s", "at once tok/s", "speed-up"],
                    app_rows,
                    f"\n== {args.clients} API clients on a remote model through the app "
                    f"({'a stand-in server' if args.smoke else 'transformers serve'}"
                    f"{' --continuous-batching' if batching else ''}, {args.tokens} "
                    f"tokens, {args.rounds} rounds) ==",
                )
            )
            if args.app_only:
                return
            if args.smoke:  # (b) on the same server
                rates, ratio = remote_rates(work / "b", url, model, args.rounds, args.tokens)
        loads = load_costs(work / "a", args.repeats, bundled=not args.smoke)
        headers = ["model", "MB", "1st load s", "cold load s", "warm use us", "cold/warm", "1st turn s"]
        print(table([*headers, "2nd turn s"], loads, "\n== cold load vs warm reuse (medians) =="))
        if not rates:
            with transformers_serve(model, log=work / "serve.log") as url:
                rates, ratio = remote_rates(work / "b", url, model, args.rounds, args.tokens)
        print(
            table(
                ["way", "tok/s", "vs plain openai"],
                rates,
                f"\n== {'a stand-in server' if args.smoke else 'transformers serve, tiny model'}, greedy, "
                f"{args.tokens} tokens, {args.rounds} rounds ==",
            )
        )
    print_targets({"openai-chat backend tok/s >= 0.97 x plain OpenAI client": ratio >= 0.97})


if __name__ == "__main__":
    main()
