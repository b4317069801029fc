"""Trained variants as models, and the records of the runs that made them.

Owns: turning a stored variant (storage's `variant` row) into a `VariantSpec` on its base's entry (same
backend, tabs, device and defaults; its source is the adapter folder), adding it to the models every tab
lists (in this process's configuration, never by editing models.yaml), leaving out one whose base left
models.yaml or whose adapter folder is gone (with a warning), deleting a variant (its adapter files go,
its row and run stay), and the lineage `studio models list` shows; runs listed and shown (`train_runs`,
`train_run`), and runs a crash left running marked interrupted at start (their half-written adapter
folders removed).
Ignores: training (train.py) and serving (the manager loads a variant on its shared base).
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from studio import storage
from studio.backends import preferred_kinds
from studio.config import ModelSpec, Settings, StudioConfig, VariantSpec
from studio.errors import StudioError, quote
from studio.service.models import ModelsPanel
from studio.service.types import GenerationResult, ModelInfo

log = logging.getLogger(__name__)


def variant_spec(base: ModelSpec, variant: storage.Variant) -> VariantSpec:
    """The model entry of a variant: its base's, with the adapter folder as its source."""
    fields: dict[str, Any] = base.model_dump()
    # A LoRA runs on transformers: of a preference list ("llama-cpp, transformers-chat") it takes that kind.
    kinds = preferred_kinds(base.backend)
    if len(kinds) > 1 and "transformers-chat" in kinds:
        fields.update(backend="transformers-chat", options={})  # the other kind's options are not its own
    fields.update(
        id=variant.id,
        source=variant.adapter_path,
        sha256=None,
        memory_gb=None,  # the manager measures the adapter; the base is counted once, as itself
        description=f"{variant.method.upper()} LoRA of {base.id} (run {variant.run_id})",
        base=base.id,
        method=variant.method,
        run_id=variant.run_id,
    )
    if variant.method == "reward":
        # A scorer, not a chat model: its base's weights with a score head and LoRA adapter, run by the
        # reward backend; it serves no tab of its own, only Best of n (the base's chat settings do not apply).
        fields.update(
            backend="transformers-reward",
            tabs=["scorer"],
            defaults={},
            options={},
            loras=[],
            description=f"reward model (scorer) trained from votes on {base.id} (run {variant.run_id})",
        )
    return VariantSpec(**fields)


def offer(config: StudioConfig, variant: storage.Variant) -> VariantSpec | None:
    """Add a stored variant to the models on offer; None (with a warning) when it cannot be served."""
    try:
        base = config.model(variant.base_model)
    except KeyError:
        log.warning(
            "variant %s is not offered: its base %s is not in models.yaml", variant.id, variant.base_model
        )
        return None
    if not Path(variant.adapter_path).is_dir():
        log.warning(
            "variant %s is not offered: its adapter folder %s is gone", variant.id, variant.adapter_path
        )
        return None
    if any(s.id == variant.id for s in config.models):
        return None
    spec = variant_spec(base, variant)
    config.add_model(spec)
    return spec


def offer_stored(config: StudioConfig, engine: Engine) -> list[VariantSpec]:
    """Every stored variant that can be served, added to `config`."""
    with Session(engine) as session:
        variants = storage.list_variants(session)
    return [spec for v in variants if (spec := offer(config, v)) is not None]


def stored_variants(config: StudioConfig, settings: Settings) -> list[VariantSpec]:
    """For commands that read models without a `Studio` (`studio models list`): open the database, offer
    its variants in `config`, close it."""
    engine = storage.make_engine(settings.database_url)
    try:
        return offer_stored(config, engine)
    finally:
        engine.dispose()


