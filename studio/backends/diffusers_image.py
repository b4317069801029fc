"""Backend `diffusers`: text-to-image and image-to-image with a diffusers pipeline run in-process.

Owns: loading a pipeline (Hub id or local folder) with `AutoPipelineForText2Image`, or a single-file SD/SDXL
`.safetensors` checkpoint with `from_single_file`, the image-to-image pipeline built from it on first use
(same components, no second copy), the scheduler chosen per request, one reproducible seed per picture,
progress per denoising step, stopping between steps, LoRAs from the model's `loras:` in models.yaml
(loaded once each, switched and scaled per request), a trained variant served on its loaded base (its
LoRA loaded into the base's pipeline under its own adapter name: one copy of the weights, one line of
jobs), and the pipeline folder training reads (`training_weights`).
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
from studio.backends.diffusers_loras import PipelineLoras
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
class DiffusersImage(PipelineLoras, Backend):
    kind = "diffusers"
    tabs = frozenset({"image"})
    Params = ImageParams
    Options = DiffusersOptions

    pipe: Any = None
    _base: DiffusersImage | None = None  # a variant: the loaded backend of its base

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
    def share_base(self, base: Backend) -> None:
        if not isinstance(base, DiffusersImage) or base.pipe is None:
            raise BackendError(f"the variant {self.spec.id!r} needs its base loaded by {self.kind}")
        self._base = base

    def training_weights(self) -> Path | str:
        """The pipeline folder (or Hub id) training loads the parts from; a single file cannot be."""
        where = weights_path(self.spec, self.context)
        if isinstance(where, Path) and where.is_file():
            raise BackendError(
                f"model {self.spec.id!r} is the single file {where.name}: training needs a diffusers "
                "pipeline folder (with model_index.json) or a Hub id"
            )
        return where

    def load(self) -> None:
        if self._base is not None:
            self._load_variant(self._base)
            return
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
        if self._base is not None:  # a variant: its LoRA goes, the base stays
            self._unload_variant(self._base)
            return
        self._worker.shutdown()
        self.pipe = None
        self._img2img = None
        self._loaded_loras = set()
        release_accelerator_memory()

    def memory_bytes(self) -> int:
        if self._base is not None:  # a variant adds its LoRA only: the base is counted once, as itself
            return self._adapter_bytes
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
        if self._base is not None:
            return self._base.img2img_pipeline()
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
