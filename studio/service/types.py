"""What the service hands back: plain result records (errors are studio.errors).

Owns: `ChatUpdate` (one streamed step of a turn), `ChatTurn` (a stored exchange with its
vote) and `ModelInfo`. Plain dataclasses, so the UI and CLI never see storage rows or backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChatUpdate:
    """One step of a chat turn; the last one has `done=True` and the stored generation id."""

    text: str
    done: bool = False
    status: str = "running"  # loading | running | ok | error | stopped
    generation_id: int | None = None
    conversation_id: int | None = None
    error: str | None = None
    notices: list[str] = field(default_factory=list)


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


@dataclass
class ModelInfo:
    id: str
    tabs: list[str]
    backend: str
    status: str
    description: str
