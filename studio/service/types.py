"""What the service hands back: plain result records (errors are studio.errors).

Owns: `Status` (re-exported from storage, where it is the rows' column), the streamed updates of each kind
of job (`ChatUpdate`, `ImageUpdate`, `AudioUpdate`), `GenerationResult` (what `Studio.generate` returns to
scripts), `ChatTurn` (a stored exchange with its vote), `ModelInfo` and `TrainUpdate` (one step of a
training run, streamed). Plain dataclasses, so the UI and
CLI never see storage rows or backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.storage.tables import Status

__all__ = [
    "AudioUpdate",
    "ChatTurn",
    "ChatUpdate",
    "GenerationResult",
    "ImageUpdate",
    "JobUpdate",
    "ModelInfo",
    "Status",
    "TrainUpdate",
]


@dataclass
class ChatUpdate:
    """One step of a chat turn; the last one has `done=True` and the stored generation id."""

    text: str
    done: bool = False
    status: Status = Status.RUNNING
    generation_id: int | None = None
    conversation_id: int | None = None
    error: str | None = None
    notices: list[str] = field(default_factory=list)


@dataclass
class JobUpdate:
    """One step of a media job (steps of a total); the last one has `done=True` and the outcome."""

    status: Status = Status.RUNNING
    step: int = 0
    total: int = 0
    done: bool = False
    error: str | None = None
    notices: list[str] = field(default_factory=list)


@dataclass
class ImageUpdate(JobUpdate):
    """The last update of an image job has the saved files and their generation ids (one per picture)."""

    files: list[Path] = field(default_factory=list)
    generation_ids: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


@dataclass
class AudioUpdate(JobUpdate):
    """The last update of a speech or music job has the saved clip, its waveform picture and its row."""

    file: Path | None = None
    picture: Path | None = None
    generation_id: int | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    seed: int | None = None


@dataclass
class GenerationResult:
    """One finished generation of any tab, as `Studio.generate` returns it to scripts and A/B compare.

    `files` are absolute paths (an image job's pictures, a clip's WAV); `fields` holds what one tab adds:
    code's extracted blocks and syntax check, an image job's ids and seeds, a clip's picture and length.
    """

    generation_id: int | None
    tab: str
    model: str
    status: Status
    error: str | None = None
    text: str = ""
    files: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    conversation_id: int | None = None  # chat and code turns
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object `studio generate --json` prints (the conversation only for chat and code)."""
        out: dict[str, Any] = {
            "generation_id": self.generation_id,
            "tab": self.tab,
            "model": self.model,
            "text": self.text,
            "files": self.files,
            "params": self.params,
            "status": self.status.value,
            "error": self.error,
            "notices": self.notices,
        }
        if self.tab in ("chat", "code"):
            out["conversation_id"] = self.conversation_id
        return out | self.fields


@dataclass
class ChatTurn:
    generation_id: int
    prompt: str
    reply: str
    rating: int | None
    status: str
    error: str | None
    notices: list[str]
    params: dict[str, Any] = field(default_factory=dict)  # everything the turn ran with (reuse settings)
    seed: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None  # decoding speed, after the first token
    hit_limit: bool = False  # the answer stopped at max_new_tokens
    answer: int = 1  # which of the turn's kept answers this is (1-based)...
    answers: int = 1  # ...of how many (a regenerate, an edit or a continue keeps the one it replaced)


@dataclass
class ModelInfo:
    id: str
    tabs: list[str]
    backend: str
    status: str
    description: str


@dataclass
class TrainUpdate:
    """One update of a training run: where it stands (waiting in line, loading, preparing, training,
    evaluating, saving, done), its step of the total with the ETA, the latest metrics and every step's so
    far (the curve); the last one has `done=True`, the outcome, and the variant it registered (if any)."""

    run_id: int | None = None
    status: Status = Status.RUNNING
    phase: str = "waiting"
    step: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    done: bool = False
    variant: str | None = None
    adapter: str | None = None
    error: str | None = None
    base: str = ""
    method: str = ""
    train_records: int = 0
    eval_records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # pairs left out before the run, by reason

    def as_dict(self) -> dict[str, Any]:
        """What `studio train --json` prints."""
        return {
            "run_id": self.run_id,
            "variant": self.variant,
            "adapter": self.adapter,
            "base": self.base,
            "method": self.method,
            "status": self.status.value,
            "error": self.error,
            "metrics": {**self.metrics, **self.eval_metrics},
            "train_records": self.train_records,
            "eval_records": self.eval_records,
        }
