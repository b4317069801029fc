"""Storage of training runs and variants, on SQLite and PostgreSQL: migration 4 over a version-3 database
with data, a run finished together with its variant, runs a crash left running marked interrupted, and a
deleted variant that keeps its row."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlmodel import Session, SQLModel

from studio import storage
from studio.storage import migrations


def test_migration_4_adds_the_training_tables_to_a_version_3_database(database_url: str) -> None:
    engine = storage.make_engine(database_url)  # the newest schema, then taken back to version 3
    with Session(engine) as s:
        uid = storage.get_or_create_user(s, name="kept").id or 0
        storage.record_generation(
            s, generation=storage.Generation(user_id=uid, tab="chat", model_id="m", prompt="p")
        )
    with engine.begin() as conn:
        for name in ("variant", "train_run"):
            SQLModel.metadata.tables[name].drop(conn)
        conn.execute(migrations.schema_version.update().values(version=3))
    engine.dispose()
    engine = storage.make_engine(database_url)  # start-up migrates
    try:
        with engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.latest_version() >= 4
        tables = inspect(engine).get_table_names()
        assert {"train_run", "variant"} <= set(tables)
        columns = {c["name"] for c in inspect(engine).get_columns("train_run")}
        assert {"params", "dataset_hash", "vote_ids", "metrics", "status", "started_at", "error"} <= columns
        with Session(engine) as s:
            assert [g.prompt for g in storage.list_generations(s, user_id=uid)] == ["p"]
            run = storage.begin_train_run(s, run=storage.TrainRun(user_id=uid, base_model="m", method="dpo"))
            assert run.id is not None and run.status == "running"
    finally:
        engine.dispose()


def test_a_run_is_finished_with_its_variant_and_a_crash_leaves_it_interrupted(database_url: str) -> None:
    engine = storage.make_engine(database_url)
    try:
        with Session(engine, expire_on_commit=False) as s:
            uid = storage.get_or_create_user(s, name="u").id or 0
            done = storage.begin_train_run(s, run=storage.TrainRun(user_id=uid, base_model="m", method="sft"))
            cut = storage.begin_train_run(s, run=storage.TrainRun(user_id=uid, base_model="m", method="kto"))
            done.status, done.metrics, done.vote_ids = "ok", {"loss": 0.5}, ["g1u1", "p2"]
            variant = storage.Variant(
                id=f"m+sft-{done.id}", base_model="m", method="sft", run_id=done.id or 0, user_id=uid,
                adapter_path="/a",
            )  # fmt: skip
            storage.finish_train_run(s, run=done, variant=variant)
        with Session(engine) as s:
            assert storage.mark_train_runs_interrupted(s) == [cut.id]
            assert storage.mark_train_runs_interrupted(s) == []  # once
            runs = {r.id: r for r in storage.list_train_runs(s, user_id=uid)}
            assert runs[cut.id].status == "interrupted" and "stopped while this run was training" in (
                runs[cut.id].error or ""
            )
            assert runs[done.id].variant_id == f"m+sft-{done.id}" and runs[done.id].vote_ids == ["g1u1", "p2"]
            assert [v.id for v in storage.list_variants(s)] == [f"m+sft-{done.id}"]
            assert storage.mark_variant_deleted(s, variant_id=f"m+sft-{done.id}")
            assert storage.list_variants(s) == []
            kept = storage.list_variants(s, include_deleted=True)
            assert kept[0].deleted and storage.get_train_run(s, run_id=done.id or 0) is not None
    finally:
        engine.dispose()
