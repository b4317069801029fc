"""The Train tab's part of the service: a training run from the user's votes to a registered variant.

Owns: checking a run's request before anything is stored (the method, a local chat base that is
downloaded and not itself a variant, the hyperparameters, who may train on everyone's votes, enough
records), reading the records through the export's record builders (so the export stays the contract)
with the held-out split, and the run's lifecycle, which mirrors runs.py: the row begun ("running", a short
commit), registered for Stop, a place in the base's device line (training and chat never share a GPU at
once) with the waiting notices, the training on a worker thread streamed as `TrainUpdate`s (phase, step
of total, ETA, metrics and the curve), and in `finally` the row finished and, when the run succeeded, its
variant registered with it and offered at once.
Ignores: listing runs and variants (variants.py), Gradio, SQL details (storage), how training works
(studio/train) and serving (the manager loads a variant on its shared base).
"""

from __future__ import annotations

import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import export, storage
from studio import train as training
from studio.backends import Backend, BackendContext, backend_class, preferred_kinds, short_error
from studio.config import ModelSpec, VariantSpec
from studio.errors import StudioError, quote
from studio.service import image_training
from studio.service.audit import without_moderated
from studio.service.library import parse_date
from studio.service.models import weights_status
from studio.service.runs import BROWSER_GONE
from studio.service.types import Status, TrainUpdate
from studio.service.variants import Variants, offer
from studio.train import diffusion_dpo

log = logging.getLogger(__name__)


def trainer_class(backend: str) -> type[Backend]:
    """The kind that gives a model's training weights: of a preference list ("llama-cpp,
    transformers-chat"), the first that can, whichever one serves the model on this installation."""
    for kind in preferred_kinds(backend):
        if hasattr(backend_class(kind), "training_weights"):
            return backend_class(kind)
    return backend_class(backend)


