"""Fixed per-turn costs around generation: the database write and the chat tab's per-update work."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _common import median, pct

# A prompt of the size chat_overhead.py sends the bundled model.
PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who saves a ship during a storm. "
    "Use at least 600 words and many details."
)


def db_benchmark(turns: int, tmp: Path) -> list[list[object]]:
    """Median/p95 ms of the per-turn writes into a fresh SQLite file (WAL), as `Studio._save` does them."""
    from sqlalchemy import text
    from sqlmodel import Session

    from studio import storage

    engine = storage.make_engine(f"sqlite:///{tmp / 'db-bench.db'}")
    with Session(engine) as session:
        mode = session.exec(text("PRAGMA journal_mode")).one()[0]  # type: ignore[call-overload]
        uid = storage.get_or_create_user(session, name="bench").id
    reply = "The keeper climbed the stairs as the storm rolled in. " * 6  # about 64 tokens of text
    params = {
        "system_prompt": "",
        "do_sample": False,
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 50,
        "repetition_penalty": 1.0,
        "max_new_tokens": 64,
        "num_beams": 1,
        "seed": 1234,
    }

    def row(conv: int | None, index: int, history: list[dict[str, str]]) -> Any:
        return storage.Generation(
            user_id=uid,
            conversation_id=conv,
            turn_index=index,
            action="send",
            tab="chat",
            model_id="m",
            prompt=PROMPT,
            params=params,
            history=history,
            seed=1234,
            output_text=reply,
            status="ok",
            prompt_tokens=40,
            completion_tokens=64,
            first_token_ms=50.0,
            duration_ms=3000.0,
        )

    def first_turn() -> None:  # exactly Studio._save(row, None) for a new chat
        r = row(None, 0, [])
        with Session(engine) as session:
            conv = storage.create_conversation(session, user_id=uid, title=r.prompt[:60], model_id="m")
            r.conversation_id = conv.id
            storage.record_generation(session, generation=r, supersede_from=None)

    with Session(engine) as session:
        conv_id = storage.create_conversation(session, user_id=uid, title="t", model_id="m").id
        session.commit()
    history: list[dict[str, str]] = []

    def follow_up(i: int) -> None:  # Studio._save for turn i of an existing conversation
        r = row(conv_id, i, history[-8:])
        with Session(engine) as session:
            storage.record_generation(session, generation=r, supersede_from=None)

    def regenerate(i: int) -> None:  # supersede the last turn (regenerate / edit / continue)
        r = row(conv_id, i, history[-8:])
        with Session(engine) as session:
            storage.record_generation(session, generation=r, supersede_from=i)

    results = []
    for name, fn in (
        ("new chat (conversation + row)", lambda i: first_turn()),
        ("follow-up turn (row + touch conversation)", follow_up),
        ("regenerate (supersede + row)", regenerate),
    ):
        times = []
        for i in range(turns):
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1000)
            if fn is follow_up:
                history += [{"role": "user", "content": "q"}, {"role": "assistant", "content": reply}]
        results.append([name, turns, median(times), pct(times, 0.95), max(times)])
    engine.dispose()
    results.append([f"(journal_mode={mode})", "", float("nan"), float("nan"), float("nan")])
    return results


def render_benchmark(reps: int = 200) -> list[list[object]]:
    """Server-side cost of the chat tab's per-update `messages()` and of its final `render()`."""
    from studio.service import ChatTurn
    from studio.ui.conversation import messages, render  # what the chat tab calls per update

    reply = "word " * 200
    rows: list[list[object]] = []
    for prior in (0, 20):
        turns = [ChatTurn(i, "question " * 10, reply, None, "ok", None, []) for i in range(prior)]
        for name, fn in (
            ("messages() per update", lambda turns=turns: messages(turns, ("hello", reply))),
            ("render() at the end", lambda turns=turns: render(turns)),
        ):
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            rows.append([f"{name}, {prior} earlier turns", reps, median(times), pct(times, 0.95)])
    return rows
