"""Library benchmark: export throughput, full-text search latency and vote write latency at 100k generations.

    .venv/bin/python benchmarks/library.py [--rows 100000] [--database-url postgresql+psycopg://...]
    .venv/bin/python benchmarks/library.py --smoke       # 2000 rows, SQLite, a few repeats

Builds a temporary SQLite database (or uses --database-url, whose tables are DROPPED: a throwaway database
only) with N synthetic generations (prompts and answers drawn from a 3000-word vocabulary; a third continue a
conversation; every one rated; one A/B vote per 10 rows), then measures, side by side in one run:
- export: records built + JSONL written, rows/s, from rows already read (the part export.py owns), and end to
  end (database read included), for kto / sft / dpo, and Parquet for kto. Target >= 200k rows/s JSONL.
- search: a Library page (20 newest matches + the total) for common, rare and two-word queries, through the
  FTS index and through a LIKE scan (what it replaces). Target <= 50 ms.
- votes: `Studio.rate` (validation, ownership check, upsert, commit), median and p95.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import add_smoke, load_note, pct, print_targets, table
from sqlalchemy import insert, text
from sqlmodel import Session, SQLModel

from studio import export, storage
from studio.export import files as export_files
from studio.storage.search import Filters


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def populate(engine, n: int, seed: int = 0) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    words = vocabulary(rng)
    # Zipf-like: a few words are very common (like real text), most are rare.
    weights = [1 / (i + 1) for i in range(len(words))]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as s:
        uid = storage.get_or_create_user(s, name="local").id or 0
    gens, ratings = [], []
    for i in range(1, n + 1):
        prompt = " ".join(rng.choices(words, weights, k=rng.randint(6, 20)))
        output = " ".join(rng.choices(words, weights, k=rng.randint(20, 80)))
        history = []
        if i % 3 == 0:
            history = [
                {"role": "user", "content": "earlier question"},
                {"role": "assistant", "content": "ok"},
            ]
        gens.append(
            {
                "id": i,
                "user_id": uid,
                "tab": "chat" if i % 5 else "code",
                "model_id": f"model-{i % 4}",
                "prompt": prompt,
                "params": {"temperature": 0.7, "system_prompt": ""},
                "history": history,
                "output_text": output,
                "files": [],
                "notices": [],
                "status": "ok",
                "action": "send",
                "active": True,
                "conversation_id": None,
                "created_at": start + timedelta(seconds=i),
            }
        )
        now = start + timedelta(seconds=i)
        value = 1 if rng.random() < 0.6 else -1
        ratings.append(
            {"generation_id": i, "user_id": uid, "value": value, "created_at": now, "updated_at": now}
        )
    prefs = [
        {
            "user_id": uid,
            "tab": gens[i]["tab"],
            "generation_a_id": i + 1,
            "generation_b_id": i + 2,
            "choice": rng.choice(["a", "b", "tie"]),
            "created_at": start,
            "updated_at": start,
        }
        for i in range(0, n - 1, 10)
        if gens[i]["tab"] == gens[i + 1]["tab"]
    ]
    # A/B pairs need the same prompt: give each pair's B the A's prompt and history.
    for p in prefs:
        a, b = gens[p["generation_a_id"] - 1], gens[p["generation_b_id"] - 1]
        b["prompt"], b["history"] = a["prompt"], a["history"]
    with engine.begin() as conn:
        for table_, rows in (
            (storage.Generation, gens),
            (storage.Rating, ratings),
            (storage.Preference, prefs),
        ):
            for k in range(0, len(rows), 5000):
                conn.execute(insert(table_.__table__), rows[k : k + 5000])  # type: ignore[attr-defined]
    return uid, words


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", help="a throwaway database (its tables are dropped)")
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rows = 2000
    repeats, votes = (2, 20) if args.smoke else (15, 400)
    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-library-"))
    url = args.database_url or f"sqlite:///{tmp / 'studio.db'}"
    engine = storage.make_engine(url)
    if args.database_url:
        SQLModel.metadata.drop_all(engine)
        SQLModel.metadata.create_all(engine)
    print(f"{engine.dialect.name}, {args.rows} generations; {load_note()}")
    t0 = time.perf_counter()
    uid, words = populate(engine, args.rows)
    print(f"populated in {time.perf_counter() - t0:.1f} s (bulk insert; the database keeps the search index)")
    if engine.dialect.name == "postgresql":  # planner statistics, as autovacuum gathers after a bulk load
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))

    # -- export ------------------------------------------------------------------------------------
    from studio import Settings, load_config
    from studio.service import Studio

    models = tmp / "models.yaml"
    models.write_text("models:\n  - {id: model-0, tabs: [chat], backend: transformers-chat, source: x/y}\n")
    studio = Studio(load_config(models), Settings.from_env(data_dir=tmp), engine=engine)

    def read() -> tuple[list, list]:
        with export.paused_gc(), Session(engine) as s:  # as Studio.export reads them
            return storage.rated_rows(s, user_id=uid), storage.preference_rows(s, user_id=uid)

    read_s, (rated, prefs) = timed(read, 2)
    rows_out = []
    for fmt, parquet in (("kto", False), ("sft", False), ("dpo", False), ("kto", True)):
        out = tmp / f"{fmt}-{parquet}"

        def build_write(fmt: str = fmt, out: Path = out, parquet: bool = parquet) -> int:
            with export.paused_gc():
                data = export.build(fmt, rated, prefs)
                export_files.write(data, out, parquet=parquet)
            return len(data.records)

        seconds, records = timed(build_write)
        whole, _ = timed(
            lambda fmt=fmt, out=out, parquet=parquet: studio.export(fmt, out, parquet=parquet), 2
        )
        name = f"{fmt} {'Parquet' if parquet else 'JSONL'}"
        rows_out.append([name, len(rated), records, len(rated) / seconds, len(rated) / whole])
    print()
    print(
        table(
            ["export", "rated rows in", "records out", "rows/s (rows read)", "rows/s (Studio.export)"],
            rows_out,
            title=f"== export (database read alone: {read_s * 1000:.0f} ms, {len(rated) / read_s:,.0f} "
            f"rows/s; kto JSONL is {(tmp / 'kto-False' / 'train.jsonl').stat().st_size / 1e6:.0f} MB)",
        )
    )

    # -- search ------------------------------------------------------------------------------------
    queries = {
        "common word": words[0],
        "word in 1 row of 10": words[60],
        "rare word": words[2500],
        "two words": f"{words[3]} {words[40]}",
    }
    search_rows, worst = [], 0.0
    for name, query in queries.items():
        for how in ("fts", "like"):
            times = []
            for _ in range(repeats):
                with Session(engine) as s:
                    filters = Filters(user_id=uid, search=query)
                    t0 = time.perf_counter()
                    if how == "fts":
                        _, total = storage.find_generations(s, filters=filters, limit=20)
                    else:
                        _, total = like_page(s, uid, query)
                    times.append((time.perf_counter() - t0) * 1000)
            if how == "fts":
                worst = max(worst, statistics.median(times))
            search_rows.append([f"{name} ({how})", total, statistics.median(times), pct(times, 0.95)])
    print()
    print(
        table(["query", "matches", "median ms", "p95 ms"], search_rows, title="== search: one Library page")
    )

    # -- votes -------------------------------------------------------------------------------------
    vote_ms = []
    for i in range(votes):
        t0 = time.perf_counter()
        vote, reason = ("up", "helpful") if i % 2 else ("down", "inaccurate")  # a reason that fits the vote
        studio.rate(1 + (i * 97) % args.rows, vote, reason=reason if i % 3 else None)
        vote_ms.append((time.perf_counter() - t0) * 1000)
    print(
        f"\n== votes: Studio.rate median {statistics.median(vote_ms):.2f} ms, p95 {pct(vote_ms, 0.95):.2f} ms"
    )
    kto_rate, whole_rate = rows_out[0][3], rows_out[0][4]
    print_targets(
        {
            f"JSONL export >= 200k rows/s (kto, rows read: {kto_rate:,.0f})": kto_rate >= 200_000,
            f"JSONL export >= 200k rows/s (kto, with the DB read: {whole_rate:,.0f})": whole_rate >= 200_000,
            f"full-text search <= 50 ms (worst median {worst:.1f} ms)": worst <= 50,
        }
    )
    studio.close()


def like_page(session: Session, uid: int, query: str) -> tuple[list, int]:
    """The same page through a LIKE scan, for comparison: what searching costs without the index."""
    from sqlalchemy import func, or_
    from sqlmodel import col, select

    clauses = [storage.Generation.user_id == uid] + [
        or_(col(storage.Generation.prompt).like(f"%{w}%"), col(storage.Generation.output_text).like(f"%{w}%"))
        for w in query.split()
    ]
    total = session.exec(select(func.count()).select_from(storage.Generation).where(*clauses)).one()
    rows = session.exec(
        select(storage.Generation)
        .where(*clauses)
        .order_by(col(storage.Generation.created_at).desc())
        .limit(20)
    ).all()
    return list(rows), int(total)


if __name__ == "__main__":
    main()