class TrainTab(Variants):
    """`Studio.train` and the run records; variants (variants.py) are what a run leaves behind."""

    # -- checks --------------------------------------------------------------------------------------
    def _trainable_base(self, model_id: Any, method: str = "dpo") -> ModelSpec:
        try:
            spec = self.config.model(str(model_id))
        except KeyError as exc:
            with Session(self.engine) as session:
                gone = storage.get_variant(session, variant_id=str(model_id))
            if gone is not None:
                raise StudioError(
                    f"model {quote(model_id)} was a trained variant and has been deleted"
                ) from None
            raise StudioError(exc.args[0]) from None
        if isinstance(spec, VariantSpec):
            raise StudioError(f"{spec.id} is a trained variant; train its base, {spec.base}, instead")
        cls = trainer_class(spec.backend)
        if getattr(cls, "remote", False):
            raise StudioError(
                f"model {spec.id!r} runs on a remote server ({spec.backend}): training needs its weights on "
                "this machine; choose a local chat model"
            )
        image = method == image_training.METHOD
        if image and spec.backend != "diffusers":
            raise StudioError(
                f"model {spec.id!r} is a {'/'.join(spec.tabs)} model ({spec.backend}); diffusion-dpo trains "
                "a diffusers image model (a Stable Diffusion pipeline)"
            )
        if not image and (not hasattr(cls, "training_weights") or not {"chat", "code"} & set(spec.tabs)):
            raise StudioError(
                f"model {spec.id!r} is a {'/'.join(spec.tabs)} model ({spec.backend}); "
                "training takes a chat model"
            )
        status = weights_status(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        if status != "ready":
            raise StudioError(f"model {spec.id!r} is {status}; run `studio models pull {spec.id}` first")
        if image:
            context = BackendContext(model_cache=self.settings.model_cache, base_dir=self.config.path.parent)
            image_training.check_image_base(spec, context)
        return spec

    def _records(
        self, method: str, uid: int | None, tab: str | None, when: datetime | None
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, int]]:
        """The export's records for `method` (the same builders as `studio export`), their vote keys and
        the pairs left out by reason (diffusion-dpo: pictures deleted, ties)."""
        fmt = training.FORMAT[method]
        paired = fmt in ("dpo", "reward", "pickapic")  # A/B votes make pairs too
        with Session(self.engine) as session, export.paused_gc():
            rated = storage.rated_rows(session, user_id=uid, tab=tab, since=when)
            prefs = storage.preference_rows(session, user_id=uid, tab=tab, since=when) if paired else []
            # Like an export: nothing the safety check flagged or blocked is trained on.
            rated, prefs, _ = without_moderated(rated, prefs, storage.moderated_generations(session))
            data = export.build(fmt, rated, prefs, exists=self._media_exists)
        if fmt == "pickapic":
            return image_training.image_pairs(data, self.media_path)
        return data.records, data.keys, {}

    def _media_exists(self, relative: str) -> bool:
        try:
            return bool(self.media_path(relative).is_file())
        except StudioError:
            return False

    # -- a run ---------------------------------------------------------------------------------------
    def train(
        self,
        *,
        method: str,
        model_id: str,
        params: dict[str, Any] | None = None,
        tab: str | None = None,
        since: str | None = None,
        all_users: bool = False,
        user: str | None = None,
        run_key: str | None = None,
    ) -> Iterator[TrainUpdate]:
        """Train a LoRA variant of `model_id` on the user's votes (everyone's: admins, `all_users`).
        Bad requests raise StudioError before anything is stored; then updates stream to the end."""
        if method not in training.METHODS:
            raise StudioError(
                f"unknown training method {quote(method)}; methods: {', '.join(training.METHODS)}"
            )
        spec = self._trainable_base(model_id, method)
        hp = training.hyperparams(method, params)
        image = method == image_training.METHOD
        if image and tab not in (None, "", "image"):
            raise StudioError(f"diffusion-dpo reads the image tab's votes, not the {tab} tab's")
        if not image and tab not in (None, "", "chat", "code"):
            raise StudioError(f"training reads the chat or code tab's votes, not the {tab} tab's")
        tab = "image" if image else tab
        when = parse_date(since, "since")
        if all_users and not self.is_admin(user):
            raise StudioError("only an admin may train on every user's votes; leave out --all-users")
        uid = self.user_id(user)
        records, keys, skipped = self._records(method, None if all_users else uid, tab or None, when)
        filters = "".join([f", tab {tab}" if tab else "", f", since {when:%Y-%m-%d}" if when else ""])
        left_out = image_training.skipped_text(skipped)
        training.check_enough(method, records, (f" ({filters[2:]})" if filters else "") + left_out)
        split = training.held_out(records, keys, hp.eval_fraction, training.MIN_RECORDS[method])
        row = storage.TrainRun(
            user_id=uid,
            base_model=spec.id,
            method=method,
            params=hp.model_dump(),
            data={
                "tab": tab or None,
                "since": since or None,
                "all_users": all_users,
                "moved": split.moved,
                "skipped": skipped,
                "held_out_prompts": training.last_prompts(split.eval)[:50],  # for the blind comparison
            },
            dataset_hash=training.dataset_hash(split.train + split.eval),
            vote_ids=split.keys,
            train_records=len(split.train),
            eval_records=len(split.eval),
        )
        yield from self._run(spec, method, hp, split, row, run_key, skipped)

    def _run(
        self,
        spec: ModelSpec,
        method: str,
        hp: training.Hyperparams,
        split: training.Split,
        row: storage.TrainRun,
        run_key: str | None,
        skipped: dict[str, int] | None = None,
    ) -> Iterator[TrainUpdate]:
        with Session(self.engine, expire_on_commit=False) as session:
            row = storage.begin_train_run(session, run=row)
        assert row.id is not None
        stop = threading.Event()
        key = run_key or f"train-{row.id}"
        self._runs[key] = stop
        variant_id = f"{spec.id}+{method}-{row.id}"
        out = self.adapters_dir / variant_id
        state = TrainUpdate(
            run_id=row.id,
            base=spec.id,
            method=method,
            train_records=row.train_records,
            eval_records=row.eval_records,
            skipped=dict(skipped or {}),
        )
        events: queue.Queue[training.TrainEvent | None] = queue.Queue()
        result: list[training.Outcome | BaseException] = []
        worker: threading.Thread | None = None
        turn = self.manager.line_up(spec.id, in_generator=True)
        began = time.perf_counter()
        try:
            for notice in turn.waiting(stop):
                state.notices = [notice]
                yield _copy(state)
            state.notices = []
            if not stop.is_set():
                row.started_at, began = storage.utcnow(), time.perf_counter()
                worker = threading.Thread(
                    target=self._train_thread,
                    args=(spec, method, hp, split, out, stop, events, result),
                    name=f"train-{row.id}",
                    daemon=True,
                )
                worker.start()
                yield from self._relay(state, events, began)
                worker.join()
            outcome = result[0] if result else None
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome is None or outcome.status == "stopped":
                state.status = Status.STOPPED
                state.error = outcome.error if outcome is not None else None
            else:
                state.status = Status.OK
            if isinstance(outcome, training.Outcome):
                state.eval_metrics = outcome.eval_metrics
                state.metrics = outcome.metrics or state.metrics
                if state.skipped or "skipped_pairs" in state.metrics:  # before the run and in the loop
                    gone = state.metrics.get("skipped_pairs", 0.0) + sum(state.skipped.values())
                    state.metrics = {**state.metrics, "skipped_pairs": gone}
                row.steps, row.total_steps = outcome.steps, outcome.total
        except GeneratorExit:
            stop.set()
            state.status, state.error = Status.STOPPED, BROWSER_GONE
            raise
        except Exception as exc:
            state.status = Status.ERROR
            state.error = f"training failed: {short_error(exc)}"
            log.warning("training run %s failed", row.id, exc_info=True)
        finally:
            turn.release()
            self._runs.pop(key, None)
            self._stop_reasons.pop(key, None)
            if worker is not None and worker.is_alive():  # closed early or failed while relaying
                stop.set()
                worker.join()
            self._finish(row, state, out, variant_id, time.perf_counter() - began)
        state.done, state.phase, state.notices = True, "done", []
        yield _copy(state)

    def _train_thread(
        self,
        spec: ModelSpec,
        method: str,
        hp: training.Hyperparams,
        split: training.Split,
        out: Path,
        stop: threading.Event,
        events: queue.Queue[training.TrainEvent | None],
        result: list[training.Outcome | BaseException],
    ) -> None:
        from studio.backends.loading import resolve_device

        try:
            events.put(training.Phase("loading"))
            context = BackendContext(model_cache=self.settings.model_cache, base_dir=self.config.path.parent)
            backend = trainer_class(spec.backend)(spec, context)
            weights = backend.training_weights()  # type: ignore[attr-defined]
            out.parent.mkdir(parents=True, exist_ok=True)
            # diffusion-dpo runs its own loop (diffusers has no trainer); the text methods run TRL's.
            image = method == image_training.METHOD
            loop: Any = diffusion_dpo.run if image else functools.partial(training.run, method)
            result.append(
                loop(
                    base=weights,
                    train_records=training.for_trainer(method, split.train),
                    eval_records=training.for_trainer(method, split.eval),
                    out=out,
                    params=hp,
                    stop=stop,
                    emit=events.put,
                    device=resolve_device(spec.device),
                )
            )
        except BaseException as exc:  # relayed to the run, which stores it
            result.append(exc)
        finally:
            events.put(None)

    @staticmethod
    def _relay(
        state: TrainUpdate, events: queue.Queue[training.TrainEvent | None], began: float
    ) -> Iterator[TrainUpdate]:
        """Updates from the worker's events until it ends, and every half second meanwhile (the clock)."""
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                state.elapsed_s = time.perf_counter() - began
                yield _copy(state)
                continue
            if event is None:
                return
            state.elapsed_s = time.perf_counter() - began
            if isinstance(event, training.Phase):
                state.phase = event.name
            else:
                state.step, state.total, state.eta_s = event.step, event.total, event.eta_s
                if event.metrics:
                    state.metrics = event.metrics
                    state.history.append({"step": float(event.step), **event.metrics})
            yield _copy(state)

    def _finish(
        self, row: storage.TrainRun, state: TrainUpdate, out: Path, variant_id: str, seconds: float
    ) -> None:
        """Store the outcome; a successful run's variant is registered with it and offered at once."""
        row.status, row.error = state.status.value, state.error
        row.metrics, row.eval_metrics, row.history = state.metrics, state.eval_metrics, state.history
        row.duration_s = seconds if row.started_at else None
        made = state.status == Status.OK and out.is_dir()
        variant = (
            storage.Variant(
                id=variant_id,
                base_model=row.base_model,
                method=row.method,
                run_id=row.id or 0,
                user_id=row.user_id,
                adapter_path=str(out),
            )
            if made
            else None
        )
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                storage.finish_train_run(session, run=row, variant=variant)
        except Exception:
            shutil.rmtree(out, ignore_errors=True)  # no adapter without its record
            raise
        if variant is not None:
            offer(self.config, variant)
            state.variant, state.adapter = variant.id, str(out)
        elif out.is_dir():
            shutil.rmtree(out, ignore_errors=True)


def _copy(state: TrainUpdate) -> TrainUpdate:
    return TrainUpdate(**{**state.__dict__, "history": list(state.history), "notices": list(state.notices)})
