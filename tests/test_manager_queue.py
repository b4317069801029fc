"""The fair device queue: in-process jobs start first come, first served across models (one at a time per
device by default), remote backends never wait behind them, and a turn is given back after Stop, a closed
stream or an error. Fake backends with gates stand in for slow models; the remote path is also proved
against a real `transformers serve` in tests/test_openai_chat.py, and through a served app here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from studio.backends import Backend, BackendError, Request, TextDelta, register
from studio.backends.params import ChatParams
from studio.manager.queue import DeviceDeadlock, DeviceLine
from studio.service import Studio
from tests.helpers.fakes import fake_weights
from tests.helpers.sampling import SAMPLING

WAIT_S = 10.0  # a bound on every wait below; the tests take well under a second each when they pass


class GatedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    load_wait: float = 0.0


@register
class Gated(Backend):
    """A local model whose jobs record when they run; a prompt starting with HOLD streams a word, then waits
    for `Gated.gate` (or Stop); FAIL raises after the first word."""

    kind = "gated-fake"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    Options = GatedOptions
    gate = threading.Event()
    started: list[str] = []  # noqa: RUF012  (a shared log on purpose)
    running = 0
    most = 0  # the most jobs that ever ran at once
    _count = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.gate = threading.Event()
        cls.started, cls.running, cls.most = [], 0, 0

    def load(self) -> None:
        threading.Event().wait(GatedOptions.model_validate(self.spec.options).load_wait)

    def generate(self, request: Request) -> Generator[TextDelta, None, None]:
        cls = type(self)
        with cls._count:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
            cls.started.append(request.prompt)
        try:
            yield TextDelta(f"{self.spec.id}: ")
            if request.prompt.startswith("HOLD"):
                deadline = time.monotonic() + WAIT_S
                while not (cls.gate.is_set() or request.stop.is_set()) and time.monotonic() < deadline:
                    cls.gate.wait(0.01)
            if "FAIL" in request.prompt:
                raise BackendError("failed on purpose")
            yield TextDelta(request.prompt)
        finally:
            with cls._count:
                cls.running -= 1


@register
class RemoteFake(Backend):
    """A model on another machine: answers at once, whatever runs here."""

    kind = "remote-fake"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    remote = True

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[TextDelta, None, None]:
        yield TextDelta(f"remote: {request.prompt}")


QUEUE_MODELS = """
models:
  - {id: a, tabs: [chat, code], backend: gated-fake, source: fake/a}
  - {id: b, tabs: [chat], backend: gated-fake, source: fake/b}
  - {id: far, tabs: [chat, code], backend: remote-fake, source: far/model}
