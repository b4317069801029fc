"""Training: the export's records in, a LoRA adapter folder and metrics events out (pure training).

Owns: the methods (`sft`, `dpo`, `kto`; `reward`: a scorer from preference pairs) and their validated
hyperparameters with per-device defaults (params.py), checking, holding out and shaping the records
(data.py), and running TRL's trainer with a peft LoRA adapter, stoppable within one optimizer step, saving
atomically (runner.py).
Ignores: gradio, storage, the model manager and the device line: the service feeds records in, holds the
device's turn, stores the run and registers the adapter as a model. torch, trl and peft are imported
lazily, inside the functions that train.
"""

from studio.train.data import (
    FORMAT,
    MIN_RECORDS,
    Split,
    check_enough,
    dataset_hash,
    for_trainer,
    held_out,
    last_prompts,
)
from studio.train.params import DEFAULT_LR, METHODS, Hyperparams, hyperparams, trainer_kwargs
from studio.train.runner import Outcome, Phase, Step, TrainEvent, run, save_adapter

__all__ = [
    "DEFAULT_LR",
    "FORMAT",
    "METHODS",
    "MIN_RECORDS",
    "Hyperparams",
    "Outcome",
    "Phase",
    "Split",
    "Step",
    "TrainEvent",
    "check_enough",
    "dataset_hash",
    "for_trainer",
    "held_out",
    "hyperparams",
    "last_prompts",
    "run",
    "save_adapter",
    "trainer_kwargs",
]
