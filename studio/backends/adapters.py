"""LoRA adapters on a loaded base model, shared by the base and its variants and switched per request.

Owns: `SharedAdapters`, one per loaded base: attaching a peft adapter folder under a name (the variant's
model id) into the base model in place (no second copy of the base), detaching it (the last one out
unwraps the base), and `active(name)`, the block a generation runs in: the named adapter on, or every
adapter off for the base itself. A gate keeps requests from changing each other's adapter mid-answer:
while no adapter is attached, base requests run side by side; once one is, requests and attach/detach
take turns.
Ignores: where adapters come from (the service trains and registers them) and which requests run when
(the manager's device line). peft is imported inside `attach`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from studio.backends import BackendError


def _key(name: str) -> str:
    """A model id as a peft adapter name (torch module names cannot hold dots: qwen2.5-1.5b+dpo-4)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class SharedAdapters:
    """The adapters attached to one base model (`model`, a transformers model loaded by its backend)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.peft: Any = None  # the PeftModel wrapping `model` while any adapter is attached
        self.sizes: dict[str, int] = {}  # name -> bytes of its weights
        self._cond = threading.Condition()
        self._shared = 0  # base requests running side by side (no adapter attached)
        self._exclusive = False

    @contextmanager
    def _turn(self, exclusive: bool) -> Iterator[bool]:
        """Wait until this may run; yields True when it runs alone."""
        with self._cond:
            while self._exclusive or ((exclusive or self.peft is not None) and self._shared):
                self._cond.wait()
            alone = exclusive or self.peft is not None
            if alone:
                self._exclusive = True
            else:
                self._shared += 1
        try:
            yield alone
        finally:
            with self._cond:
                if alone:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()

    def attach(self, name: str, folder: Path) -> int:
        """Load the peft adapter in `folder` as `name`; returns the bytes its weights take."""
        from peft import PeftModel

        with self._turn(exclusive=True):
            if name in self.sizes:
                return self.sizes[name]
            try:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(self.model, str(folder), adapter_name=_key(name))
                else:
                    self.peft.load_adapter(str(folder), adapter_name=_key(name))
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                if self.peft is not None and not self.sizes:
                    self.peft = None
                raise BackendError(f"could not load the adapter {folder}: {exc}") from exc
            self.peft.eval()
            size = sum(
                p.numel() * p.element_size()
                for n, p in self.model.named_parameters()
                if f".{_key(name)}." in n
            )
            self.sizes[name] = size
            return size

    def detach(self, name: str) -> None:
        """Remove one adapter; the last one out unwraps the base model (its modules as they were)."""
        with self._turn(exclusive=True):
            if name not in self.sizes:
                return
            del self.sizes[name]
            if self.sizes:
                self.peft.delete_adapter(_key(name))
            else:
                self.peft.unload()  # every LoRA module out: the base model as it was loaded
                self.peft = None

    @contextmanager
    def active(self, name: str | None) -> Iterator[None]:
        """Run a request with adapter `name` on (None: the base, every adapter off)."""
        with self._turn(exclusive=False):
            if self.peft is None:
                if name is not None:
                    raise BackendError(f"the adapter of {name!r} is not loaded")
                yield
            elif name is None:
                with self.peft.disable_adapter():
                    yield
            else:
                if name not in self.sizes:
                    raise BackendError(f"the adapter of {name!r} is not loaded")
                self.peft.set_adapter(_key(name), inference_mode=True)
                yield
