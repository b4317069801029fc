"""Acceptance test of the export: TRL's trainers consume it unchanged.

Generations come from the tiny random-weight chat checkpoint through the real backend; votes and an A/B
comparison are recorded through the service; each text export is loaded with `datasets` from its folder
(the dataset card's YAML maps the splits) and one optimisation step of TRL's SFT, DPO and KTO trainers runs
on the same tiny checkpoint, on the CPU. A wrong column name, type or shape fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.service import Studio

pytestmark = pytest.mark.tiny


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    from studio import Settings
    from tests.conftest import tiny_models_yaml, write_models

    folder = tmp_path_factory.mktemp("trl")
    yaml_body = tiny_models_yaml(tiny_model_dir, "{do_sample: true, max_new_tokens: 8}")
    settings = Settings.from_env(models_file=write_models(folder, yaml_body), data_dir=folder / "data")
    studio = Studio.from_settings(settings)
    try:
        *_, first = studio.chat(
            model_id="tiny", message="Hello, how are you?", params={"seed": 1, "system_prompt": "Be brief."}
        )
        *_, second = studio.chat(
            model_id="tiny",
            message="What is the capital of France?",
            conversation_id=first.conversation_id,
            params={"system_prompt": "Be brief."},  # the tab sends it with every turn
        )
        studio.rate(first.generation_id, "up")
        studio.rate(second.generation_id, "up", reason="accurate", comment="fine")
        a, b = studio.compare(
            tab="chat",
            prompt="Write a function that adds two numbers.",
            a={"model": "tiny", "params": {"seed": 1}},
            b={"model": "tiny", "params": {"seed": 2, "temperature": 1.5}},
        )
        studio.prefer(a.generation_id, b.generation_id, "a")
        studio.rate(a.generation_id, "up")
        studio.rate(b.generation_id, "down", reason="low quality")
        out = {}
        for fmt in ("sft", "kto", "dpo", "reward"):
            out[fmt] = folder / fmt
            studio.export(fmt, out[fmt])
        out["kto-parquet"] = folder / "kto-parquet"
        studio.export("kto", out["kto-parquet"], parquet=True)
        return out
    finally:
        studio.close()


def _load(folder: Path):
    """As the dataset card says to. (`load_dataset(folder)` also reads the card's splits, but datasets 5.2
    caches such folders by name alone: a second `kto` folder would load the first one's records.)"""
    from datasets import load_dataset

    kind = "parquet" if (folder / "train.parquet").exists() else "json"
    files = {"train": str(folder / f"train.{kind.replace('json', 'jsonl')}")}
    return load_dataset(kind, data_files=files, cache_dir=str(folder.parent / "cache"))["train"]


def _config(cls: type, tmp_path: Path, **extra):
    return cls(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        **extra,
    )


def _trained(trainer) -> None:
    import torch

    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.train()
    assert result.global_step == 1
    after = list(trainer.model.parameters())
    assert any(not torch.equal(x, y.detach()) for x, y in zip(before, after, strict=True)), "no weight moved"


def test_exports_load_with_trls_columns(exports: dict[str, Path]) -> None:
    from trl.data_utils import is_conversational

    columns = {
        "sft": ["messages"],
        "kto": ["prompt", "completion", "label"],
        "dpo": ["prompt", "chosen", "rejected"],
        "reward": ["chosen", "rejected"],
    }
    for fmt, names in columns.items():
        data = _load(exports[fmt])
        assert data.column_names == names, fmt
        # A history makes sft and kto conversational; the A/B pair had none, so DPO is plain text; reward is
        # conversational always (its records hold the prompt).
        assert is_conversational(data[0]) == (fmt != "dpo"), fmt
    # The first turn is inside the liked two-turn conversation; the liked A/B answer stands alone.
    assert sorted(len(m) for m in _load(exports["sft"])["messages"]) == [2, 5]  # with the system prompt
    kto = _load(exports["kto"])
    assert sorted(kto["label"]) == [False, True, True, True]
    assert kto[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, how are you?"},
    ]
    assert _load(exports["kto-parquet"]).to_list() == kto.to_list()  # Parquet holds the same records


def test_one_sft_step(exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=str(tiny_model_dir),
        args=_config(SFTConfig, tmp_path, max_length=128),
        train_dataset=_load(exports["sft"]),
    )
    _trained(trainer)


def test_one_dpo_step(exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=str(tiny_model_dir),
        args=_config(DPOConfig, tmp_path, max_length=128),
        train_dataset=_load(exports["dpo"]),
    )
    _trained(trainer)


def test_one_kto_step(exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import KTOConfig, KTOTrainer

    trainer = KTOTrainer(
        model=str(tiny_model_dir),
        args=_config(KTOConfig, tmp_path, max_length=128),
        train_dataset=_load(exports["kto"]),
    )
    _trained(trainer)


def test_one_reward_step(exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import RewardConfig, RewardTrainer

    trainer = RewardTrainer(
        model=str(tiny_model_dir),
        args=_config(RewardConfig, tmp_path, max_length=128),
        train_dataset=_load(exports["reward"]),
    )
    _trained(trainer)