"""


@pytest.fixture(autouse=True)
def _fresh_log() -> Iterator[None]:
    Gated.reset()
    yield
    Gated.gate.set()  # never leave a job waiting


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def in_thread(fn: Callable[[], object]) -> threading.Thread:
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    return worker


def chat_final(studio: Studio, model: str, prompt: str, **kw: object):  # type: ignore[no-untyped-def]
    return list(studio.chat(model_id=model, message=prompt, **kw))[-1]  # type: ignore[arg-type]


def hold(studio: Studio, model: str = "a") -> tuple[Iterator, object]:
    """Start a HOLD job on `model` and return its stream once it runs (its first word is out)."""
    updates = studio.chat(model_id=model, message="HOLD", run_key="hold")
    first = next(u for u in updates if u.status == "running" and u.text)
    return updates, first


def test_waiting_local_jobs_start_in_arrival_order_across_models(make_studio) -> None:
    studio = make_studio(QUEUE_MODELS)
    results: dict[str, str] = {}
    holder = in_thread(lambda: results.update(hold=chat_final(studio, "a", "HOLD").status))
    until(lambda: Gated.running == 1, "the first job to run")
    order = [f"job{i}" for i in range(6)]
    workers = []
    for i, prompt in enumerate(order):
        model = "ab"[i % 2]  # alternate the two local models: arrival decides, not the model
        workers.append(
            in_thread(lambda p=prompt, m=model: results.update({p: chat_final(studio, m, p).status}))
        )
        until(lambda n=i + 1: studio.manager.jobs("cpu") == (1, n), f"{prompt} to line up")
    Gated.gate.set()
    for worker in [holder, *workers]:
        worker.join(WAIT_S)
    assert Gated.started == ["HOLD", *order]
    assert Gated.most == 1  # one job at a time on the device
    assert set(results.values()) == {"ok"} and len(results) == 7
    assert studio.manager.jobs("cpu") == (0, 0)


def test_a_waiting_job_shows_its_place_in_the_line(make_studio) -> None:
    studio = make_studio(QUEUE_MODELS)
    updates, _ = hold(studio)
    seen: list[str] = []
    waiter = in_thread(
        lambda: seen.extend(" ".join(u.notices) for u in studio.chat(model_id="b", message="x"))
    )
    until(lambda: any(s.startswith("Waiting") for s in seen), "a waiting notice")
    assert "Waiting for the CPU: 1 job ahead" in seen
    Gated.gate.set()
    list(updates)
    waiter.join(WAIT_S)
    assert Gated.started == ["HOLD", "x"]
    assert studio.history(limit=1)[0]["status"] == "ok"


def test_a_remote_model_answers_while_a_local_job_holds_the_device(make_studio) -> None:
    studio = make_studio(QUEUE_MODELS)
    updates, _ = hold(studio)
    final = chat_final(studio, "far", "hi")  # would hang (then time out) if it waited behind the local job
    assert final.status == "ok" and final.text == "remote: hi"
    assert studio.manager.jobs("cpu") == (1, 0) and Gated.running == 1  # the local job still runs
    Gated.gate.set()
    assert list(updates)[-1].status == "ok"


@pytest.mark.parametrize("how", ["stop", "close", "error"])
def test_the_turn_is_given_back_when_a_running_job_ends_early(make_studio, how: str) -> None:
    studio = make_studio(QUEUE_MODELS)
    prompt = "HOLD FAIL" if how == "error" else "HOLD"
    updates = studio.chat(model_id="a", message=prompt, run_key="k")
    next(u for u in updates if u.text)
    waiting: dict[str, str] = {}
    waiter = in_thread(lambda: waiting.update(status=chat_final(studio, "b", "next").status))
    until(lambda: studio.manager.jobs("cpu") == (1, 1), "the second job to line up")
    if how == "stop":
        assert studio.cancel("k")
        assert list(updates)[-1].status == "stopped"
    elif how == "close":
        updates.close()  # the browser went away mid-stream
    else:
        Gated.gate.set()
        assert list(updates)[-1].status == "error"
    waiter.join(WAIT_S)
    assert waiting == {"status": "ok"} and Gated.started == [prompt, "next"]
    assert studio.manager.jobs("cpu") == (0, 0) and studio.manager.loaded() == ["a", "b"]
    stored = studio.history(limit=2)[1]
    assert stored["status"] == {"stop": "stopped", "close": "stopped", "error": "error"}[how]


@pytest.mark.parametrize("how", ["stop", "close"])
def test_a_job_stopped_while_waiting_leaves_the_line_and_runs_nothing(make_studio, how: str) -> None:
    studio = make_studio(QUEUE_MODELS)
    updates, _ = hold(studio)
    waiting = studio.chat(model_id="b", message="never", run_key="w")
    first = next(waiting)  # lined up: the first update says how many are ahead
    assert first.notices == ["Waiting for the CPU: 1 job ahead"]
    assert studio.manager.jobs("cpu") == (1, 1)
    if how == "stop":
        studio.cancel("w")
        final = list(waiting)[-1]
        assert final.status == "stopped" and final.text == ""
    else:
        waiting.close()
    until(lambda: studio.manager.jobs("cpu") == (1, 0), "the stopped job to leave the line")
    assert "b" not in studio.manager.loaded()  # nothing was loaded for it
    Gated.gate.set()
    list(updates)
    assert Gated.started == ["HOLD"] and studio.manager.jobs("cpu") == (0, 0)
    assert chat_final(studio, "b", "after").status == "ok"  # the device is free again


def test_a_load_from_the_models_tab_waits_its_turn_and_says_so(make_studio) -> None:
    studio = make_studio(QUEUE_MODELS)
    updates, _ = hold(studio)
    lines: list[str] = []

    def load() -> None:
        for line in studio.load_model("b", interval=0.02):
            lines.append(line)

    loader = in_thread(load)
    until(lambda: len(lines) >= 2, "progress lines")
    assert studio.manager.jobs("cpu") == (1, 1) and "b" not in studio.manager.loaded()  # the device is busy
    Gated.gate.set()
    list(updates)
    loader.join(WAIT_S)
    assert lines[:2] == ["b is waiting for its turn: 1 job ahead"] * 2
    assert lines[-1].startswith("b loaded in") and studio.manager.loaded() == ["a", "b"]


def test_jobs_per_device_lets_that_many_run_and_concurrent_loads_stay_in_budget(make_studio) -> None:
    body = QUEUE_MODELS.replace("models:\n", "memory_budget_gb: 1.0\njobs_per_device: 2\nmodels:\n")
    body = body.replace("source: fake/a}", "source: fake/a, memory_gb: 0.6, options: {load_wait: 0.2}}")
    body = body.replace("source: fake/b}", "source: fake/b, memory_gb: 0.6, options: {load_wait: 0.2}}")
    studio = make_studio(body)
    assert studio.manager.jobs_per_device == 2
    results: dict[str, object] = {}
    workers = [in_thread(lambda m=m: results.update({m: chat_final(studio, m, "x")})) for m in "ab"]
    for worker in workers:
        worker.join(WAIT_S)
    statuses = sorted(r.status for r in results.values())  # type: ignore[attr-defined]
    # Both ran at once, so their loads overlapped: the second could not reserve 0.6 GB more of 1.0 GB.
    assert statuses == ["error", "ok"]
    error = next(r.error for r in results.values() if r.status == "error")  # type: ignore[attr-defined]
    assert "no room for model" in error and "loading:" in error
    assert studio.manager.used("cpu") <= studio.manager.budget("cpu")
    assert len(studio.manager.loaded()) == 1


def test_the_setting_comes_from_models_yaml_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.config import ConfigError, load_config
    from studio.manager import ModelManager
    from tests.conftest import write_models

    def manager(body: str = QUEUE_MODELS) -> ModelManager:
        return ModelManager(load_config(write_models(tmp_path, body)), lambda spec: Gated(spec, None))  # type: ignore[arg-type]

    assert manager().jobs_per_device == 1
    assert manager(QUEUE_MODELS.replace("models:\n", "jobs_per_device: 2\nmodels:\n")).jobs_per_device == 2
    monkeypatch.setenv("STUDIO_JOBS_PER_DEVICE", "3")
    assert manager().jobs_per_device == 3
    monkeypatch.setenv("STUDIO_JOBS_PER_DEVICE", "many")
    with pytest.raises(ConfigError, match="STUDIO_JOBS_PER_DEVICE must be a whole number from 1 to 64"):
        manager()
    with pytest.raises(ConfigError, match="jobs_per_device"):
        load_config(
            write_models(tmp_path, QUEUE_MODELS.replace("models:\n", "jobs_per_device: 0\nmodels:\n"))
        )


def test_device_line_slots_and_release_are_exact() -> None:
    line = DeviceLine("cuda", slots=2)
    turns = [line.line_up() for _ in range(4)]
    assert [t.running for t in turns] == [True, True, False, False]
    assert [t.ahead() for t in turns] == [0, 0, 2, 3]
    turns[3].release()  # leaves the line from the back
    turns[0].release()
    turns[0].release()  # twice is harmless
    assert turns[2].wait(0) and line.counts() == (2, 0)
    stop = threading.Event()
    late = line.line_up()
    stop.set()
    assert list(late.waiting(stop)) == [] and late.state == "done" and line.counts() == (2, 0)


def test_a_thread_waiting_behind_its_own_running_turn_raises_at_once(make_studio) -> None:
    """What hung the benchmarks: `manager.use()` holds the device's turn, and a service call in the same
    thread lines up behind it. It must fail at once, saying why and what to do, and leave the line."""
    studio = make_studio(QUEUE_MODELS)
    manager = studio.manager
    with manager.use("a"):
        started = time.monotonic()
        deadlock = r"deadlock: this thread holds a running turn on the CPU"
        with pytest.raises(DeviceDeadlock, match=deadlock), manager.use("b"):
            pass
        final = chat_final(studio, "a", "x")  # the service's turn fails the same way, and is stored
        assert time.monotonic() - started < 1.0
        assert final.status == "error" and "manager.pin(model_id)" in final.error
        assert manager.jobs("cpu") == (1, 0)  # the failed waits left the line
    assert manager.jobs("cpu") == (0, 0) and Gated.started == []
    assert chat_final(studio, "b", "after").status == "ok"


def test_turns_held_by_generators_stepped_from_one_thread_do_not_raise(make_studio) -> None:
    """Gradio steps generators from a pool: one thread may step a job that runs and then one that waits
    behind it (or the same job from another thread). Neither is a deadlock."""
    studio = make_studio(QUEUE_MODELS)
    updates, _ = hold(studio)  # this thread stepped it to its running turn
    waiting = studio.chat(model_id="b", message="next")
    assert next(waiting).notices == ["Waiting for the CPU: 1 job ahead"]  # no DeviceDeadlock
    rest: list[object] = []
    other = in_thread(lambda: rest.extend(updates))  # the running job goes on in another thread
    Gated.gate.set()
    other.join(WAIT_S)
    assert rest[-1].status == "ok"  # type: ignore[attr-defined]
    assert list(waiting)[-1].status == "ok" and Gated.started == ["HOLD", "next"]
    line = DeviceLine("cpu")
    first, second = line.line_up(), line.line_up()  # no owner: generator-held
    assert first.running and not second.wait(0.01)  # waits, does not raise
    first.release()
    assert second.wait(0)


def test_pin_keeps_a_model_loaded_without_taking_a_turn(make_studio) -> None:
    studio = make_studio(QUEUE_MODELS)
    manager = studio.manager
    with manager.pin("a") as backend:  # loads it (in its turn), then holds no turn
        assert backend.spec.id == "a" and manager.loaded() == ["a"] and manager.jobs("cpu") == (0, 0)
        assert chat_final(studio, "a", "x").status == "ok"  # lines up as usual: no deadlock
        assert not manager.unload("a")  # pinned: not evictable
    assert manager.unload("a")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Studio, str]]:
    from tests.helpers.served import served_studio

    with served_studio(tmp_path, QUEUE_MODELS) as (studio, url):
        yield studio, url
        Gated.gate.set()


def test_every_model_running_event_shares_the_generation_queue(make_studio) -> None:
    """A tab left on its own queue of one would again make remote requests wait behind local ones."""
    from studio.ui import build_app
    from studio.ui.conversation import PARALLEL_RUNS
    from tests import test_audio  # noqa: F401  (registers the fake speech and music backends)

    more = "".join(
        f"  - {{id: {mid}, tabs: [{tab}], backend: fake-{kind}, source: fake/{mid}}}\n"
        for mid, tab, kind in (
            ("painter", "image", "image"),
            ("voice", "speech", "speech"),
            ("band", "music", "music"),
        )
    )
    fns = {fn.api_name: fn for fn in build_app(make_studio(QUEUE_MODELS + more)).fns.values() if fn.api_name}
    runs = [
        "chat",
        "regenerate",
        "continue",
        "code",
        "image",
        "speech",
        "music",
        "compare_chat",
        "load_model",
    ]
    assert {name: (fns[name].concurrency_id, fns[name].concurrency_limit) for name in runs} == dict.fromkeys(
        runs, ("generation", PARALLEL_RUNS)
    )
    assert not [name for name, fn in fns.items() if fn.concurrency_id == "gpu"]


def reply(chatbot: dict) -> str:
    """The last assistant message of a chatbot output from the API, without the line under it (seed,
    tokens)."""
    return str(chatbot["value"][-1]["content"][0]["text"]).split("\n\n<sub>")[0]


def test_through_the_app_a_remote_answer_overtakes_a_slow_local_one(served) -> None:
    from gradio_client import Client

    studio, url = served
    slow_client, remote_client, queued_client = (Client(url, verbose=False) for _ in range(3))
    slow = slow_client.submit("HOLD", None, "a", "", *SAMPLING, api_name="/chat")
    until(lambda: Gated.running == 1, "the local job to run")
    queued = queued_client.submit("second", None, "b", "", *SAMPLING, api_name="/chat")
    until(lambda: studio.manager.jobs("cpu") == (1, 1), "another local job to wait in the manager")
    chatbot, *_ = remote_client.predict("hello", None, "far", "", *SAMPLING, api_name="/chat")
    assert reply(chatbot) == "remote: hello"
    assert not slow.done() and not queued.done()  # the remote answer came first
    Gated.gate.set()
    assert reply(slow.result(timeout=WAIT_S)[0]) == "a: HOLD"
    assert reply(queued.result(timeout=WAIT_S)[0]) == "b: second"
    assert Gated.started == ["HOLD", "second"] and Gated.most == 1
