"""Storage engine: connecting to the database and bringing its schema up to date.

Owns: engine set-up for SQLite (WAL, busy timeout, foreign keys) and PostgreSQL (psycopg 3: a plain
`postgresql://` URL is read as `postgresql+psycopg://`), any other SQLAlchemy URL as given, and running the
migrations (`studio.storage.migrations`) when the engine is made, a SQLite file readable by its owner
only (0600, its folder 0700), and a full disk reported in one short sentence (`DatabaseFull`).
Ignores: tables' contents and queries.
"""

from __future__ import annotations

import os
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


class DatabaseFull(RuntimeError):
    """The database's disk (or SQLite's size cap) is full; worded for the person at the page."""

    def __init__(self) -> None:
        super().__init__("the database's disk is full, so this was not saved: free some space and try again")


def _full_disk(context: Any) -> None:
    """SQLAlchemy's error hook: a full disk becomes `DatabaseFull` instead of a page of driver text."""
    original = context.original_exception
    text = str(original).lower()
    sqlstate = getattr(original, "sqlstate", None)  # psycopg: 53100 disk_full
    if "database or disk is full" in text or "no space left on device" in text or sqlstate == "53100":
        raise DatabaseFull() from original


def private_sqlite_file(path: Path) -> None:
    """The database file and its WAL/SHM readable by their owner only; the folder 0700 when made here.
    SQLite gives its WAL and SHM files the database file's mode, so creating that one 0600 covers them."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if file.exists():
            os.chmod(file, 0o600)


def make_engine(url: str) -> Engine:
    """Create the engine and migrate the schema; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        if url != "sqlite:///:memory:":
            private_sqlite_file(Path(url.removeprefix("sqlite:///")))
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
    event.listen(engine, "handle_error", _full_disk)
    migrate(engine)
    return engine
