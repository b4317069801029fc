"""A fake chat backend for fast UI, service and storage tests; never the proof that a model works."""

from __future__ import annotations

import threading
from collections.abc import Generator

from studio.backends import (
    Backend,
    BackendError,
    ImageOutput,
    Notice,
    Progress,
    Request,
    TextDelta,
    Usage,
    register,
)
from studio.backends.params import ChatParams, ImageParams
from studio.config import ModelSpec


def fake_weights(cls: type, spec: ModelSpec) -> str:
    """A test double's weights status (it has no weight files): 'missing' in its source plays a model
    that is not downloaded, anything else is ready. Use as `weights_status = classmethod(fake_weights)`."""
    return "not downloaded" if "missing" in spec.source else "ready"


@register
class FakeChat(Backend):
    """Echoes the prompt word by word. Prompts containing 'FAIL' raise; 'SLOW' waits for Stop."""

    kind = "fake-chat"
    tabs = frozenset({"chat", "code"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)
    loads = 0
    unloads = 0

    def load(self) -> None:
        if "missing" in self.spec.source:
            raise BackendError(
                f"model {self.spec.id!r} is not downloaded; run `studio models pull {self.spec.id}`"
            )
        if "broken" in self.spec.source:  # weights that are here but fail to load: a run that ends in error
            raise BackendError(f"model {self.spec.id!r}: the fake weights are broken on purpose")
        type(self).loads += 1
        self.loaded = True

    def unload(self) -> None:
        type(self).unloads += 1
        self.loaded = False

    def generate(self, request: Request) -> Generator[TextDelta | Notice | Usage, None, None]:
        assert isinstance(request.params, ChatParams)
        if "FAIL" in request.prompt:
            raise BackendError("the fake model failed on purpose")
        if len(request.history) > 6:
            yield Notice("2 oldest message(s) were left out to fit the model's context")
        words = f"echo: {request.prompt}".split()
        if "SLOW" in request.prompt:
            words = words * 1000
        sent = 0
        for word in words[: request.params.max_new_tokens]:
            if request.stop.is_set():
                break
            if "SLOW" in request.prompt:
                threading.Event().wait(0.005)
            yield TextDelta(word + " ")
            sent += 1
        yield Usage(prompt_tokens=len(request.prompt.split()), completion_tokens=sent)


@register
class FakeImage(Backend):
    """Solid-colour pictures whose colour depends on the seed; 'FAIL' raises, 'SLOW' waits for Stop."""

    kind = "fake-image"
    tabs = frozenset({"image"})
    Params = ImageParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[Progress | ImageOutput, None, None]:
        from PIL import Image

        params = request.params
        assert isinstance(params, ImageParams) and params.seed is not None
        if "FAIL" in request.prompt:
            raise BackendError("the fake painter failed on purpose")
        steps = 10_000 if "SLOW" in request.prompt else params.steps
        for step in range(1, steps + 1):
            if request.stop.is_set():
                return
            if "SLOW" in request.prompt:
                threading.Event().wait(0.002)
            yield Progress(step, steps)
        for i in range(params.num_images):
            seed = params.seed + i
            colour = (seed % 256, (seed // 256) % 256, 128 if request.init_image is None else 7)
            yield ImageOutput(Image.new("RGB", (params.width, params.height), colour), seed, i)
