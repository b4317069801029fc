"""Studio: the service the UI and the CLI call, and nothing else does.

Owns: validating input (for browser and API callers alike), running a backend through the manager,
accumulating streamed output, writing exactly one generation row per turn (begun as "running" in a
short commit, finished in another; failures and stops included), who may see what (each user their
own rows; an admin every user's, for exports) and the chat operations built on that: send,
regenerate, edit, continue. Each tab's own jobs live in its mixin (code_service, image_service, ...); reading
back conversations, votes and history in records_service.
Ignores: Gradio types, SQL details (storage) and model internals (backends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy import Engine
from sqlmodel import Session

from studio import storage
from studio.backends import (
    BackendContext,
    Message,
    Notice,
    Request,
    TextDelta,
    Usage,
    backend_class,
    check_models,
    validate_params,
)
from studio.config import Settings, StudioConfig, load_config
from studio.errors import StudioError
from studio.manager import ModelManager, faults
from studio.service.audio import AudioTab, AudioUpdate
from studio.service.checks import TAB_DEFAULTS, model_for, params_for, prompt_text
from studio.service.code import CodeTab, code_fields
from studio.service.image import ImageTab, ImageUpdate
from studio.service.library import LibraryTab
from studio.service.models import ModelsPanel, weights_status
from studio.service.records import Records
from studio.service.types import ChatTurn, ChatUpdate, ModelInfo

log = logging.getLogger(__name__)

__all__ = [
    "Action",
    "AudioUpdate",
    "ChatTurn",
    "ChatUpdate",
    "ImageUpdate",
    "ModelInfo",
    "Studio",
    "StudioError",
]

Action = Literal["send", "regenerate", "edit", "continue"]


class Studio(Records, CodeTab, ImageTab, AudioTab, ModelsPanel, LibraryTab):
    def __init__(
        self,
        config: StudioConfig,
        settings: Settings,
        *,
        engine: Engine | None = None,
        max_loaded: int | None = None,
    ):
        check_models(config)
        self.config = config
        self.settings = settings
        self.engine = engine or storage.make_engine(settings.database_url)
        context = BackendContext(model_cache=settings.model_cache, base_dir=config.path.parent)
        self.manager = ModelManager(
            config, lambda spec: backend_class(spec.backend)(spec, context), max_loaded=max_loaded
        )
        self._user_ids: dict[str, int] = {}
        self._runs: dict[str, threading.Event] = {}
        self._stop_reasons: dict[str, str] = {}  # why a chat run was cancelled, when not the Stop button
        # Set by `studio serve --auth`: who is an admin. Without accounts the one local user owns everything.
        self.accounts: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Studio:
        return cls(load_config(settings.models_file), settings, **kwargs)

    # -- models ------------------------------------------------------------------------------------
    def models(self, tab: str | None = None) -> list[ModelInfo]:
        specs = self.config.for_tab(tab) if tab else self.config.models
        return [
            ModelInfo(s.id, list(s.tabs), s.backend, self.model_status(s.id), s.description) for s in specs
        ]

    def model_status(self, model_id: str) -> str:
        spec = self.config.model(model_id)
        if model_id in self.manager.loaded():
            return "loaded"
        return weights_status(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)

    def default_params(self, model_id: str, tab: str | None = None) -> dict[str, Any]:
        """The parameters a run starts from: the backend's, the model's, then the tab's (code: cooler)."""
        spec = model_for(self.config, model_id, None)
        values = {**spec.defaults, **TAB_DEFAULTS.get(tab or "", {})}
        return validate_params(backend_class(spec.backend), values).model_dump()

    @staticmethod
    def check_prompt(message: Any) -> str:
        """Raise StudioError for a message `chat` would refuse (lets the UI refuse before queueing)."""
        return prompt_text(message)

    def recover_interrupted(self) -> int:
        """At server start (not in CLI commands, which may run beside a server): mark turns a crash left
        "running" as interrupted."""
        with Session(self.engine) as session:
            count = storage.mark_interrupted(session)
        if count:
            log.warning("%d generation(s) cut off by the last shutdown: marked interrupted", count)
        return count

    def is_admin(self, user: str | None) -> bool:
        """May this user read every user's data (exports)? The single local user may."""
        return self.accounts is None or bool(self.accounts.is_admin(user))

    def user_id(self, name: str | None) -> int:
        name = name or "local"
        if name not in self._user_ids:
            with Session(self.engine) as session:
                self._user_ids[name] = storage.get_or_create_user(session, name=name).id or 0
        return self._user_ids[name]

    # -- chat --------------------------------------------------------------------------------------
    def chat(
        self,
        *,
        model_id: str,
        message: str | None = None,
        params: dict[str, Any] | None = None,
        conversation_id: int | None = None,
        action: Action = "send",
        turn_index: int | None = None,
        user: str | None = None,
        run_key: str | None = None,
        tab: str = "chat",
        extras: dict[str, Any] | None = None,
    ) -> Iterator[ChatUpdate]:
        """Run one chat turn and stream its text. Validation errors raise StudioError before any row."""
        spec = model_for(self.config, model_id, tab)
        validated = params_for(spec, params, tab)
        uid = self.user_id(user)
        turns = self._turns_for(conversation_id, uid)
        if action not in ("send", "regenerate", "edit", "continue"):
            raise StudioError(f"unknown action {action!r}")
        if action == "send":
            prompt, index, continue_from = prompt_text(message), len(turns), None
        else:
            if not turns:
                raise StudioError(f"nothing to {action}: the conversation has no turns yet")
            index = len(turns) - 1 if turn_index is None else turn_index
            if not 0 <= index < len(turns):
                raise StudioError(f"turn {index} does not exist; the conversation has {len(turns)} turn(s)")
            target = turns[index]
            prompt = prompt_text(message) if action == "edit" else target.prompt
            continue_from = target.output_text if action == "continue" else None
        history = [
            m for t in turns[:index] for m in (Message("user", t.prompt), Message("assistant", t.output_text))
        ]
        parent = turns[index].id if index < len(turns) else None
        # Pasted code can outgrow the context by itself: the code tab cuts it, with a notice, not refuses.
        request = Request(
            prompt=prompt,
            params=validated,
            history=history,
            continue_from=continue_from,
            truncate_prompt=tab == "code",
        )
        row = storage.Generation(
            user_id=uid,
            conversation_id=conversation_id,
            turn_index=index,
            parent_id=parent,
            action=action,
            tab=tab,
            model_id=model_id,
            prompt=prompt,
            params={**validated.model_dump(), **(extras or {})},
            history=[{"role": m.role, "content": m.content} for m in history],
            seed=getattr(validated, "seed", None),
        )
        yield from self._run(
            spec, request, row, supersede=index if index < len(turns) else None, run_key=run_key
        )

    def _turns_for(self, conversation_id: int | None, uid: int) -> list[storage.Generation]:
        if conversation_id is None:
            return []
        with Session(self.engine) as session:
            if storage.get_conversation(session, conversation_id=conversation_id, user_id=uid) is None:
                raise StudioError(f"conversation {conversation_id} does not exist")
            return storage.active_turns(session, conversation_id=conversation_id)

    def _run(
        self,
        spec: Any,
        request: Request,
        row: storage.Generation,
        *,
        supersede: int | None,
        run_key: str | None,
    ) -> Iterator[ChatUpdate]:
        prefix = request.continue_from or ""
        pieces: list[str] = []
        notices: list[str] = []
        started = time.perf_counter()
        first_token: float | None = None
        status, error = "error", None
        fatal: BaseException | None = None
        key = run_key or f"run-{id(request)}"
        self._begin(row)
        self._runs[key] = request.stop
        turn = self.manager.line_up(spec.id)  # first come, first served on its device (remote: at once)
        try:
            for waiting in turn.waiting(request.stop):
                yield ChatUpdate(prefix, conversation_id=row.conversation_id, notices=[waiting])
            if spec.id not in self.manager.loaded():
                yield ChatUpdate(prefix, status="loading", conversation_id=row.conversation_id)
            with self.manager.use(spec.id, turn=turn, stop=request.stop) as backend:
                stream = backend.generate(request)
                try:
                    for event in stream:
                        if isinstance(event, TextDelta):
                            first_token = first_token or time.perf_counter()
                            pieces.append(event.text)
                            if request.stop.is_set():
                                continue  # drain what was already generated without streaming it
                            yield ChatUpdate(
                                prefix + "".join(pieces), conversation_id=row.conversation_id, notices=notices
                            )
                        elif isinstance(event, Notice):
                            notices.append(event.text)
                        elif isinstance(event, Usage):
                            row.prompt_tokens, row.completion_tokens = (
                                event.prompt_tokens,
                                event.completion_tokens,
                            )
                finally:
                    stream.close()  # ends the backend's worker if we were closed early
            status = "stopped" if request.stop.is_set() else "ok"
            error = self._stop_reasons.get(key) if status == "stopped" else None
        except GeneratorExit:
            status, error = "stopped", "the browser stopped listening"
            raise
        except Exception as exc:
            status, error, fatal = "error", *faults.handle(exc, self.manager, spec.id)
        finally:
            turn.release()  # also when the stream was closed while waiting for its turn
            self._runs.pop(key, None)
            self._stop_reasons.pop(key, None)
            row.output_text = prefix + "".join(pieces)
            row.status, row.error, row.notices = status, error, notices
            row.duration_ms = (time.perf_counter() - started) * 1000
            row.first_token_ms = (first_token - started) * 1000 if first_token else None
            saved = self._save(row, supersede)
            if fatal is not None:
                faults.exit_for_supervisor(fatal)
        yield ChatUpdate(
            row.output_text,
            done=True,
            status=status,
            generation_id=saved.id,
            conversation_id=saved.conversation_id,
            error=error,
            notices=notices,
        )

    def _begin(self, row: storage.Generation) -> None:  # "running", in a short commit of its own
        with Session(self.engine, expire_on_commit=False) as session:
            storage.begin_generation(session, generation=row)

    def _save(self, row: storage.Generation, supersede: int | None) -> storage.Generation:
        with Session(self.engine, expire_on_commit=False) as session:
            if row.conversation_id is None and row.tab in ("chat", "code"):
                # Titled by what the user typed (a code turn's prompt is the filled-in template).
                typed = (row.params.get("code") or {}).get("input") or row.prompt
                title = " ".join(typed.split())[:60]
                conv = storage.create_conversation(
                    session, user_id=row.user_id, title=title, model_id=row.model_id, tab=row.tab
                )
                row.conversation_id = conv.id
            return storage.finish_generation(session, generation=row, supersede_from=supersede)

    def cancel(self, run_key: str, *, reason: str | None = None) -> bool:
        """Ask a running generation to stop at its next token; True when one was running. A chat turn
        stopped with a `reason` stores it as its error (Stop gives none: the user asked)."""
        stop = self._runs.get(run_key)
        if stop is None:
            return False
        if reason is not None:
            self._stop_reasons[run_key] = reason
        stop.set()
        return True

    def generate(
        self,
        *,
        tab: str,
        model_id: str,
        prompt: str,
        params: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """One complete generation for scripts (CLI, API): returns the stored result."""
        if tab == "image":
            return self.generate_image_result(model_id=model_id, prompt=prompt, params=params, user=user)
        if tab in ("speech", "music"):
            return self.generate_audio_result(
                tab=tab, model_id=model_id, prompt=prompt, params=params, user=user
            )
        if tab not in ("chat", "code"):
            raise StudioError(
                f"the {tab} tab is not available in this version; available: chat, code, image, speech, music"
            )
        final = None
        if tab == "code":
            settings, params = self.split_code_params(params)
            updates = self.code(model_id=model_id, text=prompt, settings=settings, params=params, user=user)
        else:
            updates = self.chat(model_id=model_id, message=prompt, params=params, user=user, tab=tab)
        for update in updates:
            final = update
        assert final is not None and final.generation_id is not None
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=final.generation_id)
            assert row is not None
            return {
                "generation_id": row.id,
                "tab": row.tab,
                "model": row.model_id,
                "text": row.output_text,
                "files": row.files,
                "params": row.params,
                "status": row.status,
                "error": row.error,
                "conversation_id": row.conversation_id,
                "notices": row.notices,
            } | (code_fields(row) if row.tab == "code" else {})

    def close(self) -> None:
        self.manager.unload_all()
        self.engine.dispose()
