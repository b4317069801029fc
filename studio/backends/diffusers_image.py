"""Backend `diffusers`: text-to-image and image-to-image with a diffusers pipeline run in-process.

Owns: loading a pipeline (Hub id or local folder) with `AutoPipelineForText2Image`, or a single-file SD/SDXL
`.safetensors` checkpoint with `from_single_file`, the image-to-image pipeline built from it on first use
(same components, no second copy), the scheduler chosen per request, one reproducible seed per picture,
progress per denoising step, stopping between steps, and LoRAs from the model's `loras:` in models.yaml
(loaded once each, switched and scaled per request).
Ignores: storage, validation of user input (the service did it) and which tab asked.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from studio import sources
from studio.backends import (
    Backend,
    BackendError,
    Event,
    ImageOutput,
    Notice,
    Progress,
    Request,
    register,
    release_accelerator_memory,
    short_error,
)
from studio.backends.loading import device_and_dtype, parameter_bytes, unreadable_weights, weights_path
from studio.backends.params import SCHEDULERS, ImageParams
from studio.backends.worker import Worker
from studio.config import LoraSpec

log = logging.getLogger(__name__)

# ImageParams.scheduler name -> diffusers class; "default" is the scheduler the model was saved with.
_SCHEDULER_CLASSES = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",
}

_SEED_SPACE = 2**32  # seeds stay valid ImageParams.seed values: image i uses (seed + i) mod 2**32


class DiffusersOptions(BaseModel):
    """`options:` of a diffusers model in models.yaml: memory savers for small GPUs, and compilation."""

    model_config = ConfigDict(extra="forbid")

    attention_slicing: bool = False  # less peak memory, a little slower
    vae_tiling: bool = False  # decode large pictures tile by tile
    cpu_offload: Literal["none", "model", "sequential"] = "none"  # keep idle parts in RAM (needs CUDA)
    compile: bool = False  # torch.compile the denoiser: slow first run, faster after (opt-in)
    # A single-file checkpoint's pipeline configuration: a diffusers folder (relative to models.yaml) or Hub
    # id of the same architecture. Unset: the Hub repo diffusers picks for the checkpoint (online once).
    config: str | None = None


@register
class DiffusersImage(Backend):
    kind = "diffusers"
    tabs = frozenset({"image"})
    Params = ImageParams
    Options = DiffusersOptions

    pipe: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device = "cpu"
        self._img2img: Any = None
        self._scheduler_class: Any = None
        self._scheduler_config: Any = None
        self._schedulers: dict[str, Any] = {}
        self._loaded_loras: set[str] = set()
        # One generation at a time: the scheduler, active LoRA and interrupt flag live on the pipeline.
        self._worker = Worker(f"generate-{self.spec.id}")

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        where = weights_path(self.spec, self.context)
        options = DiffusersOptions.model_validate(self.spec.options)
        if isinstance(where, Path) and where.is_file() and where.suffix != ".safetensors":
            # A .ckpt is a pickle, which can run code when loaded: only safetensors single files are read.
            raise BackendError(
                f"model {self.spec.id!r}: the diffusers backend loads a pipeline folder (with "
                f"model_index.json), a Hub id or a single-file .safetensors checkpoint, not {where.name}"
            )
        import torch
        from diffusers import AutoPipelineForText2Image

        device, dtype = device_and_dtype(self.spec)
        try:
            if isinstance(where, Path) and where.is_file():
                pipe: Any = self._single_file(where, dtype, options)
            else:
                pipe = AutoPipelineForText2Image.from_pretrained(where, dtype=dtype)
        except OSError as exc:
            raise unreadable_weights(self.spec, where, exc, "diffusers pipeline folder") from None
        except ValueError as exc:  # e.g. AutoPipeline knows no text-to-image pipeline for this model
            why = short_error(exc)
            raise BackendError(
                f"model {self.spec.id!r} is not a text-to-image pipeline diffusers can run: {why}"
            ) from None
        if options.cpu_offload != "none":
            if device != "cuda":
                raise BackendError(
                    f"model {self.spec.id!r}: cpu_offload needs device cuda (or auto on a GPU)"
                )
            # Offloading places each part on the GPU when it runs; the pipeline must not be moved first.
            offload = (
                "enable_model_cpu_offload"
                if options.cpu_offload == "model"
                else "enable_sequential_cpu_offload"
            )
            getattr(pipe, offload)()
        else:
            pipe = pipe.to(device)
        if options.attention_slicing:
            pipe.enable_attention_slicing()
        if options.vae_tiling:
            pipe.vae.enable_tiling()
        if options.compile:
            denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
            setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser)))
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = device
        # Schedulers are rebuilt from the saved configuration, so "default" always means the model's own.
        self._scheduler_class = type(pipe.scheduler)
        self._scheduler_config = pipe.scheduler.config
        self._schedulers = {}
        self._img2img = None
        self._loaded_loras = set()

    def _single_file(self, path: Path, dtype: Any, options: DiffusersOptions) -> Any:
        """A single-file Stable Diffusion or SDXL checkpoint (as A1111 and civitai share them) through
        diffusers' `from_single_file`. Its pipeline configuration comes from `options.config` (a diffusers
        folder or Hub id) or, without it, from the Hub repo diffusers picks for the checkpoint's type."""
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
        from safetensors import safe_open

        with safe_open(str(path), "pt") as checkpoint:  # reads the header only
            sdxl = any(key.startswith("conditioner.embedders.1.") for key in checkpoint.keys())  # noqa: SIM118
        pipeline = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
        kwargs: dict[str, Any] = {"torch_dtype": dtype}
        if options.config:
            local = Path(options.config).expanduser()
            local = local if local.is_absolute() else self.context.base_dir / local
            kwargs["config"] = str(local) if local.exists() else options.config
        try:
            return pipeline.from_single_file(str(path), **kwargs)
        except Exception as exc:  # diffusers raises its own SingleFileComponentError, ValueError, KeyError...
            if isinstance(exc, OSError) and os.environ.get("HF_HUB_OFFLINE") == "1":
                raise BackendError(
                    f"model {self.spec.id!r}: the single-file checkpoint needs its pipeline configuration "
                    "from the Hub; set `options: {config: <diffusers folder or Hub id>}` in models.yaml"
                ) from None
            raise BackendError(
                f"model {self.spec.id!r}: {path.name} is not a Stable Diffusion or SDXL checkpoint diffusers "
                f"can read: {short_error(exc)}"
            ) from None

    def unload(self) -> None:
        self._worker.shutdown()
        self.pipe = None
        self._img2img = None
        self._loaded_loras = set()
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        if self.pipe is None:
            return 0
        import torch

        modules = [c for c in self.pipe.components.values() if isinstance(c, torch.nn.Module)]
        return sum(parameter_bytes(module) for module in modules)

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8) or 8)

    def img2img_pipeline(self) -> Any:
        """The image-to-image pipeline over the same components (built once, shares every module)."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            try:
                pipe: Any = AutoPipelineForImage2Image.from_pipe(self.pipe)
            except ValueError as exc:
                raise BackendError(
                    f"model {self.spec.id!r} cannot do image-to-image: {short_error(exc)}"
                ) from None
            pipe.set_progress_bar_config(disable=True)
            self._img2img = pipe
        return self._img2img

    # -- per-request set-up ------------------------------------------------------------------------
    def _scheduler(self, name: str) -> Any:
        """One scheduler per name, built once: `set_timesteps` resets its state at the start of every run,
        and building one from its config costs about a millisecond (benchmarks/image_overhead.py)."""
        if name in self._schedulers:
            return self._schedulers[name]
        if name == "default":
            built = self._scheduler_class.from_config(self._scheduler_config)
        else:
            try:
                class_name = _SCHEDULER_CLASSES[name]
            except KeyError:
                raise BackendError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}") from None
            import diffusers

            built = getattr(diffusers, class_name).from_config(self._scheduler_config)
        self._schedulers[name] = built
        return built

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
        """Activate one LoRA at `scale`, or none; each LoRA's weights are loaded on first use only."""
        if lora is None:
            if self._loaded_loras:
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
        self.pipe.set_adapters([lora.id], adapter_weights=[scale])

    def _forget_adapter(self, adapter: str) -> None:
        """After a failed load, drop whatever part of the adapter was injected so a retry starts clean."""
        try:
            present = {name for names in self.pipe.get_list_adapters().values() for name in names}
            if adapter in present:
                self.pipe.delete_adapters(adapter)
        except Exception:  # best effort: the error being reported matters more
            log.debug("could not remove the partly loaded LoRA %s", adapter, exc_info=True)

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: Request) -> Generator[Event, None, None]:
        if self.pipe is None:
            raise BackendError("backend used before load()")
        params = request.params
        assert isinstance(params, ImageParams)
        factor = self.vae_scale_factor
        if params.width % factor or params.height % factor:
            raise BackendError(
                f"model {self.spec.id!r} needs width and height that are multiples of {factor}; "
                f"got {params.width}x{params.height}"
            )
        lora = self._lora_spec(params.lora)
        init_image = request.init_image
        if init_image is not None and int(params.steps * params.strength) < 1:
            raise BackendError(
                f"image-to-image runs steps x strength = {params.steps} x {params.strength} steps, "
                "which is less than one; raise steps or strength"
            )
        seed = params.seed if params.seed is not None else secrets.randbelow(_SEED_SPACE)
        seeds = [(seed + i) % _SEED_SPACE for i in range(params.num_images)]

        stop = request.stop

        def work(events: queue.Queue[Any], abandoned: threading.Event) -> Any:
            def on_step_end(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                events.put(Progress(i + 1, int(getattr(pipe, "num_timesteps", 0) or 0)))
                if stop.is_set() or abandoned.is_set():
                    pipe._interrupt = True  # diffusers' own flag: the loop skips the remaining steps
                return tensors

            return self._run(request, params, lora, seeds, on_step_end)

        result = yield from self._worker.run(work, stop=stop, what="image generation")
        if stop.is_set() or result is None:
            return  # stopped: a half-denoised picture is noise, so none is returned
        images, flagged = result
        for i in range(len(images)):
            if flagged and flagged[i]:
                yield Notice(f"image {i + 1} was blacked out by the model's safety checker")
        for i, image in enumerate(images):
            yield ImageOutput(image=image, seed=seeds[i], index=i)

    def _run(
        self, request: Request, params: ImageParams, lora: LoraSpec | None, seeds: list[int], callback: Any
    ) -> tuple[list[Any], list[bool] | None]:
        """Set the pipeline up for this request and run it (under the lock, in the worker thread)."""
        import torch

        img2img = request.init_image is not None
        pipe = self.img2img_pipeline() if img2img else self.pipe
        pipe.scheduler = self._scheduler(params.scheduler)
        self._use_lora(lora, params.lora_scale)
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": params.negative_prompt or None,
            "num_inference_steps": params.steps,
            "guidance_scale": params.guidance,
            "num_images_per_prompt": params.num_images,
            # One generator per picture: picture i is reproducible alone with seed + i.
            "generator": [torch.Generator(device=self.device).manual_seed(s) for s in seeds],
            "callback_on_step_end": callback,
            "output_type": "pil",
        }
        if img2img:
            kwargs["image"] = request.init_image.resize((params.width, params.height))
            kwargs["strength"] = params.strength
        else:
            kwargs["width"] = params.width
            kwargs["height"] = params.height
        out = pipe(**kwargs)
        flagged = getattr(out, "nsfw_content_detected", None)
        return list(out.images), list(flagged) if flagged is not None else None
