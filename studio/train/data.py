"""Training data: the export's records (studio/export) checked, held out and shaped for TRL's trainers.

Owns: which export format each method reads (`FORMAT`), the fewest records a run needs and the message
that says how many there are, how many are needed and how to get more (`check_enough`), the held-out
split (the export's hash split, so a record stays on its side as votes are added), the dataset hash a
run records, and `for_trainer`: every record conversational (reward: chosen and rejected as whole
conversations, the export's `reward` format) (a plain-text prompt becomes one user
message, as the Chat tab sends it through the chat template) and SFT's `messages` as prompt/completion,
so the loss falls on the answer only.
Ignores: where the records come from (the service reads them from storage) and training (runner.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from studio.errors import StudioError
from studio.export import split

FORMAT = {
    "sft": "sft",
    "dpo": "dpo",
    "kto": "kto",
    "reward": "reward",
    "diffusion-dpo": "pickapic",
}  # method -> export format
MIN_RECORDS = {"sft": 4, "dpo": 4, "kto": 4, "reward": 4, "diffusion-dpo": 4}
_WHAT = {
    "sft": "liked answers",
    "dpo": "preference pairs",
    "kto": "votes",
    "reward": "preference pairs",
    "diffusion-dpo": "picture pairs",
}
_HOW = {
    "sft": "press thumbs up on good answers in the Chat or Code tab",
    "dpo": "compare two answers to one prompt (A/B) and pick a winner, or like one answer and dislike "
    "another to the same prompt",
    "kto": "press thumbs up or down on answers in the Chat or Code tab",
    "diffusion-dpo": "compare two pictures of one prompt in the Image tab (A/B) and pick a winner, or like "
    "one picture and dislike another of the same prompt (ties and both bad teach nothing)",
    "reward": "compare two answers to one prompt (A/B) and pick a winner, or like one answer and dislike "
    "another to the same prompt",
}


@dataclass
class Split:
    """The records a run trains on and the held-out ones it reports metrics on, with their vote keys."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    keys: list[
        str
    ]  # every record's vote key (export keys: g<generation>u<user>, p<preference>, r<a>-<b>u<user>)
    moved: bool = False  # too few to hold any out: everything trains


def check_enough(method: str, records: list[dict[str, Any]], filters: str = "") -> None:
    """StudioError unless there are enough: how many there are, how many are needed, how to get more."""
    need = MIN_RECORDS[method]
    have = len(records)
    if have < need:
        raise StudioError(
            f"not enough data to train {method}{filters}: {have} {_WHAT[method]}, at least {need} needed. "
            f"To get more, {_HOW[method]}."
        )
    if method == "kto":
        liked = sum(1 for r in records if r["label"])
        if liked == 0 or liked == have:
            missing = "disliked" if liked else "liked"
            raise StudioError(
                f"not enough data to train kto{filters}: {liked} liked and {have - liked} disliked answers; "
                f"KTO needs both, at least one {missing} answer. To get more, {_HOW['kto']}."
            )


def held_out(records: list[dict[str, Any]], keys: list[str], fraction: float, minimum: int) -> Split:
    """Split by the export's hash of each vote key; when fewer than `minimum` would train, all of them do."""
    is_test = split(keys, fraction)
    train = [r for r, test in zip(records, is_test, strict=True) if not test]
    held = [r for r, test in zip(records, is_test, strict=True) if test]
    if len(train) < minimum:
        return Split(list(records), [], list(keys), moved=bool(held))
    return Split(train, held, list(keys))


def dataset_hash(records: list[dict[str, Any]]) -> str:
    """sha256 of the records as canonical JSON: two runs on the same data have the same hash."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def last_prompts(records: list[dict[str, Any]]) -> list[str]:
    """The last user message of each export record (sft, dpo or kto): what it asked, to ask again."""
    out = []
    for record in records:
        asked = record.get("prompt", record.get("messages"))
        if isinstance(asked, str):
            out.append(asked)
        elif isinstance(asked, list):
            users = [m["content"] for m in asked if m.get("role") == "user"]
            out += users[-1:]
    return list(dict.fromkeys(out))


def _user(content: Any) -> list[dict[str, str]]:
    return content if isinstance(content, list) else [{"role": "user", "content": str(content)}]


def _assistant(content: Any) -> list[dict[str, str]]:
    return content if isinstance(content, list) else [{"role": "assistant", "content": str(content)}]


_COLUMNS: dict[str, dict[str, Any]] = {
    "dpo": {"prompt": _user, "chosen": _assistant, "rejected": _assistant},
    "kto": {"prompt": _user, "completion": _assistant, "label": bool},
}


def for_trainer(method: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The export's records in the conversational shape the trainers apply the chat template to."""
    if method == "sft":
        return [
            {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}
            for r in records
            if len(r["messages"]) >= 2
        ]
    if method == "diffusion-dpo":  # already {prompt, chosen, rejected} picture paths (the service's)
        return list(records)
    if method == "reward":  # whole conversations already (the export's implicit-prompt preference format)
        return [{"chosen": list(r["chosen"]), "rejected": list(r["rejected"])} for r in records]
    if method in _COLUMNS:  # dpo, kto: each column turned into the shape the trainer expects
        columns = _COLUMNS[method]
        return [{name: shape(r[name]) for name, shape in columns.items()} for r in records]
    raise StudioError(f"unknown training method {method!r}")
