"""LoRAs in a loaded diffusers pipeline: the model's own (models.yaml `loras:`) and a trained variant's.

Owns: finding a models.yaml LoRA (local file or folder, Hub id, offline cache), loading each into the
pipeline once under its id, activating per request the variant's LoRA (at 1) and the chosen one (at its
scale) or none, dropping a half-loaded adapter after a failure, and a trained variant's LoRA loaded into
its base's pipeline under the variant's own adapter name, with this backend then running the base's
pipeline in the base's line of jobs (the active adapters live on the pipeline; one job at a time).
Ignores: loading the pipeline and generating (diffusers_image.py). diffusers is imported inside.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from studio import sources
from studio.backends import BackendContext, BackendError, short_error
from studio.backends.loading import weights_path
from studio.backends.worker import Worker
from studio.config import LoraSpec, ModelSpec

log = logging.getLogger(__name__)


class PipelineLoras:
    """Mixed into the diffusers backend: the LoRA state of its pipeline (`pipe`)."""

    spec: ModelSpec
    context: BackendContext
    pipe: Any
    device: str
    _worker: Worker
    _loaded_loras: set[str]
    _schedulers: dict[str, Any]
    _scheduler_class: Any
    _scheduler_config: Any
    _adapter: str | None = None  # a variant: its LoRA's adapter name in the base's pipeline
    _adapter_bytes = 0

    def _lora_spec(self, lora_id: str | None) -> LoraSpec | None:
        if lora_id is None:
            return None
        for lora in self.spec.loras:
            if lora.id == lora_id:
                return lora
        known = ", ".join(repr(lo.id) for lo in self.spec.loras) or "none"
        raise BackendError(f"model {self.spec.id!r} has no LoRA {lora_id!r}; its LoRAs: {known}")

    def _lora_location(self, lora: LoraSpec) -> tuple[str, str | None]:
        """Where `load_lora_weights` finds the LoRA: (folder or Hub id, weight file name or None)."""
        src = sources.parse_source(lora.source, self.context.base_dir)
        if isinstance(src, sources.PipSource):
            raise BackendError(f"LoRA {lora.id!r}: pip: sources are not supported for LoRAs")
        if isinstance(src, sources.LocalSource):
            if not src.path.exists():
                raise BackendError(f"LoRA {lora.id!r} of model {self.spec.id!r}: {src.path} does not exist")
            if src.path.is_file():
                return str(src.path.parent), lora.weight_name or src.path.name
            return str(src.path), lora.weight_name
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            # Offline, diffusers cannot list a Hub repo to guess the weight file; a cached snapshot it can.
            from huggingface_hub import snapshot_download

            try:
                return snapshot_download(src.repo_id, local_files_only=True), lora.weight_name
            except Exception:  # LocalEntryNotFoundError and friends: anything means "not here"
                raise BackendError(
                    f"LoRA {lora.id!r} ({src.repo_id}) is not downloaded and the Hub is offline; fetch it "
                    f"once with the internet (`hf download {src.repo_id}`)"
                ) from None
        return src.repo_id, lora.weight_name

    def _use_lora(self, lora: LoraSpec | None, scale: float) -> None:
        """Activate one LoRA at `scale` (with a variant's own, at 1), or none; each LoRA's weights are loaded
        on first use only."""
        names, weights = ([self._adapter], [1.0]) if self._adapter else ([], [])
        if lora is None:
            if names:
                self.pipe.enable_lora()
                self.pipe.set_adapters(names, adapter_weights=weights)
            elif self._loaded_loras:
                self.pipe.disable_lora()
            return
        from diffusers.utils import USE_PEFT_BACKEND

        if not USE_PEFT_BACKEND:
            raise BackendError("LoRAs need the `peft` package; install it with `pip install peft`")
        if lora.id not in self._loaded_loras:
            where, weight_name = self._lora_location(lora)
            try:
                self.pipe.load_lora_weights(where, weight_name=weight_name, adapter_name=lora.id)
            except OSError as exc:
                raise BackendError(f"LoRA {lora.id!r} could not be loaded: {short_error(exc)}") from None
            except (ValueError, KeyError, RuntimeError) as exc:
                self._forget_adapter(lora.id)
                raise BackendError(
                    f"LoRA {lora.id!r} does not fit model {self.spec.id!r}: {short_error(exc)}"
                ) from None
            self._loaded_loras.add(lora.id)
        self.pipe.enable_lora()
        self.pipe.set_adapters([*names, lora.id], adapter_weights=[*weights, scale])

    def _forget_adapter(self, adapter: str) -> None:
        """After a failed load, drop whatever part of the adapter was injected so a retry starts clean."""
        try:
            present = {name for names in self.pipe.get_list_adapters().values() for name in names}
            if adapter in present:
                self.pipe.delete_adapters(adapter)
        except Exception:  # best effort: the error being reported matters more
            log.debug("could not remove the partly loaded LoRA %s", adapter, exc_info=True)

    def _load_variant(self, base: PipelineLoras) -> None:
        """The variant's LoRA into its base's pipeline, under the variant's own adapter name; then this
        backend runs that pipeline in the base's line of jobs (the active adapters live on the pipeline)."""
        folder = weights_path(self.spec, self.context)
        if isinstance(folder, str) or not folder.is_dir():
            raise BackendError(f"the LoRA folder of {self.spec.id!r} ({folder}) is missing")
        name = re.sub(r"[^A-Za-z0-9_]", "_", self.spec.id)  # module names hold no dots or pluses
        with base._worker.lock:  # not while a picture of the base (or another variant) is being drawn
            if name not in base._loaded_loras:
                try:
                    base.pipe.load_lora_weights(str(folder), adapter_name=name)
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    base._forget_adapter(name)
                    raise BackendError(
                        f"the LoRA of {self.spec.id!r} does not fit {base.spec.id!r}: {short_error(exc)}"
                    ) from None
                base._loaded_loras.add(name)  # shared: a base request turns every adapter off
        self.pipe, self.device, self._worker = base.pipe, base.device, base._worker
        self._scheduler_class, self._scheduler_config = base._scheduler_class, base._scheduler_config
        self._schedulers, self._loaded_loras = base._schedulers, base._loaded_loras
        self._adapter = name
        self._adapter_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    def _unload_variant(self, base: PipelineLoras) -> None:
        """Take the variant's LoRA out of its base's pipeline; the base stays loaded."""
        name = self._adapter
        with base._worker.lock:
            if base.pipe is not None and name in base._loaded_loras:
                base._forget_adapter(name)
            if name is not None:
                base._loaded_loras.discard(name)
        self.pipe, self._adapter = None, None
