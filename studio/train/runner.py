"""Running one training: records in, a LoRA adapter folder and metrics events out (TRL + peft).

Owns: loading the base for training (float32 on the CPU; a sequence-classification head for a reward model),
the peft LoRA config, TRL's SFTTrainer, DPOTrainer, KTOTrainer or RewardTrainer (with a LoRA adapter TRL's
reference model is the base with the adapter off: no second copy in memory), a callback that reports each
optimizer step (`Step`: metrics, tokens/s, ETA), stops within one optimizer step when the stop flag is set
and on a NaN or infinite loss, held-out metrics at the end, and saving the adapter atomically (into
`<out>.partial`, renamed when complete: a full disk leaves no half adapter behind).
Ignores: where records come from and where results are stored (the service), the device line (the
service holds its turn while this runs). torch, transformers, trl and peft are imported inside `run`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.train.params import Hyperparams, trainer_kwargs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """What the run is doing now: loading, preparing, training, evaluating or saving."""

    name: str


@dataclass(frozen=True)
class Step:
    """One optimizer step done (step 0: training starts), with its logged metrics."""

    step: int
    total: int
    epoch: float
    metrics: dict[str, float]
    elapsed_s: float
    eta_s: float | None


TrainEvent = Phase | Step


@dataclass
class Outcome:
    """How a training ended. `status` is ok, stopped (the flag, or a NaN loss: `error` says which)."""

    status: str
    error: str | None = None
    steps: int = 0
    total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # the last step's, plus the run's summary
    eval_metrics: dict[str, float] = field(default_factory=dict)  # held out, at the end ("eval_" names)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step: the curve
    adapter: Path | None = None


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _watch_class() -> type:
    from transformers import TrainerCallback

    class Watch(TrainerCallback):
        """Relays each step, stops on the flag (checked after every optimizer step and micro-step) and
        on a loss that is not a finite number."""

        def __init__(self, stop: threading.Event, emit: Callable[[TrainEvent], None], lr: float) -> None:
            self.stop, self.emit, self.lr = stop, emit, lr
            self.total = 0
            self.started = time.perf_counter()
            self.history: list[dict[str, float]] = []
            self.last: dict[str, float] = {}
            self.summary: dict[str, float] = {}
            self.bad: str | None = None
            self._tokens: tuple[float, float] | None = None  # (num_tokens, time) at the last log

        def _halt(self, control: Any) -> None:
            if self.stop.is_set() or self.bad:
                control.should_training_stop = True

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.total = int(state.max_steps)
            self.started = time.perf_counter()
            self.emit(Step(0, self.total, 0.0, {}, 0.0, None))
            self._halt(control)

        def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._halt(control)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._halt(control)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            values = _numbers(logs or {})
            if "loss" not in values:  # the run's summary (train_loss, train_runtime) or an evaluation
                if "train_loss" in values:
                    self.summary = values
                return
            now = time.perf_counter()
            if "num_tokens" in values:
                if self._tokens is not None and now > self._tokens[1]:
                    rate = (values["num_tokens"] - self._tokens[0]) / (now - self._tokens[1])
                    values["tokens_per_second"] = rate
                self._tokens = (values["num_tokens"], now)
            step = int(state.global_step)
            elapsed = now - self.started
            eta = elapsed / step * max(self.total - step, 0) if step else None
            broken = [k for k in ("loss", "grad_norm") if k in values and not math.isfinite(values[k])]
            if broken:
                self.bad = (
                    f"the {broken[0].replace('_', ' ')} became {values[broken[0]]} at step {step}: training "
                    f"stopped; lower the learning rate (it was {self.lr:g})"
                )
                control.should_training_stop = True
            values = {k: v for k, v in values.items() if math.isfinite(v)}  # JSON (and PostgreSQL): no NaN
            self.last = values
            self.history.append({"step": float(step), **values})
            self.emit(Step(step, self.total, float(state.epoch or 0.0), values, elapsed, eta))

    return Watch


_TRAINERS = {
    "sft": ("SFTTrainer", "SFTConfig"),
    "dpo": ("DPOTrainer", "DPOConfig"),
    "kto": ("KTOTrainer", "KTOConfig"),
    "reward": ("RewardTrainer", "RewardConfig"),
}


def save_atomically(out: Path, write: Callable[[Path], None]) -> Path:
    """Run `write` into `<out>.partial` and rename it to `out` once complete; on any failure (a full disk)
    remove the partial folder and raise: `out` then does not exist, never half written."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write(partial)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def save_adapter(model: Any, out: Path) -> Path:
    """Write a peft model's adapter to `out` (`save_atomically`)."""
    return save_atomically(out, lambda folder: model.save_pretrained(str(folder)))


def run(
    method: str,
    *,
    base: str | Path,
    train_records: list[dict[str, Any]],
    eval_records: list[dict[str, Any]],
    out: Path,
    params: Hyperparams,
    stop: threading.Event,
    emit: Callable[[TrainEvent], None] = lambda event: None,
    device: str = "cpu",
) -> Outcome:
    """Train a LoRA adapter of `base` (a transformers folder or Hub id) on records already shaped by
    `data.for_trainer`; save it to `out` unless stopped. Exceptions (a failed load, a full disk) propagate."""
    import datasets
    import torch
    import trl
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
        ProgressCallback,
    )
    from transformers.utils import logging as hf_logging

    bars = not datasets.are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        emit(Phase("loading"))
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        tokenizer = AutoTokenizer.from_pretrained(base)
        dtype = torch.bfloat16 if bf16 else torch.float32
        if method == "reward":  # a score head (one number) on the base: TRL's RewardTrainer trains it
            model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        context = getattr(model.config, "max_position_embeddings", None)
        kwargs = trainer_kwargs(method, params, device=device, bf16=bf16)
        if context:
            kwargs["max_length"] = min(params.max_length, int(context))
        lora = LoraConfig(
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=params.targets(),
            # SEQ_CLS: peft trains and saves the new score head in full next to the LoRA weights.
            task_type="SEQ_CLS" if method == "reward" else "CAUSAL_LM",
        )
        if stop.is_set():
            return Outcome("stopped")
        emit(Phase("preparing"))
        trainer_name, config_name = _TRAINERS[method]
        with tempfile.TemporaryDirectory(prefix="studio-train-") as work:
            config = getattr(trl, config_name)(output_dir=work, **kwargs)
            watch = _watch_class()(stop, emit, params.learning_rate)
            trainer = getattr(trl, trainer_name)(
                model=model,
                args=config,
                train_dataset=datasets.Dataset.from_list(train_records),
                eval_dataset=datasets.Dataset.from_list(eval_records) if eval_records else None,
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[watch],
            )
            for quiet in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(quiet)
            if stop.is_set():
                return Outcome("stopped")
            emit(Phase("training"))
            trainer.train()
            done = Outcome(
                "ok",
                steps=int(trainer.state.global_step),
                total=watch.total,
                metrics={**watch.last, **watch.summary},
                history=watch.history,
            )
            if watch.bad or stop.is_set():
                done.status, done.error = "stopped", watch.bad
                return done
            if eval_records:
                emit(Phase("evaluating"))
                done.eval_metrics = _numbers(trainer.evaluate())
            emit(Phase("saving"))
            done.adapter = save_adapter(trainer.model, out)
            return done
    finally:
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            hf_logging.enable_progress_bar()
