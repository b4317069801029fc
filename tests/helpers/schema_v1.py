"""The database schema as it was before migrations existed (version 1), frozen for migration tests.

A copy, not an import: `studio.storage.tables` moves on, this must not. Never edit it; a later baseline
would be a new frozen file.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

user = Table(
    "user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True, index=True),
    Column("created_at", DateTime, nullable=False),
)

conversation = Table(
    "conversation",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("user.id"), nullable=False, index=True),
    Column("tab", String, nullable=False),
    Column("title", String(200), nullable=False),
    Column("model_id", String, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False, index=True),
)

generation = Table(
    "generation",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("user.id"), nullable=False, index=True),
    Column("conversation_id", Integer, ForeignKey("conversation.id"), index=True),
    Column("turn_index", Integer),
    Column("active", Boolean, nullable=False),
    Column("parent_id", Integer),
    Column("action", String, nullable=False),
    Column("tab", String, nullable=False, index=True),
    Column("model_id", String, nullable=False, index=True),
    Column("prompt", String, nullable=False),
    Column("params", JSON, nullable=False),
    Column("history", JSON, nullable=False),
    Column("output_text", String, nullable=False),
    Column("files", JSON, nullable=False),
    Column("notices", JSON, nullable=False),
    Column("seed", Integer),
    Column("status", String, nullable=False),
    Column("error", String),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("first_token_ms", Float),
    Column("duration_ms", Float),
    Column("created_at", DateTime, nullable=False, index=True),
)

rating = Table(
    "rating",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation_id", Integer, ForeignKey("generation.id"), nullable=False, index=True),
    Column("user_id", Integer, ForeignKey("user.id"), nullable=False),
    Column("value", Integer, nullable=False),
    Column("reason", String),
    Column("comment", String),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("generation_id", "user_id"),
)
