"""Storage engine: connecting to the database and bringing its schema up to date.

Owns: engine set-up for SQLite (WAL, busy timeout, foreign keys) and PostgreSQL (psycopg 3: a plain
`postgresql://` URL is read as `postgresql+psycopg://`), any other SQLAlchemy URL as given, and running the
migrations (`studio.storage.migrations`) when the engine is made.
Ignores: tables' contents and queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import create_engine

from studio.storage import tables as _tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from studio.storage.migrations import migrate


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` (what servers and hosting panels print) -> psycopg 3's driver.

    SQLAlchemy would otherwise pick psycopg2, which the studio does not install.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """Create the engine and migrate the schema; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL survives a process crash; only power loss can drop the last commits.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        # pre_ping: a server restarted under a running studio costs one reconnect, not an error page.
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    migrate(engine)
    return engine
