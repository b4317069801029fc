"""Backend openai-chat against a REAL `transformers serve` process serving the tiny checkpoint on
loopback: streaming, stop, sampling parameters, parallel requests, server errors, a server down or silent."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.backends import BackendError, Request
from studio.backends.openai_chat import OpenAIChat
from studio.backends.params import ChatParams
from studio.config import ConfigError
from tests.helpers.net import free_port
from tests.helpers.openai_server import transformers_serve

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="module")
def served_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with `do_sample: true` in its generation config: `transformers serve` samples only when
    the model's config says so (it maps temperature 0 to greedy, but never turns sampling on)."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    return folder


@pytest.fixture(scope="module")
def server(served_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with transformers_serve(served_dir, log=tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


def remote_yaml(
    base_url: str, source: Path | str, local: Path, options: str = "{extra_params: false}", **fields: str
) -> str:
    """`remote` on the server (the served copy's path is its model name), `local` the same weights here."""
    extra = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return f"""
models:
  - id: remote
    tabs: [chat, code]
    backend: openai-chat
    base_url: {base_url}
    source: {source}
    options: {options}
    defaults: {{do_sample: false, max_new_tokens: 8}}
{extra}  - id: local
    tabs: [chat]
    backend: transformers-chat
    source: {local}
    defaults: {{do_sample: false, max_new_tokens: 8}}
"""


def test_streams_the_same_greedy_answer_as_the_model_run_locally(
    make_studio, server, served_dir, tiny_model_dir
) -> None:
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir))
    updates = list(studio.chat(model_id="remote", message="Hello, how are you?"))
    final = updates[-1]
    assert final.status == "ok", final.error
    streamed = [u.text for u in updates if u.status == "running"]
    assert len(streamed) >= 2 and all(b.startswith(a) for a, b in itertools.pairwise(streamed))
    local = list(studio.chat(model_id="local", message="Hello, how are you?"))[-1]
    assert final.text == local.text and final.text  # same weights, same template, greedy
    row = studio.history(limit=2)[1]
    assert row["model"] == "remote" and row["status"] == "ok"
    rows = {r.id: r for r in studio.model_rows()}
    assert rows["remote"].status == "loaded" and rows["remote"].memory == "remote"
    assert studio.manager.used("cpu") == rows["local"].memory_bytes  # the remote model costs nothing here


def test_stop_closes_the_stream_and_keeps_what_came(make_studio, server, served_dir, tiny_model_dir) -> None:
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir))
    seen = []
    for update in studio.chat(model_id="remote", message="hi", params={"max_new_tokens": 200}, run_key="k"):
        seen.append(update)
        if update.status == "running" and len(seen) == 3:
            assert studio.cancel("k")
    final = seen[-1]
    assert final.status == "stopped" and final.text
    gen = studio.generate(tab="chat", model_id="remote", prompt="again", params={"max_new_tokens": 4})
    assert gen.status == "ok"  # the server is still fine after the client went away


def test_sampling_parameters_reach_the_server(make_studio, server, served_dir, tiny_model_dir) -> None:
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir))
    sample = {"do_sample": True, "temperature": 1.5, "top_p": 1.0, "max_new_tokens": 16}
    runs = [
        studio.generate(tab="chat", model_id="remote", prompt="hi", params={**sample, "seed": seed}).text
        for seed in (1, 1, 2)
    ]
    assert runs[0] == runs[1] != runs[2]  # the seed is honoured, so sampling happens on the server
    short = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"max_new_tokens": 3})
    long = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"max_new_tokens": 12})
    assert long.text.startswith(short.text) and len(long.text) > len(short.text)
    noted = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"repetition_penalty": 1.3})
    assert noted.status == "ok" and "repetition_penalty=1.3 not sent" in noted.notices[0]
    beams = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"num_beams": 3})
    assert beams.status == "error" and "beam search (num_beams=3) is not available" in beams.error


def test_request_body_maps_chat_params(make_studio, server, served_dir, tiny_model_dir) -> None:
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir, options="{extra_params: true}"))
    with studio.manager.use("remote") as backend:
        assert isinstance(backend, OpenAIChat)
        params = ChatParams(
            temperature=0.3, top_p=0.8, top_k=7, repetition_penalty=1.2, seed=5, system_prompt="S"
        )
        body, notices = backend.body(Request("q", params, continue_from="partial"))
        assert body["messages"][0] == {"role": "system", "content": "S"}
        assert body["messages"][-1] == {"role": "assistant", "content": "partial"}
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.3, 0.8, 7, 5)
        assert body["repetition_penalty"] == 1.2 and body["max_tokens"] == 256 and not notices
        greedy, _ = backend.body(Request("q", ChatParams(do_sample=False)))
        assert greedy["temperature"] == 0.0 and "top_k" not in greedy and "seed" not in greedy
    # `transformers serve` refuses fields beyond OpenAI's: sent again without them, and the notice says
    # which option states it up front (issue 14; before, this turn failed with the server's 422).
    retried = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"do_sample": True})
    assert retried.status == "ok" and "extra_params: false" in retried.notices[0]
    # Continuing an answer needs an extra field: with this server that is refused up front, clearly.
    with (
        studio.manager.use("remote") as backend,
        pytest.raises(BackendError, match="cannot continue an answer"),
    ):
        backend.body(Request("q", ChatParams(), continue_from="partial"))


def test_parallel_requests_are_not_serialised_by_the_studio(
    make_studio, server, served_dir, tiny_model_dir
) -> None:
    """Both requests are in flight at once (the server schedules them: `transformers serve` without
    continuous batching runs one generation at a time, vLLM batches them)."""
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir))
    studio.manager.preload("remote")
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                studio.generate(
                    tab="chat", model_id="remote", prompt=f"q{i}", params={"max_new_tokens": 48}
                ).status
            )
        )
        for i in range(3)
    ]
    most = 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        most = max(most, next(s.in_use for s in studio.manager.states() if s.id == "remote"))
        time.sleep(0.002)
    assert results == ["ok", "ok", "ok"] and most >= 2


