"""The Train tab's service end to end on the tiny chat checkpoint: votes made through the service, each
method trained (LoRA through TRL), the variant answering in Chat through the real backend, listed after a
restart and by the CLI; Stop, a closed stream, waiting in line, a crash, a full disk, a NaN loss, and
every refusal.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio import Settings, storage
from studio.errors import StudioError
from studio.service import Studio, TrainUpdate

pytestmark = pytest.mark.tiny

FAST = {"max_steps": 2}


def _models(tiny: Path, broken: Path, *, with_tiny: bool = True) -> str:
    tiny_entry = f"""
  - id: tiny
    tabs: [chat, code]
    backend: transformers-chat
    source: {tiny}
    defaults: {{do_sample: true, max_new_tokens: 8}}
"""
    return f"""
models:{tiny_entry if with_tiny else ""}
  - id: broken
    tabs: [chat]
    backend: transformers-chat
    source: {broken}
  - id: remote
    tabs: [chat]
    backend: openai-chat
    source: some/model
    base_url: http://127.0.0.1:9/v1
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/painter
"""


@pytest.fixture(scope="module")
def place(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[Settings, Studio]]:
    """A studio with six A/B votes on tiny's answers (winner liked, loser disliked), and a checkpoint whose
    weights are NaN (its loss is NaN from the first step)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.conftest import write_models

    folder = tmp_path_factory.mktemp("train")
    broken = folder / "broken"
    shutil.copytree(tiny_model_dir, broken)
    model = AutoModelForCausalLM.from_pretrained(broken)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save_pretrained(broken)
    settings = Settings.from_env(
        models_file=write_models(folder, _models(tiny_model_dir, broken)), data_dir=folder / "data"
    )
    studio = Studio.from_settings(settings)
    for i in range(6):
        a, b = studio.compare(
            tab="chat",
            prompt=f"Tell me about the number {i}.",
            a={"model": "tiny", "params": {"seed": i}},
            b={"model": "tiny", "params": {"seed": 100 + i}},
        )
        assert a.text != b.text
        studio.prefer(a.generation_id, b.generation_id, "a")
        studio.rate(a.generation_id, "up")
        studio.rate(b.generation_id, "down")
    yield settings, studio
    studio.close()


def _finish(updates: Iterator[TrainUpdate]) -> tuple[TrainUpdate, list[TrainUpdate]]:
    seen = list(updates)
    assert seen[-1].done and all(not u.done for u in seen[:-1])
    return seen[-1], seen


@pytest.fixture(scope="module")
def trained(place: tuple[Settings, Studio]) -> dict[str, tuple[TrainUpdate, list[TrainUpdate]]]:
    _, studio = place
    return {m: _finish(studio.train(method=m, model_id="tiny", params=FAST)) for m in ("sft", "dpo", "kto")}


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_each_method_trains_a_variant_that_answers_in_chat(
    place: tuple[Settings, Studio], trained: dict[str, Any], method: str
) -> None:
    _, studio = place
    final, seen = trained[method]
    assert final.status == "ok" and final.error is None, final.error
    assert final.variant == f"tiny+{method}-{final.run_id}" and final.base == "tiny"
    adapter = Path(final.adapter or "")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    assert not list(adapter.parent.glob("*.partial"))
    # Progress: the phases in order, each optimizer step with its loss (the curve), and the total.
    phases = [u.phase for u in seen]
    assert phases.index("loading") < phases.index("training") < phases.index("saving") < len(phases) - 1
    assert [int(h["step"]) for h in final.history] == [1, 2] and final.step == final.total == 2
    assert all("loss" in h and "grad_norm" in h for h in final.history)
    if method == "dpo":
        assert {"rewards/margins", "rewards/accuracies"} <= final.metrics.keys()
    if method == "kto":
        assert "kl" in final.metrics
    counts = {"sft": 6, "dpo": 6, "kto": 12}[method]  # A/B wins liked; 6 pairs; every thumb
    assert final.train_records + final.eval_records == counts
    if final.eval_records:
        assert "eval_loss" in final.eval_metrics
    # A model at once: in the Chat and Code lists, and answering through the real backend on its base.
    assert final.variant in [m.id for m in studio.models("chat")] and final.variant in [
        m.id for m in studio.models("code")
    ]
    *_, answer = studio.chat(model_id=final.variant, message="Hello there")
    assert answer.status == "ok" and answer.error is None
    row = studio.train_run(final.run_id)
    assert row["status"] == "ok" and row["variant"] == final.variant and row["adapter"] == final.adapter
    assert len(row["vote_ids"]) == counts and len(row["dataset_hash"]) == 64 and len(row["history"]) == 2
    assert row["params"]["max_steps"] == 2 and row["params"]["learning_rate"] == pytest.approx(
        {"sft": 2e-4, "dpo": 5e-4, "kto": 5e-4}[method]
    )


