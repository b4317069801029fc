"""ModelManager: load on first use, LRU eviction of idle models, in-use protection, one load per model."""

from __future__ import annotations

import sys
import threading

import pytest

from studio.backends import BackendError
from tests.helpers.fakes import FakeChat


def test_lru_eviction_and_in_use_protection(make_studio, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_JOBS_PER_DEVICE", "2")  # two models in use at once on the CPU
    studio = make_studio(max_loaded=1)
    manager = studio.manager
    unloads = FakeChat.unloads
    with manager.use("fake") as backend:
        assert backend.loaded
        # The only slot is busy: a second model cannot evict it.
        with pytest.raises(BackendError, match="busy"), manager.use("fake-2"):
            pass
    assert manager.loaded() == ["fake"]
    with manager.use("fake-2"):
        pass
    assert manager.loaded() == ["fake-2"] and FakeChat.unloads == unloads + 1
    assert manager.unload("fake-2") and manager.loaded() == []


def test_concurrent_first_use_loads_once(make_studio) -> None:
    studio = make_studio(max_loaded=2)
    before = FakeChat.loads
    threads = [threading.Thread(target=studio.manager.preload, args=("fake",)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert FakeChat.loads == before + 1


def test_unknown_model(make_studio) -> None:
    with pytest.raises(KeyError, match="known models: fake, fake-2"), make_studio().manager.use("nope"):
        pass


def test_a_first_load_waits_for_the_import_warm_up(make_studio, monkeypatch, tmp_path) -> None:
    # `studio serve --no-preload` imports transformers in a thread; a load beside it once saw the half-made
    # lazy module. Here a slow module stands in for that import: the load must start after it is done.
    (tmp_path / "slow_model_library.py").write_text("import time\ntime.sleep(0.5)\nREADY = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_model_library", raising=False)
    studio = make_studio()
    seen: list[bool] = []

    def load(self: FakeChat) -> None:
        seen.append(hasattr(sys.modules.get("slow_model_library"), "READY"))

    monkeypatch.setattr(FakeChat, "load", load)
    warm = threading.Thread(target=studio.manager.warm_imports, args=("slow_model_library",))
    warm.start()
    while "slow_model_library" not in sys.modules:  # the import has begun
        pass
    studio.manager.preload("fake")
    warm.join()
    assert seen == [True]
