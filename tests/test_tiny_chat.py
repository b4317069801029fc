"""The real `transformers-chat` backend on a tiny random-weight checkpoint loaded with from_pretrained.

Random weights produce gibberish, so these tests check structure: token counts, determinism, streaming,
stopping, context handling, and rows in the database.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from studio.backends import BackendContext, Message, Notice, Request, TextDelta, Usage
from studio.backends.params import ChatParams
from studio.backends.transformers_chat import TransformersChat
from studio.config import ModelSpec
from studio.service import Studio

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path):
    spec = ModelSpec(id="tiny", tabs=["chat"], backend="transformers-chat", source=str(tiny_model_dir))
    b = TransformersChat(
        spec, BackendContext(model_cache=tiny_model_dir.parent, base_dir=tiny_model_dir.parent)
    )
    b.load()
    yield b
    b.unload()


def collect(
    backend: TransformersChat, prompt: str = "Hello", history=None, **params
) -> tuple[str, list, Usage]:
    request = Request(prompt=prompt, params=ChatParams(**params), history=history or [])
    events = list(backend.generate(request))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    usage = next(e for e in events if isinstance(e, Usage))
    return "".join(deltas), events, usage


def test_greedy_is_deterministic_and_streams(backend: TransformersChat) -> None:
    text1, events, usage = collect(backend, do_sample=False, max_new_tokens=12)
    text2, _, _ = collect(backend, do_sample=False, max_new_tokens=12)
    assert text1 == text2
    assert 1 <= usage.completion_tokens <= 12 and usage.prompt_tokens > 3
    assert len([e for e in events if isinstance(e, TextDelta)]) >= 2, "text arrives in pieces"


def test_sampling_reproduces_with_the_same_seed(backend: TransformersChat) -> None:
    a, _, _ = collect(backend, do_sample=True, seed=11, temperature=1.5, max_new_tokens=16)
    b, _, _ = collect(backend, do_sample=True, seed=11, temperature=1.5, max_new_tokens=16)
    c, _, _ = collect(backend, do_sample=True, seed=12, temperature=1.5, max_new_tokens=16)
    assert a == b and a != c


def test_beam_search_returns_the_best_beam_at_once(backend: TransformersChat) -> None:
    text, events, usage = collect(backend, do_sample=False, num_beams=3, max_new_tokens=8)
    assert len([e for e in events if isinstance(e, TextDelta)]) == 1
    assert text and usage.completion_tokens <= 8


def test_stop_ends_generation_between_tokens(backend: TransformersChat) -> None:
    request = Request(prompt="Hello", params=ChatParams(do_sample=True, seed=1, max_new_tokens=200))
    pieces = 0
    usage = None
    for event in backend.generate(request):
        if isinstance(event, TextDelta):
            pieces += 1
            if pieces == 3:
                request.stop.set()
        elif isinstance(event, Usage):
            usage = event
    assert usage is not None and usage.completion_tokens < 20
    # The same seed without Stop runs much longer, so the early end above came from Stop.
    _, _, unstopped = collect(backend, do_sample=True, seed=1, max_new_tokens=200)
    assert unstopped.completion_tokens > 50


def test_closing_the_stream_ends_the_worker_thread(backend: TransformersChat) -> None:
    stream = backend.generate(
        Request(prompt="Hi", params=ChatParams(do_sample=True, seed=2, max_new_tokens=200))
    )
    next(stream)
    stream.close()
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == f"generate-{backend.spec.id}"]


def test_oldest_turns_are_dropped_to_fit_the_context(backend: TransformersChat) -> None:
    long_turn = "The capital of France is Paris. " * 8
    history = [Message(role, long_turn) for _ in range(6) for role in ("user", "assistant")]
    _, events, usage = collect(
        backend, prompt="And Japan?", history=history, do_sample=False, max_new_tokens=8
    )
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices and "left out" in notices[0]
    assert usage.prompt_tokens + 8 <= backend.context_length


def test_a_single_message_longer_than_the_context_is_refused(backend: TransformersChat) -> None:
    with pytest.raises(Exception, match=r"too long for model 'tiny'.*context of 256 tokens"):
        collect(backend, prompt="Paris " * 400, max_new_tokens=8)


def test_continue_extends_the_last_reply(tiny_studio: Studio) -> None:
    first = list(tiny_studio.chat(model_id="tiny", message="Hello"))[-1]
    cont = list(tiny_studio.chat(model_id="tiny", conversation_id=first.conversation_id, action="continue"))[
        -1
    ]
    assert cont.status == "ok" and cont.text.startswith(first.text)


def test_service_turn_through_the_real_backend_is_stored(tiny_studio: Studio) -> None:
    updates = list(tiny_studio.chat(model_id="tiny", message="Hello", params={"do_sample": True, "seed": 5}))
    final = updates[-1]
    assert final.status == "ok" and final.generation_id
    [turn] = tiny_studio.conversation(final.conversation_id)
    assert turn.reply == final.text
    again = list(tiny_studio.chat(model_id="tiny", message="Hello", params={"do_sample": True, "seed": 5}))[
        -1
    ]
    assert again.text == final.text, "same seed, same settings, same answer"