def test_variants_and_base_share_the_base_weights(place: tuple[Settings, Studio], trained: dict) -> None:
    _, studio = place
    dpo, kto = trained["dpo"][0].variant, trained["kto"][0].variant
    prompt = {"message": "Share the weights", "params": {"do_sample": False}}
    studio.manager.unload_all()
    *_, before = studio.chat(model_id="tiny", **prompt)
    for variant in (dpo, kto):
        *_, done = studio.chat(model_id=variant, **prompt)
        assert done.status == "ok"
    states = {s.id: s for s in studio.manager.states() if s.loaded}
    assert {"tiny", dpo, kto} <= states.keys()
    base = states["tiny"].memory_bytes
    assert 0 < states[dpo].memory_bytes < base / 3 and 0 < states[kto].memory_bytes < base / 3
    # The budget counts the base once and each variant as its adapter.
    assert studio.manager.used("cpu") == base + states[dpo].memory_bytes + states[kto].memory_bytes
    with studio.manager.pin(dpo) as variant, studio.manager.pin("tiny") as tiny:
        assert variant.model is tiny.model  # one copy of the weights, adapters switched per request
    *_, after = studio.chat(model_id="tiny", **prompt)
    assert after.text == before.text  # the base answers with every adapter off
    assert not studio.manager.unload("tiny")  # held while its variants are loaded
    studio.manager.unload_all()
    assert studio.manager.loaded() == []


