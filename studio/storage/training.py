"""Storage of training: runs and the variants they made, as keyword-only functions over a session.

Owns: beginning a run ("running", a short commit), finishing it together with its variant in one
transaction (a variant is never stored without its finished run), reading and listing runs, marking runs a
crash left running as interrupted, and the variants: listing, reading, deleting (the row stays, marked) and
the tab a variant was promoted to be the default of.
Ignores: training, adapter files and models (the service and studio/train own those).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from studio.storage.tables import Status, TrainRun, Variant, utcnow

INTERRUPTED = "the server stopped while this run was training"


def begin_train_run(session: Session, *, run: TrainRun) -> TrainRun:
    run.status = Status.RUNNING.value
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def finish_train_run(session: Session, *, run: TrainRun, variant: Variant | None = None) -> TrainRun:
    """Store the run's outcome and, when it made one, its variant: both or neither."""
    run.finished_at = run.finished_at or utcnow()
    merged = session.merge(run)
    if variant is not None:
        merged.variant_id = variant.id
        session.add(variant)
    session.commit()
    session.refresh(merged)
    return merged


def get_train_run(session: Session, *, run_id: int) -> TrainRun | None:
    return session.get(TrainRun, run_id)


def list_train_runs(session: Session, *, user_id: int | None = None, limit: int = 100) -> list[TrainRun]:
    """Runs newest first: one user's, or everyone's (user_id None)."""
    query = select(TrainRun).order_by(col(TrainRun.id).desc()).limit(limit)
    if user_id is not None:
        query = query.where(TrainRun.user_id == user_id)
    return list(session.exec(query))


def mark_train_runs_interrupted(session: Session) -> list[int]:
    """At start-up: runs still "running" were cut off by a crash or a kill; returns their ids."""
    ids = list(session.exec(select(TrainRun.id).where(col(TrainRun.status) == Status.RUNNING.value)))
    if ids:
        session.exec(
            update(TrainRun)
            .where(col(TrainRun.id).in_(ids))
            .values(status=Status.INTERRUPTED.value, error=INTERRUPTED, finished_at=utcnow())
        )
        session.commit()
    return [i for i in ids if i is not None]


def get_variant(session: Session, *, variant_id: str) -> Variant | None:
    return session.get(Variant, variant_id)


def list_variants(session: Session, *, include_deleted: bool = False) -> list[Variant]:
    """Variants oldest first (the order they appear in model lists)."""
    query = select(Variant).order_by(col(Variant.created_at), col(Variant.id))
    if not include_deleted:
        query = query.where(col(Variant.deleted).is_(False))
    return list(session.exec(query))


def mark_variant_deleted(session: Session, *, variant_id: str) -> bool:
    variant = session.get(Variant, variant_id)
    if variant is None or variant.deleted:
        return False
    variant.deleted, variant.deleted_at, variant.default_for = True, utcnow(), None
    session.add(variant)
    session.commit()
    return True


def set_default_variant(session: Session, *, variant_id: str, tab: str) -> None:
    """Make one variant the tab's default (the previous one for that tab stops being it)."""
    session.exec(update(Variant).where(col(Variant.default_for) == tab).values(default_for=None))
    variant = session.get(Variant, variant_id)
    if variant is not None:
        variant.default_for = tab
        session.add(variant)
    session.commit()