class Variants(ModelsPanel):
    """Variants offered at start-up, compared blind with their base, promoted or deleted on request; the
    records of training runs. (A ModelsPanel: a promoted variant comes first in its tab's `models`.)"""

    # The blind comparison runs both sides as an ordinary A/B comparison: the facade's (library.py).
    compare: Callable[..., tuple[GenerationResult, GenerationResult]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offered = {spec.id for spec in offer_stored(self.config, self.engine)}
        with Session(self.engine) as session:
            variants = storage.list_variants(session)
        # tab -> the variant promoted to be its default (listed first)
        self._tab_defaults = {v.default_for: v.id for v in variants if v.default_for and v.id in offered}

    def models(self, tab: str | None = None) -> list[ModelInfo]:
        listed = super().models(tab)
        first = self._tab_defaults.get(tab) if tab else None
        return sorted(listed, key=lambda m: m.id != first) if first else listed

    @property
    def adapters_dir(self) -> Path:
        return self.settings.data_dir / "adapters"

    def variants(self) -> list[dict[str, Any]]:
        """Every variant on offer, with its lineage: id, base, method, run, adapter folder, default_for."""
        with Session(self.engine) as session:
            rows = storage.list_variants(session)
        offered = {s.id for s in self.config.models}
        return [
            {
                "id": v.id,
                "base": v.base_model,
                "method": v.method,
                "run_id": v.run_id,
                "adapter": v.adapter_path,
                "default_for": v.default_for,
                "created_at": v.created_at.isoformat(timespec="seconds"),
            }
            for v in rows
            if v.id in offered
        ]

    def _variant_row(self, session: Session, variant_id: Any, user: str | None) -> storage.Variant:
        row = storage.get_variant(session, variant_id=str(variant_id))
        if row is None or row.deleted:
            raise StudioError(f"variant {quote(variant_id)} does not exist")
        if row.user_id != self.user_id(user) and not self.is_admin(user):
            raise StudioError(f"variant {quote(variant_id)} belongs to another user")
        return row

    def delete_variant(self, variant_id: str, *, user: str | None = None) -> str:
        """Delete a variant: it leaves every model list, its adapter files go; its run record stays."""
        with Session(self.engine) as session:
            row = self._variant_row(session, variant_id, user)
            if row.id in self.manager.loaded() and not self.manager.unload(row.id):
                raise StudioError(f"{row.id} is answering a request; delete it when that has finished")
            storage.mark_variant_deleted(session, variant_id=row.id)
            folder = Path(row.adapter_path)
        self.config.remove_model(variant_id)
        self._tab_defaults = {t: v for t, v in self._tab_defaults.items() if v != variant_id}
        if folder.is_dir() and folder.resolve().is_relative_to(self.adapters_dir.resolve()):
            shutil.rmtree(folder, ignore_errors=True)
        return f"{variant_id} deleted (its run record is kept)"

    def promote_variant(self, variant_id: str, tab: str = "chat", *, user: str | None = None) -> str:
        """Make a variant its tab's default model: listed first, so the tab starts on it."""
        with Session(self.engine) as session:
            row = self._variant_row(session, variant_id, user)
            spec = next((s for s in self.config.models if s.id == row.id), None)
            if spec is None or tab not in spec.tabs:
                raise StudioError(f"variant {quote(variant_id)} does not serve the {tab} tab")
            vid = row.id
            storage.set_default_variant(session, variant_id=vid, tab=tab)
        self._tab_defaults[tab] = vid
        return f"{vid} is now the {tab} tab's default model"

    def compare_with_base(
        self, variant_id: str, *, prompt: str | None = None, seed: int | None = None, user: str | None = None
    ) -> tuple[GenerationResult, GenerationResult]:
        """A blind before/after: one prompt (by default one its run held out) through the variant and its
        base with the same seed, returned in random order as (A, B). Both are ordinary generations and a vote
        on them an ordinary A/B preference (`prefer`): the leaderboard and the next run count it."""
        with Session(self.engine) as session:
            row = self._variant_row(session, variant_id, user)
            if row.method == "reward":
                raise StudioError(
                    f"{row.id} is a scorer: it scores answers (Best of n), it does not write them"
                )
            run = storage.get_train_run(session, run_id=row.run_id)
            held_out = list((run.data if run else {}).get("held_out_prompts") or [])
        if not prompt:
            if not held_out:
                raise StudioError(f"{row.id}'s run held out no prompt; type one to compare on")
            prompt = random.choice(held_out)
        seed = random.randrange(2**31) if seed is None else seed
        sides = [
            {"model": row.id, "params": {"seed": seed}},
            {"model": row.base_model, "params": {"seed": seed}},
        ]
        random.shuffle(sides)
        tab = "image" if "image" in self.config.model(row.id).tabs else "chat"  # diffusion-dpo: pictures
        return self.compare(tab=tab, prompt=prompt, a=sides[0], b=sides[1], user=user)

    # -- records -------------------------------------------------------------------------------------
    def train_runs(self, *, user: str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
        """The user's runs (an admin's `all_users`: everyone's), newest first."""
        if all_users and not self.is_admin(user):
            raise StudioError("only an admin may list every user's runs")
        with Session(self.engine) as session:
            rows = storage.list_train_runs(session, user_id=None if all_users else self.user_id(user))
            return [_run_dict(r) for r in rows]

    def train_run(self, run_id: Any, *, user: str | None = None) -> dict[str, Any]:
        """One run with everything stored about it (its curve included)."""
        try:
            rid = int(run_id)
        except (TypeError, ValueError):
            raise StudioError(f"run {quote(run_id)} does not exist") from None
        with Session(self.engine) as session:
            row = storage.get_train_run(session, run_id=rid)
            if row is None or (row.user_id != self.user_id(user) and not self.is_admin(user)):
                raise StudioError(f"run {rid} does not exist")
            variant = storage.get_variant(session, variant_id=row.variant_id) if row.variant_id else None
            return _run_dict(row) | {
                "params": dict(row.params),
                "data": dict(row.data),
                "dataset_hash": row.dataset_hash,
                "vote_ids": list(row.vote_ids),
                "history": list(row.history),
                "adapter": variant.adapter_path if variant and not variant.deleted else None,
                "variant_deleted": bool(variant and variant.deleted),
            }

    def recover_interrupted(self) -> int:
        """Generations and training runs a crash left running: marked interrupted (and half-written
        adapter folders removed)."""
        count = super().recover_interrupted()
        with Session(self.engine) as session:
            ids = storage.mark_train_runs_interrupted(session)
        for rid in ids:
            for partial in self.adapters_dir.glob(f"*+*-{rid}.partial"):
                shutil.rmtree(partial, ignore_errors=True)
        if ids:
            log.warning("%d training run(s) cut off by the last shutdown: marked interrupted", len(ids))
        return count + len(ids)


def _run_dict(row: storage.TrainRun) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "base": row.base_model,
        "method": row.method,
        "status": row.status,
        "error": row.error,
        "variant": row.variant_id,
        "train_records": row.train_records,
        "eval_records": row.eval_records,
        "steps": row.steps,
        "total_steps": row.total_steps,
        "metrics": dict(row.metrics),
        "eval_metrics": dict(row.eval_metrics),
        "created_at": row.created_at.isoformat(timespec="seconds"),
        "duration_s": row.duration_s,
    }
