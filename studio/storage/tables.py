"""Storage tables: the schema (user, conversation, generation, rating, preference, train_run, variant,
safety_event) as
SQLModel classes.

Owns: table and column definitions only. Ignores: engines, queries and everything above storage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class Status(StrEnum):
    """Where a generation stands: the `status` column of a row, and of every streamed update.

    A row is begun RUNNING and finished OK, ERROR, STOPPED or BLOCKED (the safety stage refused its prompt or
    withheld its output: studio/service/safety.py); a crash leaves it RUNNING until the next start
    marks it INTERRUPTED. LOADING is only ever an update (the model is loading), never stored. Members are
    strings, so a row read back ("ok") compares equal to Status.OK.
    """

    LOADING = "loading"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"


def utcnow() -> datetime:
    return datetime.now(UTC)


# Plain functions, not the `list`/`dict` built-ins: pydantic inspects a built-in factory's signature on
# every construction (0.35 -> 0.09 ms per Generation, benchmarks/image_overhead.py).
def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[str, Any]:
    return {}


class User(SQLModel, table=True):
    __tablename__ = "user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    tab: str = "chat"
    title: str = Field(default="New chat", max_length=200)
    model_id: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Generation(SQLModel, table=True):
    __tablename__ = "generation"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    turn_index: int | None = None  # position of this exchange in its conversation
    active: bool = True  # False once regenerated, edited away or continued
    parent_id: int | None = None  # the generation this one regenerates / continues
    action: str = "send"  # send | regenerate | edit | continue
    tab: str = Field(index=True)
    model_id: str = Field(index=True)
    prompt: str
    params: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    history: list[dict[str, str]] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    output_text: str = ""
    files: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    notices: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    seed: int | None = None
    status: str = Status.OK.value  # a Status value
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: float | None = None
    duration_ms: float | None = None
    score: float | None = None  # a scorer's (reward model's) score, for a Best-of-n candidate
    created_at: datetime = Field(default_factory=utcnow, index=True)
    # While "running": the studio process that runs it and until when its lease holds (renewed by that
    # process's heartbeat). Another process marks the row interrupted only once the lease has expired.
    owner: str | None = Field(default=None, max_length=120)
    lease_until: datetime | None = None


class Rating(SQLModel, table=True):
    __tablename__ = "rating"
    __table_args__ = (UniqueConstraint("generation_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    generation_id: int = Field(foreign_key="generation.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    value: int  # +1 or -1
    reason: str | None = None
    comment: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Preference(SQLModel, table=True):
    """One A/B vote: which of two generations of the same prompt a user preferred (one row per pair)."""

    __tablename__ = "preference"
    __table_args__ = (UniqueConstraint("user_id", "generation_a_id", "generation_b_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    tab: str = Field(index=True)
    generation_a_id: int = Field(foreign_key="generation.id", index=True)
    generation_b_id: int = Field(foreign_key="generation.id", index=True)
    choice: str  # a | b | tie | both_bad
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TrainRun(SQLModel, table=True):
    """One training run: what it trained on and with, how it went, and the variant it made (if any).

    Begun RUNNING (a short commit) and finished OK, STOPPED or ERROR; a crash leaves it RUNNING until the
    next start marks it INTERRUPTED, like a generation."""

    __tablename__ = "train_run"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    base_model: str = Field(index=True)
    method: str  # sft | dpo | kto
    status: str = Status.RUNNING.value
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    # Which data: {"tab", "since", "all_users"}; the records' hash and their vote keys (export keys).
    data: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    dataset_hash: str = ""
    vote_ids: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    train_records: int = 0
    eval_records: int = 0
    steps: int = 0
    total_steps: int = 0
    metrics: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    eval_metrics: dict[str, Any] = Field(default_factory=_empty_dict, sa_column=Column(JSON, nullable=False))
    history: list[dict[str, Any]] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    device: str = "cpu"
    variant_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None  # when its turn on the device came
    finished_at: datetime | None = None
    duration_s: float | None = None  # from its turn to its end (the wait in line not counted)


class Variant(SQLModel, table=True):
    """A trained model: its base's weights plus a LoRA adapter folder. Deleting it removes the folder and
    keeps the row (and its run)."""

    __tablename__ = "variant"
    id: str = Field(primary_key=True, max_length=100)  # like smollm2-135m+dpo-3
    base_model: str = Field(index=True)
    method: str
    run_id: int = Field(foreign_key="train_run.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    adapter_path: str
    default_for: str | None = None  # a tab it was promoted to be the default model of
    deleted: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None


class SafetyEvent(SQLModel, table=True):
    """One flag, block or checker fault of the safety stage: the audit trail (`studio safety log`).

    `stage` is "input" (the prompt) or "output"; `action` is "flag", "block" or "fault" (a checker that
    failed or is missing; `category` is then "checker"). `withheld` keeps a blocked text output (its row
    holds a notice instead), for admins and the `safety` export; a blocked picture stays in its file."""

    __tablename__ = "safety_event"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    # No foreign key: the audit trail outlives a deleted generation.
    generation_id: int | None = Field(default=None, index=True)
    tab: str = Field(index=True)
    stage: str  # input | output
    action: str  # flag | block | fault
    category: str
    score: float = 0.0
    checker: str = ""
    detail: str = ""
    withheld: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
