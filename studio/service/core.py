"""The typed state every part of the service shares, and the few operations all of them use.

Owns: `StudioCore`: the model configuration and settings, the database engine, the model manager, the
safety stage (service/safety.py), who is
an admin (`accounts`), the user-id cache, the registry of running jobs (what Stop and a closed tab cancel)
and the short commits that begin and finish a generation row; this process's lease on the rows it runs
(its `owner` name, a heartbeat thread that renews the lease every third of STUDIO_LEASE_SECONDS and marks
other processes' expired rows interrupted, so several studio processes can share one database); media
paths and the stored settings of a past generation, which the Image, Audio and Library parts all read.
Ignores: what a tab does with a model (each part in its own file: chat, code, image, audio, ...) and the
run lifecycle itself (runs.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session

from studio import storage
from studio.backends import BackendContext, backend_class, check_models
from studio.config import Settings, StudioConfig
from studio.errors import StudioError
from studio.manager import ModelManager
from studio.service.safety import SafetyStage
from studio.service.tempfiles import Janitor, Swept

log = logging.getLogger(__name__)


class Accounts(Protocol):
    """What the service asks of a login store (`studio.security.accounts.UserStore`)."""

    def is_admin(self, user: str | None) -> bool: ...


class StudioCore:
    """Shared state of the `Studio` service; every part (ChatTab, ImageTab, ...) subclasses it."""

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
        # Media are their users' alone: no other local account may list or read the folder.
        settings.media_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(settings.media_dir, 0o700)
        context = BackendContext(model_cache=settings.model_cache, base_dir=config.path.parent)
        self.manager = ModelManager(
            config,
            lambda spec: backend_class(spec.backend)(spec, context),
            max_loaded=max_loaded,
            settings=settings,
        )
        self._user_ids: dict[str, int] = {}
        self._runs: dict[str, threading.Event] = {}  # run key -> its stop flag
        self._stop_reasons: dict[str, str] = {}  # why a run was cancelled, when not the Stop button
        # Set by `studio serve --auth`: who is an admin. Without accounts the one local user owns everything.
        self.accounts: Accounts | None = None
        # Files served to one user only, beyond generated media: uploads (by path) and export zips (by their
        # random name, kept when Gradio copies them into its cache). In memory: both are temporary.
        self._file_owners: dict[str, str] = {}
        # Checks on prompts and outputs (service/safety.py); runs.py calls it at its hooks.
        self.safety = SafetyStage(config, settings, self.engine)
        # This process's name on the rows it runs, unique even when another host reuses the pid.
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._heartbeat: threading.Thread | None = None
        self._janitor: Janitor | None = None
        self._closing = threading.Event()

    # -- users -------------------------------------------------------------------------------------
    def user_id(self, name: str | None) -> int:
        name = name or "local"
        if name not in self._user_ids:
            with Session(self.engine) as session:
                self._user_ids[name] = storage.get_or_create_user(session, name=name).id or 0
        return self._user_ids[name]

    def claim_file(self, user: str | None, path: Path | str) -> None:
        """From now on only `user` may fetch this file (an upload's path, or an export's unique name)."""
        self._file_owners[str(path)] = user or "local"

    def file_owner(self, path: Path) -> str | None:
        """Who claimed this file (by its path, or its name for copies Gradio made), or None."""
        return self._file_owners.get(str(path)) or self._file_owners.get(path.name)

    def require_admin(self, user: str | None, what: str) -> None:
        if not self.is_admin(user):
            raise StudioError(f"only an admin may {what}")

    def is_admin(self, user: str | None) -> bool:
        """May this user read every user's data (exports)? The single local user may."""
        return self.accounts is None or bool(self.accounts.is_admin(user))

    # -- running jobs --------------------------------------------------------------------------------
    def cancel(self, run_key: str, *, reason: str | None = None) -> bool:
        """Ask a running job to stop at its next step; True when one was running. A job stopped with a
        `reason` stores it as its error (Stop gives none: the user asked)."""
        stop = self._runs.get(run_key)
        if stop is None:
            return False
        if reason is not None:
            self._stop_reasons[run_key] = reason
        stop.set()
        return True

    # -- generation rows -----------------------------------------------------------------------------
    def begin_row(self, row: storage.Generation) -> None:
        """Store a job's row as "running", in a short commit of its own (a crash leaves it to be marked
        interrupted at the next start)."""
        row.owner = self.owner
        row.lease_until = storage.utcnow() + timedelta(seconds=self.settings.lease_s)
        self._start_heartbeat()
        with Session(self.engine, expire_on_commit=False) as session:
            storage.begin_generation(session, generation=row)

    def recover_interrupted(self) -> int:
        """At server start (not in CLI commands, which may run beside a server): mark turns left "running"
        by a process that is gone as interrupted: those whose lease expired (another live process renews
        its own), then keep doing so from the heartbeat."""
        count = self._recover_expired()
        self._start_heartbeat()
        return count

    def _recover_expired(self) -> int:
        with Session(self.engine) as session:
            gone = [o for o in storage.running_owners(session) if o != self.owner and self._gone_here(o)]
            count = storage.interrupt_owners(session, owners=gone)  # no need to wait out their leases
            count += storage.mark_interrupted(session, now=storage.utcnow(), keep_owner=self.owner)
        if count:
            log.warning("%d generation(s) cut off by a stopped studio process: marked interrupted", count)
        return count

    def _gone_here(self, owner: str) -> bool:
        """Is `owner` a process of this host that no longer exists? (Another host's: not known here.)"""
        parts = owner.rsplit(":", 2)  # host:pid:token
        if len(parts) != 3 or parts[0] != socket.gethostname()[:60] or not parts[1].isdigit():
            return False
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, owned by another user
            return False
        return False

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None:
            return
        self._heartbeat = threading.Thread(target=self._beat, name="studio-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        """Renew this process's leases every third of the lease; recover other processes' expired ones."""
        every = self.settings.lease_s / 3
        while not self._closing.wait(every):
            try:
                until = storage.utcnow() + timedelta(seconds=self.settings.lease_s)
                with Session(self.engine) as session:
                    storage.renew_leases(session, owner=self.owner, until=until)
                self._recover_expired()
            except Exception as exc:  # a database hiccup: the next beat tries again, well within the lease
                log.warning("could not renew this process's leases: %s", exc)

    # -- temporary files -------------------------------------------------------------------------------
    def start_janitor(self, extra: list[Path] | None = None) -> Swept:
        """At server start: sweep the studio's temp folder and the `extra` ones (Gradio's upload cache, the
        code downloads) now and on a schedule, by age (STUDIO_TEMP_MAX_AGE) and size (STUDIO_UPLOAD_CACHE)."""
        if self._janitor is None:
            folders = [self.settings.temp_dir, *(extra or [])]
            self._janitor = Janitor(
                folders, max_age_s=self.settings.temp_max_age_s, cap_bytes=self.settings.upload_cache
            )
        return self._janitor.start()

    # -- media and past settings ---------------------------------------------------------------------
    def media_path(self, relative: str) -> Path:
        """The absolute path of a stored media file (rows keep paths relative to the data dir)."""
        path = (self.settings.data_dir / relative).resolve()
        if not path.is_relative_to(self.settings.media_dir.resolve()):
            raise StudioError("not a media file")
        return path

    def generation_settings(self, generation_id: int, *, user: str | None = None) -> dict[str, Any]:
        """What a past generation ran with (model, prompt, parameters), for 'reuse settings'."""
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
            if row is None or row.user_id != self.user_id(user):
                raise StudioError(f"generation {generation_id} does not exist")
            return {"model": row.model_id, "prompt": row.prompt, "params": dict(row.params), "tab": row.tab}

    def close(self) -> None:
        self._closing.set()
        if self._janitor is not None:
            self._janitor.stop()
        self.manager.unload_all()
        self.safety.unload()
        self.engine.dispose()
