"""Export: rated generations and A/B votes in, records in TRL's dataset formats out (pure functions).

Owns: which rows each format uses and the exact columns TRL 1.x reads:
- `sft`: `messages` (conversational language modeling) for liked assistant turns whose history holds no
  disliked answer; a turn whose messages are a prefix of a longer kept turn of the same conversation is left
  out (it would be trained on twice).
- `kto` (unpaired preference): `prompt`, `completion`, `label` (bool), one per vote.
- `dpo` (preference, explicit prompt): `prompt`, `chosen`, `rejected`, from A/B votes (A or B, not tie or
  both bad) and from liked x disliked answers to the same prompt, history and system prompt. An A/B vote on a
  pair overrides the thumbs on the same two generations.
- `reward` (preference, implicit prompt): `chosen`, `rejected`, each the whole conversation (conversational
  always: a plain string could not show where the prompt ends).
- `safety` (classifier or KTO training on what must not be said): `prompt`, `completion`, `label` (always
  false), `category`, from text answers voted down as "unsafe" and from outputs the safety check blocked.
- `pickapic` (media tabs): `caption`, `jpg_0`, `jpg_1` (file paths relative to the export folder, the files
  copied there), `label_0` (1 = first preferred, 0.5 = tie), plus `label_1`, `model_0`, `model_1`.
A text dataset is conversational (lists of {role, content}) when any of its rows has a history or a system
prompt, else standard (strings): one file must have one type per column for `datasets` to load it.
Only finished generations (status ok) are exported. Ignores: queries (storage), files (export/files.py).
"""

from __future__ import annotations

import gc
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from studio.errors import StudioError

FORMATS = ("sft", "kto", "dpo", "reward", "pickapic", "safety")
Row = dict[str, Any]  # a generation's columns (storage.rated_rows / preference_rows)
Message = dict[str, str]


@dataclass
class Dataset:
    """Records of one format, with what its dataset card reports and the media files to copy."""

    format: str
    records: list[dict[str, Any]]
    keys: list[str]  # one stable id per record: the train/test split hashes it
    conversational: bool = False
    models: set[str] = field(default_factory=set)
    tabs: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    media: dict[str, str] = field(default_factory=dict)  # export-relative path -> data-dir-relative source
    skipped: dict[str, int] = field(default_factory=dict)  # why -> how many left out

    def saw(self, *rows: Row) -> None:
        if not rows:
            return
        self.models.update({row["model_id"] for row in rows})
        self.tabs.update({row["tab"] for row in rows})
        times = [row["created_at"] for row in rows]
        first, last = min(times), max(times)
        self.first = first if self.first is None or first < self.first else self.first
        self.last = last if self.last is None or last > self.last else self.last


@contextmanager
def paused_gc() -> Iterator[None]:
    """Building 100k records allocates a million small objects, which sets off the cyclic garbage collector
    again and again, each time scanning every live row: 1.0 s -> 0.3 s for 100k KTO records without it.
    Nothing an export builds is a cycle, so reference counting frees it all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- messages ---------------------------------------------------------------------------------------------
def prompt_messages(row: Row) -> list[Message]:
    """What the model was sent: system prompt, earlier turns, then the user's prompt."""
    history, system = row["history"], row["system_prompt"]
    user = {"role": "user", "content": row["prompt"]}
    # History entries are stored as {role, content} already: shared, not copied (this runs once per record).
    if system:
        return [{"role": "system", "content": system}, *history, user]
    return [*history, user] if history else [user]


def _has_context(row: Row) -> bool:
    return bool(row["history"]) or bool(row["system_prompt"])


def _is_text(row: Row) -> bool:
    return row["status"] == "ok" and not row["files"] and bool(row["output_text"])


def _is_media(row: Row) -> bool:
    return row["status"] == "ok" and bool(row["files"])


def _context_key(row: Row) -> tuple[Any, ...]:
    """Rows with equal keys answered the same request (prompt, history, system prompt): comparable."""
    history = tuple((m["role"], m["content"]) for m in row["history"] or [])
    return (row["tab"], row["prompt"], history, row["system_prompt"] or "")


