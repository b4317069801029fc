"""Training on the Image tab's votes (diffusion-dpo): which bases it takes, and the pairs it reads.

Owns: refusing a base that is not a local diffusers pipeline of a family the loop trains (before anything
is stored), and turning the export's `pickapic` records into {prompt, chosen, rejected} records with the
pictures' absolute paths: ties dropped (diffusers' script would count `label_0 = 0.5` as a win for
`jpg_0`; "both bad" never becomes a pair), and every pair left out counted by reason (a deleted picture,
a tie), for the run's record and its progress.
Ignores: the run's lifecycle (train.py), the loop (studio/train/diffusion_dpo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio import export
from studio.backends import BackendContext, BackendError, backend_class
from studio.config import ModelSpec
from studio.errors import StudioError
from studio.train.diffusion_files import family_of

METHOD = "diffusion-dpo"


def check_image_base(spec: ModelSpec, context: BackendContext) -> None:
    """StudioError unless the diffusers model `spec` is a pipeline folder (or Hub id) of a family the loop
    trains (SD 1.x/2.x, SDXL): a single-file checkpoint or another pipeline is refused with the reason."""
    backend: Any = backend_class(spec.backend)(spec, context)
    try:
        where = backend.training_weights()
    except BackendError as exc:
        raise StudioError(str(exc)) from None
    family_of(where)


def image_pairs(
    data: export.Dataset, media_path: Callable[[str], Path]
) -> tuple[list[dict[str, Any]], list[str], dict[str, int]]:
    """(records, vote keys, skipped by reason) from a pickapic dataset built with an `exists` check."""
    skipped = dict(data.skipped)
    records: list[dict[str, Any]] = []
    keys: list[str] = []
    for record, key in zip(data.records, data.keys, strict=True):
        if record["label_0"] not in (0.0, 1.0):
            skipped["tie"] = skipped.get("tie", 0) + 1
            continue
        first, second = (media_path(data.media[record[k]]) for k in ("jpg_0", "jpg_1"))
        chosen, rejected = (first, second) if record["label_0"] == 1.0 else (second, first)
        records.append({"prompt": record["caption"], "chosen": str(chosen), "rejected": str(rejected)})
        keys.append(key)
    return records, keys, skipped


def skipped_text(skipped: dict[str, int]) -> str:
    """' (3 pairs left out: 1 tie, 2 media file deleted)', or '' when none was."""
    total = sum(skipped.values())
    if not total:
        return ""
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    return f" ({total} pair{'s' if total != 1 else ''} left out: {reasons})"