def test_variants_are_listed_after_a_restart_and_by_the_cli(
    place: tuple[Settings, Studio], trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.cli import main

    settings, _ = place
    variants = {trained[m][0].variant for m in trained}
    again = Studio.from_settings(settings)
    try:
        assert variants <= {m.id for m in again.models("chat")}
        offered = {v["id"]: v for v in again.variants()}
        assert offered[trained["dpo"][0].variant]["base"] == "tiny"
    finally:
        again.close()
    args = ["--models", str(settings.models_file), "--data-dir", str(settings.data_dir)]
    assert main(["models", "list", "--json", *args]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    dpo = rows[trained["dpo"][0].variant]
    assert (dpo["base"], dpo["method"], dpo["run_id"]) == ("tiny", "dpo", trained["dpo"][0].run_id)
    assert main(["train", "list", "--json", *args]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["variant"] for r in listed} >= variants


def test_the_cli_trains_and_the_variant_generates(
    place: tuple[Settings, Studio], capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.cli import main

    settings, _ = place
    args = ["--models", str(settings.models_file), "--data-dir", str(settings.data_dir)]
    code = main(
        ["train", "--method", "dpo", "--model", "tiny", "--max-steps", "1", "--lr", "1e-4", "--json", *args]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert set(result) >= {"run_id", "variant", "adapter", "base", "method", "status", "metrics"}
    assert set(result) >= {"train_records", "eval_records"}
    assert result["status"] == "ok" and "loss" in result["metrics"] and Path(result["adapter"]).is_dir()
    assert "step 1/1" in out.err  # progress on stderr
    assert main(["train", "show", str(result["run_id"]), "--json", *args]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["params"]["learning_rate"] == 1e-4 and shown["variant"] == result["variant"]
    assert main(["generate", "chat", "Hi", "--model", result["variant"], "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == result["variant"]
    assert main(["train", "--method", "dpo", "--model", "tiny", "--lr", "5", *args]) == 2
    assert "learning_rate=5.0 is out of range" in capsys.readouterr().err


def test_stop_ends_the_run_within_one_step_without_a_variant(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    updates = studio.train(method="dpo", model_id="tiny", params={"max_steps": 500}, run_key="stop-me")
    at = None
    for update in updates:
        if at is None and update.phase == "training" and update.step >= 1:
            at = update.step
            assert studio.cancel("stop-me")
        final = update
    assert at is not None and final.done and final.status == "stopped" and final.error is None
    assert final.variant is None and final.step <= at + 1 < 500
    row = studio.train_run(final.run_id)
    assert row["status"] == "stopped" and row["variant"] is None and row["steps"] <= at + 1
    assert not list(studio.adapters_dir.glob(f"*-{final.run_id}*"))


def test_a_closed_stream_stops_the_run(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    updates = studio.train(method="kto", model_id="tiny", params={"max_steps": 500})
    for update in updates:
        if update.phase == "training" and update.step >= 1:
            break
    updates.close()  # the tab was closed
    row = studio.train_runs()[0]
    assert row["run_id"] == update.run_id and row["status"] == "stopped" and row["variant"] is None
    assert row["error"] == "the browser stopped listening"


def test_a_second_run_waits_its_turn_on_the_device(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    busy = studio.manager.line_up("tiny", in_generator=True)  # a job already running on the CPU
    assert busy.running
    updates = studio.train(method="sft", model_id="tiny", params={"max_steps": 1})
    first = next(updates)
    assert first.phase == "waiting" and first.notices == ["Waiting for the CPU: 1 job ahead"]
    assert studio.train_run(first.run_id)["status"] == "running"
    busy.release()
    final, _ = _finish(updates)
    assert final.status == "ok" and final.variant


def test_a_crash_leaves_the_run_interrupted_at_the_next_start(place: tuple[Settings, Studio]) -> None:
    from sqlmodel import Session

    settings, studio = place
    with Session(studio.engine, expire_on_commit=False) as session:  # what a killed run leaves behind
        uid = studio.user_id(None)
        run = storage.begin_train_run(
            session, run=storage.TrainRun(user_id=uid, base_model="tiny", method="dpo")
        )
    partial = studio.adapters_dir / f"tiny+dpo-{run.id}.partial"
    partial.mkdir(parents=True)
    (partial / "adapter_model.safetensors").write_bytes(b"half")
    restarted = Studio.from_settings(settings)
    try:
        assert restarted.recover_interrupted() >= 1
        row = restarted.train_run(run.id)
        assert row["status"] == "interrupted" and "stopped while this run was training" in row["error"]
        assert not partial.exists() and f"tiny+dpo-{run.id}" not in {m.id for m in restarted.models()}
    finally:
        restarted.close()


def test_a_full_disk_while_saving_is_an_error_with_no_half_adapter(
    place: tuple[Settings, Studio], monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    _, studio = place

    def full_disk(self: Any, folder: str, **kwargs: Any) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 100)  # a part was written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PeftModel, "save_pretrained", full_disk)
    final, _ = _finish(studio.train(method="sft", model_id="tiny", params={"max_steps": 1}))
    assert final.status == "error" and "No space left on device" in (final.error or "")
    assert final.variant is None and not list(studio.adapters_dir.glob(f"*-{final.run_id}*"))
    assert studio.train_run(final.run_id)["status"] == "error"
    assert f"tiny+sft-{final.run_id}" not in {m.id for m in studio.models("chat")}


def test_a_nan_loss_stops_the_run_with_a_message(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    final, _ = _finish(studio.train(method="sft", model_id="broken", params={"max_steps": 5}))
    assert final.status == "stopped" and final.variant is None
    assert "the loss became nan at step 1" in (final.error or "") and "lower the learning rate" in final.error
    assert studio.train_run(final.run_id)["steps"] == 1


def test_deleting_a_variant_removes_its_files_and_keeps_its_run(place: tuple[Settings, Studio]) -> None:
    _, studio = place
    final, _ = _finish(studio.train(method="kto", model_id="tiny", params={"max_steps": 1}))
    *_, answer = studio.chat(model_id=final.variant, message="before I go")  # loaded, then deleted
    assert answer.status == "ok"
    assert "deleted" in studio.delete_variant(final.variant)
    assert not Path(final.adapter or "").exists() and final.variant not in {m.id for m in studio.models()}
    assert final.variant not in studio.manager.loaded()
    row = studio.train_run(final.run_id)
    assert row["variant"] == final.variant and row["variant_deleted"] and row["adapter"] is None
    with pytest.raises(StudioError, match="was a trained variant and has been deleted"):
        next(studio.train(method="kto", model_id=final.variant))
    with pytest.raises(StudioError, match="does not exist"):
        studio.delete_variant(final.variant)


def test_a_deleted_base_leaves_its_variants_out(
    place: tuple[Settings, Studio], trained: dict, tmp_path: Path
) -> None:
    settings, _ = place
    models = tmp_path / "models.yaml"
    body = settings.models_file.read_text().split("  - id: broken")[1]
    models.write_text("models:\n  - id: broken" + body)
    without = Studio.from_settings(Settings.from_env(models_file=models, data_dir=settings.data_dir))
    try:
        assert not [m.id for m in without.models() if m.id.startswith("tiny")]
        with pytest.raises(StudioError, match="unknown model 'tiny'"):
            next(without.train(method="dpo", model_id="tiny"))
    finally:
        without.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"method": "dpo", "model_id": "remote"},
            "runs on a remote server (openai-chat): training needs its",
        ),
        (
            {"method": "dpo", "model_id": "painter"},
            "is a image model (fake-image); training takes a chat model",
        ),
        ({"method": "dpo", "model_id": "nope"}, "unknown model 'nope'; known models: tiny"),
        ({"method": "ppo", "model_id": "tiny"}, "unknown training method 'ppo'"),
        ({"method": "dpo", "model_id": "tiny", "params": {"lr": 1}}, "unknown hyperparameter 'lr'"),
        ({"method": "dpo", "model_id": "tiny", "params": {"beta": 50}}, "beta=50 is out of range"),
        ({"method": "dpo", "model_id": "tiny", "tab": "image"}, "not the image tab's"),
        (
            {"method": "dpo", "model_id": "tiny", "since": "2099-01-01"},
            "not enough data to train dpo (since 2099-01-01): 0 preference pairs, at least 4 needed. To get "
            "more, compare two answers",
        ),
        ({"method": "sft", "model_id": "tiny", "user": "newcomer"}, "0 liked answers, at least 4 needed"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_stored(
    place: tuple[Settings, Studio], kwargs: dict, message: str
) -> None:
    _, studio = place
    runs = len(studio.train_runs(all_users=True))
    with pytest.raises(StudioError) as caught:
        next(studio.train(**kwargs))
    assert message in str(caught.value)
    assert len(studio.train_runs(all_users=True)) == runs


def test_a_variant_is_not_a_base_and_only_an_admin_trains_on_everyones_votes(
    place: tuple[Settings, Studio], trained: dict, tmp_path: Path
) -> None:
    from studio.security.accounts import UserStore, add_user

    _, studio = place
    variant = trained["dpo"][0].variant
    with pytest.raises(
        StudioError, match=re.escape(f"{variant} is a trained variant; train its base, tiny,")
    ):
        next(studio.train(method="dpo", model_id=variant))
    users = tmp_path / "users.json"
    add_user(users, "ann", "pw-ann-123456", admin=True)
    add_user(users, "bob", "pw-bob-123456")
    studio.accounts = UserStore(users)
    try:
        with pytest.raises(StudioError, match="only an admin may train on every user's votes"):
            next(studio.train(method="dpo", model_id="tiny", all_users=True, user="bob"))
        with pytest.raises(StudioError, match="0 preference pairs"):  # bob's own votes: none
            next(studio.train(method="dpo", model_id="tiny", user="bob"))
        updates = studio.train(method="dpo", model_id="tiny", all_users=True, user="ann", params=FAST)
        first = next(updates)
        updates.close()  # stopped at once: only who may train on what is checked here
        assert first.train_records + first.eval_records == 6  # everyone's (the local user's) votes
    finally:
        studio.accounts = None
