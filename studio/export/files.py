"""Export files: a `Dataset` (studio/export/__init__.py) written as JSONL or Parquet with a dataset card.

Owns: the output folder's layout (`train.jsonl` / `test.jsonl` or `.parquet`, `README.md` whose YAML header
maps the splits to the files, as on the Hub, and whose body says how to load them, `files/` for media),
copying media, and writing nothing at all when there is nothing to export.
Ignores: which records exist (export/__init__.py) and the database.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from studio.errors import StudioError
from studio.export import Dataset, split

log = logging.getLogger(__name__)

_PAIRS = "A/B votes with a winner, or a liked and a disliked answer to the same prompt"
_NEEDS = {
    "sft": "liked answers in the Chat or Code tab",
    "kto": "thumbs up or down on text answers",
    "dpo": _PAIRS,
    "reward": _PAIRS,
    "pickapic": "A/B votes (or a liked and a disliked picture or clip of the same prompt) in a media tab",
    "safety": 'text answers voted down as "unsafe", or outputs the safety check blocked',
}
_COLUMNS = {
    "sft": "`messages`: a list of {role, content}",
    "kto": "`prompt`, `completion`, `label` (true = liked)",
    "dpo": "`prompt`, `chosen`, `rejected`",
    "reward": "`chosen`, `rejected` (implicit prompt: each holds the whole conversation)",
    "pickapic": "`caption`, `jpg_0`, `jpg_1` (paths beside this card), `label_0` (1 = jpg_0 preferred, "
    "0.5 = tie), `label_1`, `model_0`, `model_1`",
    "safety": "`prompt`, `completion`, `label` (always false: unsafe), `category` (why)",
}


@dataclass
class ExportResult:
    format: str
    folder: Path
    counts: dict[str, int]
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        skipped = "".join(f"; left out {n}: {why}" for why, n in self.skipped.items())
        return f"{self.format}: {counts} record(s) in {self.folder}{skipped}"


_LINE = orjson.OPT_APPEND_NEWLINE


def _dump(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, option=_LINE)
    except TypeError:  # a lone surrogate cannot be UTF-8: replace it rather than lose the record
        return orjson.dumps(_clean(record), option=_LINE)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        # Via UTF-16: a split surrogate pair joins up again; a lone half becomes U+FFFD.
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def write_jsonl(records: list[dict[str, Any]], path: Path) -> None:
    with path.open("wb", buffering=1 << 20) as out:
        out.writelines(map(_dump, records))


def write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa  # optional: only Parquet exports need it
    import pyarrow.parquet as pq

    try:
        frame = pa.Table.from_pylist(records)
    except (UnicodeError, pa.ArrowException):  # a lone surrogate: replace it rather than lose the record
        frame = pa.Table.from_pylist(_clean(records))
    pq.write_table(frame, path)


def write(
    data: Dataset,
    folder: str | Path,
    *,
    media_root: Path | None = None,
    parquet: bool = False,
    test_fraction: float = 0.0,
    filters: str = "",
) -> ExportResult:
    """Write the dataset; with no record, raise StudioError saying what would be needed (nothing written)."""
    if not data.records:
        skipped = "".join(f"; {n} left out: {why}" for why, n in data.skipped.items())
        raise StudioError(
            f"nothing to export as {data.format}{filters}: it needs {_NEEDS[data.format]}{skipped}"
        )
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            hint = "pip install -e '.[parquet]' (or pip install pyarrow)"
            raise StudioError(f"Parquet export needs pyarrow: {hint}") from None
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StudioError(f"{folder} is a file; give a folder to export into")
    is_test = split(data.keys, test_fraction)
    splits = {"train": data.records, "test": []}
    if any(is_test):
        splits = {
            "train": [r for r, test in zip(data.records, is_test, strict=True) if not test],
            "test": [r for r, test in zip(data.records, is_test, strict=True) if test],
        }
    splits = {name: records for name, records in splits.items() if records}
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "parquet" if parquet else "jsonl"
    result = ExportResult(data.format, folder, {k: len(v) for k, v in splits.items()}, skipped=data.skipped)
    for name, records in splits.items():
        path = folder / f"{name}.{suffix}"
        (write_parquet if parquet else write_jsonl)(records, path)
        result.files.append(path)
    for stale in {"train", "test"} - splits.keys():  # a previous export's split must not linger
        (folder / f"{stale}.{suffix}").unlink(missing_ok=True)
    if data.media:
        assert media_root is not None, "media exports need the data folder"
        (folder / "files").mkdir(exist_ok=True)
        for target, source in data.media.items():
            shutil.copy2(media_root / source, folder / target)
    card = folder / "README.md"
    card.write_text(dataset_card(data, result, suffix, filters), encoding="utf-8")
    result.files.append(card)
    log.info("exported %s", result.summary())
    return result


def dataset_card(data: Dataset, result: ExportResult, suffix: str, filters: str = "") -> str:
    """A Hugging Face dataset card: the YAML header maps splits to files, the body says what is inside."""
    header = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name in result.counts:
        header += [f"  - split: {name}", f"    path: {name}.{suffix}"]
    header += ["tags:", "- trl", "- studio", "---", ""]
    when = (
        f"{data.first:%Y-%m-%d %H:%M} to {data.last:%Y-%m-%d %H:%M} UTC"
        if data.first and data.last
        else "unknown"
    )
    shape = "conversational (lists of {role, content})" if data.conversational else "standard (plain text)"
    lines = [
        f"# Studio export: {data.format}",
        "",
        f"Ratings and A/B votes recorded in Studio, in TRL's `{data.format}` layout.",
        "",
        f"- Format: `{data.format}`, {shape if data.format != 'pickapic' else 'Pick-a-Pic pairs'}",
        f"- Columns: {_COLUMNS[data.format]}",
        "- Records: " + ", ".join(f"{n} {name}" for name, n in result.counts.items()),
        f"- Models: {', '.join(sorted(data.models))}",
        f"- Tabs: {', '.join(sorted(data.tabs))}",
        f"- Generations from {when}",
        # To the microsecond: `datasets` keys its cache on the card, and two exports must not share an entry.
        f"- Exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{filters}",
    ]
    lines += [f"- Left out: {n} ({why})" for why, n in data.skipped.items()]
    kind = "json" if suffix == "jsonl" else suffix
    files = ", ".join(f'"{name}": "{name}.{suffix}"' for name in result.counts)
    lines += ["", "```python", "from datasets import load_dataset", "", "# run inside this folder"]
    # Not load_dataset(folder): datasets 5.2 caches local folders by their name alone, so a second export
    # into a folder of the same name would load the first one's records.
    lines += [f'data = load_dataset("{kind}", data_files={{{files}}})', "```", ""]
    return "\n".join(header + lines)