def test_a_remote_model_answers_while_a_local_job_holds_the_device(
    make_studio, server, served_dir, tiny_model_dir
) -> None:
    """Remote models never wait in the device's line: a real server answers while a local job runs."""
    from tests.test_manager_queue import Gated

    gated = "  - {id: slow, tabs: [chat], backend: gated-fake, source: fake/slow}\n"
    studio = make_studio(remote_yaml(server, served_dir, tiny_model_dir) + gated)
    Gated.reset()
    try:
        holding = studio.chat(model_id="slow", message="HOLD")
        next(u for u in holding if u.text)  # the local job runs and holds the CPU's only turn
        final = list(studio.chat(model_id="remote", message="Hello"))[-1]
        assert final.status == "ok" and final.text
        assert studio.manager.jobs("cpu") == (1, 0) and Gated.running == 1
    finally:
        Gated.gate.set()
    assert list(holding)[-1].status == "ok"


def test_wrong_model_name_is_the_servers_message(make_studio, server, served_dir, tiny_model_dir) -> None:
    studio = make_studio(remote_yaml(server, "other", tiny_model_dir))
    gen = studio.generate(tab="chat", model_id="remote", prompt="hi")
    assert gen.status == "error" and "answered 400" in gen.error and "pinned" in gen.error


def test_a_server_that_is_down_is_a_clear_stored_error(make_studio, tiny_model_dir) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    studio = make_studio(remote_yaml(url, tiny_model_dir, tiny_model_dir))
    gen = studio.generate(tab="chat", model_id="remote", prompt="hi")
    assert gen.status == "error"
    assert (
        f"cannot reach the model server for 'remote' at {url}" in gen.error and "is it running" in gen.error
    )
    assert studio.history(limit=1)[0]["error"] == gen.error
    assert studio.manager.loaded() == []


def test_a_silent_server_times_out_with_a_clear_error(make_studio, tiny_model_dir) -> None:
    with socket.socket() as listener:  # accepts connections and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        studio = make_studio(
            remote_yaml(
                url, tiny_model_dir, tiny_model_dir, options="{connect_timeout: 0.3, read_timeout: 0.3}"
            )
        )
        with pytest.raises(
            BackendError, match=r"did not answer in time \(ReadTimeout; connect 0.3 s, read 0.3 s"
        ):
            studio.manager.preload("remote")


def test_models_yaml_checks_for_remote_fields(make_studio, tiny_model_dir, tmp_path, monkeypatch) -> None:
    from studio.backends import check_models
    from studio.config import load_config
    from tests.conftest import write_models

    body = remote_yaml("http://127.0.0.1:9/v1", tiny_model_dir, tiny_model_dir)
    with pytest.raises(
        ConfigError, match=r"line \d+: model 'remote': field 'base_url': backend 'openai-chat' needs"
    ):
        check_models(
            load_config(write_models(tmp_path, body.replace("    base_url: http://127.0.0.1:9/v1\n", "")))
        )
    wrong = body.replace(
        "backend: transformers-chat\n", "backend: transformers-chat\n    base_url: http://x/v1\n"
    )
    with pytest.raises(ConfigError, match="model 'local': field 'base_url': only remote backends"):
        check_models(load_config(write_models(tmp_path, wrong)))
    with pytest.raises(ConfigError, match=r"line \d+: model 'remote': field 'base_url': String should match"):
        load_config(write_models(tmp_path, body.replace("http://127.0.0.1:9/v1", "gpu-box:8000")))
    monkeypatch.delenv("STUDIO_TEST_KEY", raising=False)
    studio = make_studio(
        remote_yaml("http://127.0.0.1:9/v1", tiny_model_dir, tiny_model_dir, api_key_env="STUDIO_TEST_KEY")
    )
    with pytest.raises(BackendError, match=r"reads its API key from \$STUDIO_TEST_KEY, which is not set"):
        studio.manager.preload("remote")


def test_default_options_work_against_transformers_serve(make_studio, server, served_dir) -> None:
    """Issue 14, item 10: no `options:` at all (extra fields on, as for vLLM) and sampling on. `transformers
    serve` answers 422 to `top_k`: the turn is sent again without the extra fields, with a notice, and the
    server is remembered, so the next turn goes through at once."""
    from studio.backends import openai_chat

    openai_chat._PLAIN_SERVERS.discard(server)  # earlier tests in this module may have taught it already
    studio = make_studio(
        f"""
models:
  - id: remote
    tabs: [chat]
    backend: openai-chat
    base_url: {server}
    source: {served_dir}
    defaults: {{max_new_tokens: 8}}
"""
    )
    first = list(studio.chat(model_id="remote", message="Hello there"))[-1]
    assert first.status == "ok" and first.text, first.error
    refused = "the model server refused the extra sampling fields (top_k); sent again without them"
    assert any(refused in n for n in first.notices), first.notices
    assert server in openai_chat._PLAIN_SERVERS
    second = list(studio.chat(model_id="remote", message="And again", conversation_id=first.conversation_id))[
        -1
    ]
    assert second.status == "ok" and second.text and not any("refused" in n for n in second.notices)
    # A parameter the server cannot take is still reported as not sent.
    third = studio.generate(tab="chat", model_id="remote", prompt="hi", params={"top_k": 5})
    assert third.status == "ok" and "top_k=5 not sent" in third.notices[0]
    assert "it refused them before" in third.notices[0]
