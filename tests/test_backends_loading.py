"""studio.backends.loading: the weights path or ModelNotAvailable, device and dtype, and backends that
share these helpers instead of importing each other."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from studio.backends import BackendContext, BackendError, ModelNotAvailable
from studio.backends.loading import (
    device_and_dtype,
    parameter_bytes,
    resolve_device,
    torch_dtype,
    unreadable_weights,
    weights_path,
)
from studio.config import ModelSpec
from tests.test_architecture import SHARED_BACKEND_HELPERS

BACKENDS = Path(__file__).resolve().parent.parent / "studio" / "backends"
SHARED = SHARED_BACKEND_HELPERS


def spec(source: str = "nobody/absent-model", **fields: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {"id": "m", "tabs": ["chat"], "backend": "fake-chat", "source": source, **fields}
    )


@pytest.fixture
def context(tmp_path: Path) -> BackendContext:
    return BackendContext(model_cache=tmp_path / "cache", base_dir=tmp_path)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_a_hub_id_is_handed_to_the_library_as_is(context: BackendContext) -> None:
    assert weights_path(spec("nobody/absent-model"), context) == "nobody/absent-model"


def test_a_local_file_is_its_path(context: BackendContext, tmp_path: Path) -> None:
    (tmp_path / "voice.onnx").write_bytes(b"x")
    assert weights_path(spec("./voice.onnx"), context) == tmp_path / "voice.onnx"


def test_a_missing_local_path_is_not_available(context: BackendContext, tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"model 'm': local source .*gone does not exist"):
        weights_path(spec("./gone"), context)


def test_a_pip_model_not_fetched_names_the_pull_command(context: BackendContext) -> None:
    with pytest.raises(ModelNotAvailable) as err:
        weights_path(spec("pip:no-such-dist-xyz==0.1#models/voice.onnx"), context)
    assert str(err.value) == (
        "model 'm' is not downloaded; run `studio models pull m` (needs the internet once)"
    )


def test_an_unreadable_hub_model_names_the_pull_command_and_offline_adds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = unreadable_weights(spec(), "nobody/absent-model", OSError("no file"), "model folder")
    assert isinstance(offline, ModelNotAvailable)
    assert str(offline) == "model 'm' is not downloaded; run `studio models pull m` (needs the internet once)"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    online = unreadable_weights(spec(), "nobody/absent-model", OSError("404 not found"), "model folder")
    assert str(online).startswith("model 'm' is not downloaded; run `studio models pull m`")
    assert str(online).endswith(" (OSError: 404 not found)")
    worded_offline = unreadable_weights(spec(), "a/b", OSError("we are offline"), "model folder")
    assert str(worded_offline) == str(offline)


def test_an_unreadable_local_folder_says_what_it_is_not(tmp_path: Path) -> None:
    err = unreadable_weights(spec(), tmp_path, OSError("no config.json\nmore"), "MusicGen folder")
    assert str(err) == f"model 'm': {tmp_path} is not a MusicGen folder (OSError: no config.json)"


def test_device_cpu_stays_cpu_and_auto_without_cuda_is_cpu(no_cuda: None) -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"


def test_device_cuda_without_a_gpu_is_refused_with_the_fix(no_cuda: None) -> None:
    with pytest.raises(BackendError, match="torch sees no CUDA GPU; use 'cpu' or 'auto'"):
        resolve_device("cuda")


def test_dtypes_map_to_torch_and_half_precision_becomes_float32_on_the_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    assert torch_dtype(spec(dtype="float32"), "cpu") is torch.float32
    assert torch_dtype(spec(dtype="bfloat16"), "cpu") is torch.bfloat16
    assert torch_dtype(spec(dtype="float16"), "cuda") is torch.float16
    assert torch_dtype(spec(dtype="float16"), "cpu", half_on_cpu=True) is torch.float16
    with caplog.at_level(logging.WARNING, logger="studio.backends.loading"):
        assert torch_dtype(spec(dtype="float16"), "cpu") is torch.float32
    assert "model m: float16 is not usable on the CPU" in caplog.text


def test_device_and_dtype_together(no_cuda: None) -> None:
    import torch

    assert device_and_dtype(spec(device="auto", dtype="float16")) == ("cpu", torch.float32)
    assert device_and_dtype(spec(device="cpu", dtype="float16"), half_on_cpu=True) == ("cpu", torch.float16)


def test_parameter_bytes_counts_every_parameter() -> None:
    import torch

    assert parameter_bytes(None) == 0
    assert parameter_bytes(torch.nn.Linear(3, 2)) == (3 * 2 + 2) * 4
    assert parameter_bytes(torch.nn.Linear(3, 2).to(torch.bfloat16)) == (3 * 2 + 2) * 2


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from studio.backends import musicgen` imports a module as surely as its dotted form does.
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


# __init__.py is left out: the package imports every backend module once, to register it.
BACKEND_MODULES = sorted(p for p in BACKENDS.glob("*.py") if p.name != "__init__.py")
OTHER_BACKENDS = {f"studio.backends.{p.stem}" for p in BACKEND_MODULES} - SHARED


@pytest.mark.parametrize("path", BACKEND_MODULES, ids=lambda p: p.name)
def test_backends_share_helpers_and_never_import_each_other(path: Path) -> None:
    assert not imported_modules(path) & OTHER_BACKENDS, f"{path.name} imports another backend"


def test_the_import_check_catches_both_spellings(tmp_path: Path) -> None:
    for line in (
        "from studio.backends.transformers_chat import resolve_device",
        "from studio.backends import Backend, musicgen",
        "import studio.backends.diffusers_image",
    ):
        (tmp_path / "b.py").write_text(line + "\n", encoding="utf-8")
        assert imported_modules(tmp_path / "b.py") & OTHER_BACKENDS, line
    (tmp_path / "b.py").write_text("from studio.backends.loading import weights_path\n", encoding="utf-8")
    assert not imported_modules(tmp_path / "b.py") & OTHER_BACKENDS