# -- unpaired formats -------------------------------------------------------------------------------------
def sft(rated: Iterable[Row]) -> Dataset:
    rows = [r for r in rated if _is_text(r)]
    disliked = {(r["conversation_id"], r["user_id"], r["output_text"]) for r in rows if r["rating"] < 0}
    candidates: list[tuple[Row, list[Message]]] = []
    for row in rows:
        if row["rating"] <= 0:
            continue
        conv, user = row["conversation_id"], row["user_id"]
        past = row["history"] or []
        if any(m["role"] == "assistant" and (conv, user, m["content"]) in disliked for m in past):
            continue
        candidates.append(
            (row, [*prompt_messages(row), {"role": "assistant", "content": row["output_text"]}])
        )
    # Longest first: a turn whose messages begin a kept longer one of its conversation adds nothing.
    candidates.sort(key=lambda item: -len(item[1]))
    covered: set[tuple[Any, ...]] = set()
    data = Dataset("sft", [], [], conversational=True)
    for row, messages in candidates:
        pairs = tuple((m["role"], m["content"]) for m in messages)
        if (row["conversation_id"], row["user_id"], pairs) in covered:
            data.skipped["already inside a longer liked conversation"] = (
                data.skipped.get("already inside a longer liked conversation", 0) + 1
            )
            continue
        if row["conversation_id"] is not None:
            for end in range(1, len(pairs)):  # every earlier point where the assistant had answered
                if pairs[end - 1][0] == "assistant":
                    covered.add((row["conversation_id"], row["user_id"], pairs[:end]))
        data.records.append({"messages": messages})
        data.keys.append(f"g{row['id']}u{row['user_id']}")
        data.saw(row)
    return data


def kto(rated: Iterable[Row]) -> Dataset:
    rows = [r for r in rated if r["status"] == "ok" and not r["files"] and r["output_text"]]  # _is_text
    conversational = any(r["history"] for r in rows) or any(_has_context(r) for r in rows)
    data = Dataset("kto", [], [], conversational=conversational)
    if conversational:
        data.records = [
            {
                "prompt": prompt_messages(r),
                "completion": [{"role": "assistant", "content": r["output_text"]}],
                "label": r["rating"] > 0,
            }
            for r in rows
        ]
    else:
        data.records = [
            {"prompt": r["prompt"], "completion": r["output_text"], "label": r["rating"] > 0} for r in rows
        ]
    data.keys = [f"g{r['id']}u{r['user_id']}" for r in rows]
    data.saw(*rows)
    return data


# -- pairs ------------------------------------------------------------------------------------------------
@dataclass
class Pair:
    first: Row
    second: Row
    label: float  # 1 = first preferred, 0 = second, 0.5 = tie
    key: str


def pairs(rated: Iterable[Row], preferences: Iterable[Row], *, kind: Callable[[Row], bool]) -> list[Pair]:
    """A/B votes (both bad left out) then thumbs pairs (liked vs disliked answers to the same request)."""
    found: list[Pair] = []
    voted: set[frozenset[int]] = set()
    for pref in preferences:
        a, b = pref["a"], pref["b"]
        if not (kind(a) and kind(b)):
            continue
        voted.add(frozenset((a["id"], b["id"])))
        if _is_text(a) and a["output_text"] == b["output_text"]:
            continue  # two identical answers teach nothing, whatever the vote
        label = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(pref["choice"])
        if label is not None:
            found.append(Pair(a, b, label, f"p{pref['id']}"))
    groups: dict[tuple[Any, ...], tuple[list[Row], list[Row]]] = defaultdict(lambda: ([], []))
    for row in rated:
        if kind(row):
            groups[_context_key(row)][0 if row["rating"] > 0 else 1].append(row)
    for liked, disliked in groups.values():
        for good in liked:
            for bad in disliked:
                if good["id"] == bad["id"] or frozenset((good["id"], bad["id"])) in voted:
                    continue  # one person's up and another's down on one answer; or an A/B vote decides
                if _is_text(good) and good["output_text"] == bad["output_text"]:
                    continue
                found.append(Pair(good, bad, 1.0, f"r{good['id']}-{bad['id']}u{good['user_id']}"))
    return found


def _strict(found: list[Pair]) -> list[tuple[Row, Row, str]]:
    """(chosen, rejected, key) of the pairs with a winner."""
    return [
        (p.first, p.second, p.key) if p.label == 1.0 else (p.second, p.first, p.key)
        for p in found
        if p.label != 0.5
    ]


def dpo(rated: list[Row], preferences: list[Row]) -> Dataset:
    chosen_rejected = _strict(pairs(rated, preferences, kind=_is_text))
    conversational = any(_has_context(c) for c, _, _ in chosen_rejected)
    data = Dataset("dpo", [], [], conversational=conversational)
    for chosen, rejected, key in chosen_rejected:
        if conversational:
            record: dict[str, Any] = {
                "prompt": prompt_messages(chosen),
                "chosen": [{"role": "assistant", "content": chosen["output_text"]}],
                "rejected": [{"role": "assistant", "content": rejected["output_text"]}],
            }
        else:
            record = {
                "prompt": chosen["prompt"],
                "chosen": chosen["output_text"],
                "rejected": rejected["output_text"],
            }
        data.records.append(record)
        data.keys.append(key)
        data.saw(chosen, rejected)
    return data


