"""ModelManager's memory budget with sized fake backends: eviction order, in-use protection, refusing a model
bigger than the budget, measured sizes replacing estimates, budgets from models.yaml and the environment,
estimates from weights on disk, load progress and the Models panel's rows."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from studio.backends import Backend, BackendError, Request, TextDelta, register
from studio.backends.params import ChatParams
from studio.config import ConfigError, parse_budget, parse_size
from studio.errors import StudioError
from studio.manager.memory import GB, MB
from tests.helpers.fakes import fake_weights


class SizedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actual_mb: int | None = None  # what memory_bytes() reports after load (default: memory_gb)
    load_wait: float = 0.0


@register
class SizedFake(Backend):
    """Reports a chosen size after load; unloads are recorded in order."""

    kind = "sized-fake"
    tabs = frozenset({"chat"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    Options = SizedOptions
    unloaded: list[str] = []  # noqa: RUF012  (a shared log on purpose)

    def load(self) -> None:
        self.options = SizedOptions.model_validate(self.spec.options)
        threading.Event().wait(self.options.load_wait)

    def unload(self) -> None:
        type(self).unloaded.append(self.spec.id)

    def memory_bytes(self) -> int:
        if self.options.actual_mb is not None:
            return self.options.actual_mb * MB
        return int((self.spec.memory_gb or 0) * GB)

    def generate(self, request: Request) -> Generator[TextDelta, None, None]:
        yield TextDelta("ok")


def sized(budget: str = "memory_budget_gb: 1.0", **extra: str) -> str:
    entries = {"a": "memory_gb: 0.4", "b": "memory_gb: 0.4", "c": "memory_gb: 0.4", "huge": "memory_gb: 2.0"}
    entries.update(extra)
    body = "".join(
        f"  - id: {mid}\n    tabs: [chat]\n    backend: sized-fake\n    source: fake/{mid}\n    {spec}\n"
        for mid, spec in entries.items()
    )
    return f"{budget}\nmodels:\n{body}"


@pytest.fixture(autouse=True)
def _no_env_budget(monkeypatch) -> None:
    monkeypatch.delenv("STUDIO_MEMORY_BUDGET", raising=False)
    SizedFake.unloaded.clear()


def test_least_recently_used_idle_model_is_evicted(make_studio) -> None:
    manager = make_studio(sized()).manager
    manager.preload("a")
    manager.preload("b")
    with manager.use("a"):  # a becomes the most recently used
        pass
    manager.preload("c")  # 0.4 * 3 > 1.0: the least recently used (b) goes
    assert manager.loaded() == ["a", "c"] and SizedFake.unloaded == ["b"]
    assert manager.used("cpu") == int(0.4 * GB) * 2


def test_models_in_use_are_never_evicted(make_studio) -> None:
    manager = make_studio(sized("memory_budget_gb: 1.0\njobs_per_device: 3")).manager  # a, b and c at once
    with manager.use("a"), manager.use("b"):
        with pytest.raises(BackendError, match=r"no room for model 'c'.*busy \(in use: a, b"):
            manager.preload("c")
        assert manager.loaded() == ["a", "b"] and SizedFake.unloaded == []
    manager.preload("c")  # both idle now: the least recently used makes room
    assert manager.loaded() == ["b", "c"] and SizedFake.unloaded == ["a"]


def test_a_model_bigger_than_the_whole_budget_is_refused_and_nothing_is_evicted(make_studio) -> None:
    studio = make_studio(sized())
    studio.manager.preload("a")
    with pytest.raises(
        BackendError, match=r"'huge' needs about 2.00 GB of RAM but the whole memory budget is 1.00 GB"
    ):
        studio.manager.preload("huge")
    assert studio.manager.loaded() == ["a"] and SizedFake.unloaded == []


def test_measured_size_replaces_the_estimate_and_makes_room_after_the_fact(make_studio) -> None:
    manager = make_studio(sized(c="memory_gb: 0.1\n    options: {actual_mb: 500}")).manager
    manager.preload("a")
    manager.preload("b")
    manager.preload("c")  # estimated 0.1 GB fits beside a and b; measured 500 MB does not
    assert manager.loaded() == ["b", "c"] and SizedFake.unloaded == ["a"]
    state = {s.id: s for s in manager.states()}["c"]
    assert state.measured and state.memory_bytes == 500 * MB


def test_budget_from_the_environment_wins_over_models_yaml(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "cpu=900MB,cuda=20GB")
    manager = make_studio(sized()).manager
    assert manager.budget("cpu") == 900 * MB and manager.budget("cuda") == 20 * GB
    manager.preload("a")
    manager.preload("b")  # 800 MB fit in 900 MB
    manager.preload("c")
    assert manager.loaded() == ["b", "c"]
    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "lots")
    with pytest.raises(ConfigError, match=r"STUDIO_MEMORY_BUDGET must be a size such as 12GB .* not 'lots'"):
        make_studio(sized())


def test_sizes_and_per_pool_budgets_parse() -> None:
    assert parse_size("8GB") == parse_size("8") == parse_size("8 GiB") == 8 * GB
    assert parse_size("512MB") == parse_size("512m") == 512 * MB
    assert parse_budget("2GB") == {"cpu": 2 * GB, "cuda": 2 * GB}
    with pytest.raises(ValueError, match="unknown memory pool 'tpu'"):
        parse_budget("tpu=3GB")


def test_default_budget_comes_from_the_machine(make_studio) -> None:
    manager = make_studio(sized(budget="")).manager
    ram = Path("/proc/meminfo").read_text().split()[1]  # kB
    assert 0.5 * int(ram) * 1024 < manager.budget("cpu") <= int(ram) * 1024


def test_estimate_before_load_comes_from_the_weights_on_disk(make_studio, tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    (folder / "unet").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 3000)
    (folder / "unet" / "diffusion.safetensors").write_bytes(b"\0" * 2000)
    (folder / "model.bin").write_bytes(b"\0" * 9999)  # the same weights in the other format: not counted
    (folder / "q.gguf").write_bytes(b"\0" * 100)
    body = sized() + "".join(
        f"  - id: {mid}\n    tabs: [chat]\n    backend: sized-fake\n    source: {src}\n"
        for mid, src in (("d", folder), ("e", folder / "q.gguf"))
    )
    studio = make_studio(body)
    estimates = {s.id: s.memory_bytes for s in studio.manager.states()}
    assert estimates["d"] == 5000 and estimates["e"] == 550 and estimates["a"] == int(0.4 * GB)


def test_load_progress_and_the_models_panel_rows(make_studio) -> None:
    studio = make_studio(sized(b="memory_gb: 0.4\n    options: {load_wait: 0.6}"))
    lines = list(studio.load_model("b", interval=0.1))
    assert lines[0].startswith("loading b (about 410 MB): 0.") and len(lines) >= 3
    assert lines[-1].startswith("b loaded in 0.6")
    rows = {r.id: r for r in studio.model_rows()}
    assert rows["b"].status == "loaded" and rows["b"].memory == "410 MB"
    assert rows["a"].status == "ready" and rows["a"].memory == "~410 MB"
    assert "RAM: 410 MB of 1.00 GB used by models" in studio.memory_summary()
    with pytest.raises(StudioError, match=r"could not load huge: model 'huge' needs about 2\.00 GB"):
        list(studio.load_model("huge"))
    with pytest.raises(StudioError, match="unknown model 'nope'"):
        list(studio.load_model("nope"))
    with studio.manager.use("b"), pytest.raises(StudioError, match="b is in use"):
        studio.unload_model("b")
    assert studio.unload_model("b") == "b unloaded" and studio.unload_model("b") == "b is not loaded"


def test_chat_through_the_budget_stores_every_turn(make_studio) -> None:
    studio = make_studio(sized())
    for mid in ("a", "b", "c", "a"):
        final = list(studio.chat(model_id=mid, message="hi"))[-1]
        assert final.status == "ok" and final.text == "ok"
    refused = list(studio.chat(model_id="huge", message="hi"))[-1]
    assert refused.status == "error" and "whole memory budget is 1.00 GB" in (refused.error or "")
    assert studio.manager.loaded() == ["c", "a"]
    assert [h["status"] for h in studio.history(limit=10)] == ["error", "ok", "ok", "ok", "ok"]
