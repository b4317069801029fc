"""Schema migrations: a numbered list applied in order, with the version kept in the database.

Owns: the `schema_version` table, `MIGRATIONS` and `migrate(engine)`. A fresh database gets every table
from the models at once (`create_all`) and is stamped with the newest version; a database made before
migrations existed has the baseline schema (version 1: user, conversation, generation, rating) and gets
every later migration. A database newer than this code is refused rather than guessed at.
Ignores: what the tables mean (`tables`) and reading or writing rows (`records`).

Adding a schema change: change `tables.py`, then append `Migration(N, "what", fn)` where `fn(conn)` brings
a version N-1 database to the new shape with `create_table` / `add_column` below (or any SQL that works
on SQLite and PostgreSQL). tests/test_migrations.py checks that a migrated baseline database has exactly
the tables and columns of a fresh one, on both databases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.schema import CreateColumn
from sqlmodel import SQLModel

from studio.storage import tables as _tables  # noqa: F401  (registers the tables on SQLModel.metadata)

log = logging.getLogger(__name__)

_version_meta = MetaData()
schema_version = Table("schema_version", _version_meta, Column("version", Integer, nullable=False))

# The tables of version 1; any of them present without `schema_version` means a pre-migration database.
BASELINE_TABLES = frozenset({"user", "conversation", "generation", "rating"})


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def create_table(name: str) -> Callable[[Connection], None]:
    """A migration step that creates a table exactly as `tables.py` now declares it."""

    def step(conn: Connection) -> None:
        SQLModel.metadata.tables[name].create(conn, checkfirst=True)

    return step


def add_column(conn: Connection, table: str, column: Column[Any]) -> None:
    """ALTER TABLE ... ADD COLUMN on either database; give NOT NULL columns a `server_default`.

    A column already there is left alone, like `create_table`'s `checkfirst`: a database taken back to an
    older version number (tests do) or a step re-run after a crash between the ALTER and the version stamp
    then migrates instead of failing on a duplicate column."""
    if column.name in {c["name"] for c in inspect(conn).get_columns(table)}:
        return
    ddl = CreateColumn(column).compile(dialect=conn.dialect)
    quoted = conn.dialect.identifier_preparer.quote(table)
    conn.execute(text(f"ALTER TABLE {quoted} ADD COLUMN {ddl}"))


def _baseline(conn: Connection) -> None:
    """Version 1 is the schema every database had before migrations: nothing to change."""


def _preferences_and_search(conn: Connection) -> None:
    """Version 2 (the Library): A/B votes, and the full-text index over existing generations."""
    from studio.storage.search import install_index  # search imports tables; keep this module's imports light

    create_table("preference")(conn)
    install_index(conn)


def _search_column(conn: Connection) -> None:
    """Version 3: PostgreSQL's search index moves from an expression to a stored column (search.py)."""
    from studio.storage.search import install_index

    install_index(conn)


def _training(conn: Connection) -> None:
    """Version 4 (the Train tab): training runs and the variants (LoRA adapters) they made."""
    create_table("train_run")(conn)
    create_table("variant")(conn)


def _leases(conn: Connection) -> None:
    """Version 5 (several studio processes on one database): a running generation's owner and lease."""
    generation = SQLModel.metadata.tables["generation"]
    for name in ("owner", "lease_until"):
        add_column(conn, "generation", Column(name, generation.c[name].type, nullable=True))


def _safety(conn: Connection) -> None:
    """Version 6 (the safety layer): the audit trail of flags, blocks and checker faults."""
    create_table("safety_event")(conn)


def _generation_score(conn: Connection) -> None:
    """Version 7 (Best of n): a scorer's score on each candidate answer."""
    from sqlalchemy import Float

    add_column(conn, "generation", Column("score", Float, nullable=True))


MIGRATIONS: list[Migration] = [
    Migration(1, "baseline: user, conversation, generation, rating", _baseline),
    Migration(2, "preference table; full-text search index", _preferences_and_search),
    Migration(3, "PostgreSQL: search words in a stored column (SQLite: nothing to do)", _search_column),
    Migration(4, "train_run and variant tables (training runs and their LoRA variants)", _training),
    Migration(5, "generation.owner and lease_until: running rows leased by their studio process", _leases),
    Migration(6, "safety_event table (the safety stage's audit trail)", _safety),
    Migration(7, "generation.score: a scorer's score on a Best-of-n candidate", _generation_score),
]


def latest_version() -> int:
    return MIGRATIONS[-1].version


def current_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    return conn.execute(select(schema_version.c.version)).scalar()


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(schema_version.delete())
    conn.execute(schema_version.insert().values(version=version))


def migrate(engine: Engine) -> int:
    """Bring the database to the newest schema; return its version."""
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1)), "migrations must be numbered 1, 2, 3, ..."
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two studios starting at once against one server migrate one after the other.
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        version = current_version(conn)
        if version is None:
            schema_version.create(conn, checkfirst=True)
            if not BASELINE_TABLES & set(inspect(conn).get_table_names()):
                SQLModel.metadata.create_all(conn)
                _stamp(conn, latest_version())
                return latest_version()
            version = 1
            _stamp(conn, version)
            log.info("database made before migrations: treating it as schema version 1")
        if version > latest_version():
            raise RuntimeError(
                f"the database schema is version {version}, newer than this studio knows "
                f"({latest_version()}); upgrade studio before using this database"
            )
        for migration in MIGRATIONS[version:]:
            log.info("migrating the database to version %d: %s", migration.version, migration.description)
            migration.apply(conn)
            _stamp(conn, migration.version)
    return latest_version()