def reward(rated: list[Row], preferences: list[Row]) -> Dataset:
    data = Dataset("reward", [], [], conversational=True)
    for chosen, rejected, key in _strict(pairs(rated, preferences, kind=_is_text)):
        context = prompt_messages(chosen)
        data.records.append(
            {
                "chosen": [*context, {"role": "assistant", "content": chosen["output_text"]}],
                "rejected": [*context, {"role": "assistant", "content": rejected["output_text"]}],
            }
        )
        data.keys.append(key)
        data.saw(chosen, rejected)
    return data


def pickapic(rated: list[Row], preferences: list[Row], *, exists: Callable[[str], bool]) -> Dataset:
    """Media pairs in the Pick-a-Pic layout; pairs whose files were deleted are counted and left out."""
    found = pairs(rated, preferences, kind=_is_media)
    tabs = {p.first["tab"] for p in found}
    if len(tabs) > 1:
        raise StudioError(
            f"media from several tabs ({', '.join(sorted(tabs))}) cannot share one pickapic dataset; "
            "choose one with --tab"
        )
    data = Dataset("pickapic", [], [])
    for pair in found:
        sources = [pair.first["files"][0], pair.second["files"][0]]
        if not all(exists(source) for source in sources):
            data.skipped["media file deleted"] = data.skipped.get("media file deleted", 0) + 1
            continue
        paths = []
        for row, source in zip((pair.first, pair.second), sources, strict=True):
            target = f"files/{row['id']}{PurePosixPath(source).suffix}"
            data.media[target] = source
            paths.append(target)
        data.records.append(
            {
                "caption": pair.first["prompt"],
                "jpg_0": paths[0],
                "jpg_1": paths[1],
                "label_0": pair.label,
                "label_1": 1.0 - pair.label,
                "model_0": pair.first["model_id"],
                "model_1": pair.second["model_id"],
            }
        )
        data.keys.append(pair.key)
        data.saw(pair.first, pair.second)
    return data


def safety(rated: Iterable[Row], blocked: Iterable[Row]) -> Dataset:
    """Unsafe examples: text answers voted down with the reason "unsafe", and blocked text outputs (their
    withheld text, `storage.blocked_outputs`). Every label is false; `category` says why."""
    data = Dataset("safety", [], [])

    def naive(row: Row) -> Row:  # times from two queries: one may carry a zone, the other not (SQLite)
        when = row["created_at"]
        return {**row, "created_at": when.replace(tzinfo=None) if when.tzinfo else when}

    votes = [r for r in rated if r["rating"] < 0 and r.get("reason") == "unsafe" and not r["files"]]
    for r in votes:
        if r["output_text"]:
            data.records.append(
                {
                    "prompt": r["prompt"],
                    "completion": r["output_text"],
                    "label": False,
                    "category": "unsafe vote",
                }
            )
            data.keys.append(f"v{r['id']}u{r['user_id']}")
            data.saw(naive(r))
    for b in blocked:
        data.records.append(
            {"prompt": b["prompt"], "completion": b["completion"], "label": False, "category": b["category"]}
        )
        data.keys.append(f"b{b['generation_id']}")
        data.saw(naive(b))
    return data


def build(
    fmt: str,
    rated: list[Row],
    preferences: list[Row],
    *,
    exists: Callable[[str], bool] | None = None,
    blocked: list[Row] | None = None,
) -> Dataset:
    """The records of format `fmt`; an unknown format is a StudioError naming the known ones."""
    if fmt == "safety":
        return safety(rated, blocked or [])
    if fmt == "sft":
        return sft(rated)
    if fmt == "kto":
        return kto(rated)
    if fmt == "dpo":
        return dpo(rated, preferences)
    if fmt == "reward":
        return reward(rated, preferences)
    if fmt == "pickapic":
        return pickapic(rated, preferences, exists=exists or (lambda _path: True))
    raise StudioError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")


def split(keys: list[str], fraction: float) -> list[bool]:
    """True for the records that go to the test split: a hash of each record's key, so the same record lands
    in the same split in every export, however much data was added since."""
    if not 0 <= fraction < 1:
        raise StudioError(f"the test split must be a fraction in [0, 1), not {fraction}")
    if fraction == 0:
        return [False] * len(keys)
    cut = int(fraction * 2**32)
    return [
        int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") < cut for key in keys
    ]
