"""Login sessions: when a session cookie stops being valid, and whose Gradio session hash is whose.

Owns: `SessionTokens`, the token -> user table Gradio keeps (`app.tokens`), made to end a session when its
account goes, its password changes, `studio users logout` stamps it, it has been unused for the idle
lifetime, or it is older than the absolute lifetime; `SessionOwners`, which ties each Gradio session hash
(the id of a browser tab's queue, stream and state) to the first user who used it.
Ignores: checking passwords (`accounts.py`), cookies and the login page (Gradio's), what is refused and
how (`guard.py`). Also: reading the session hash a URL names, and noting whose each upload is.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio.to_thread

_SESSION_PATH = re.compile(r"^/gradio_api/(?:heartbeat|stream)/([^/]+)")


class AccountSource(Protocol):
    """What sessions ask of the accounts (`accounts.UserStore`)."""

    def account(self, name: str | None) -> Any: ...


@dataclass
class _Session:
    fingerprint: str  # the account's password hash at login: a new password ends the session
    began: float  # time.time(), compared with the account's logout stamp
    began_at: float  # time.monotonic(), for the absolute lifetime
    last_used: float  # time.monotonic(), for the idle lifetime


class SessionTokens(dict[str, str]):
    """Gradio's `app.tokens` (token -> user name), whose `get` answers only for a session still valid.

    Gradio reads it with `tokens.get(token)` on every authenticated route and writes it with
    `tokens[token] = user` at login; a session found invalid is dropped on the spot.
    """

    def __init__(self, accounts: AccountSource, *, idle: float, absolute: float) -> None:
        super().__init__()
        self.accounts = accounts
        self.idle = idle
        self.absolute = absolute
        self._meta: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def __setitem__(self, token: str, user: str) -> None:
        account = self.accounts.account(user)
        now = time.monotonic()
        with self._lock:
            super().__setitem__(token, user)
            self._meta[token] = _Session(getattr(account, "hash", ""), time.time(), now, now)

    def __delitem__(self, token: str) -> None:
        with self._lock:
            super().__delitem__(token)
            self._meta.pop(token, None)

    def get(self, token: Any, default: Any = None) -> Any:
        if not isinstance(token, str):
            return default
        user = super().get(token)
        if user is None:
            return default
        if not self._valid(token, user):
            self._drop(token)
            return default
        with self._lock:
            meta = self._meta.get(token)
            if meta is not None:
                meta.last_used = time.monotonic()
        return user

    def keys(self) -> Any:  # Gradio's logout walks the keys: forget the dead ones first
        for token, user in list(self.items()):
            if not self._valid(token, user):
                self._drop(token)
        return super().keys()

    def end_sessions(self, user: str) -> int:
        """End every session of `user` (this process's own logout); how many there were."""
        ended = [t for t, u in list(self.items()) if u == user]
        for token in ended:
            self._drop(token)
        return len(ended)

    def _valid(self, token: str, user: str) -> bool:
        meta = self._meta.get(token)
        if meta is None:
            return False
        now = time.monotonic()
        if now - meta.last_used > self.idle or now - meta.began_at > self.absolute:
            return False
        account = self.accounts.account(user)
        return (
            account is not None
            and account.hash == meta.fingerprint
            and meta.began >= float(getattr(account, "logged_out_at", 0.0) or 0.0)
        )

    def _drop(self, token: str) -> None:
        with self._lock:
            super().pop(token, None)
            self._meta.pop(token, None)


class SessionOwners:
    """Gradio session hash -> the user who first used it; another user presenting it is refused.

    Gradio trusts whoever presents a session hash with its queue stream, state and heartbeat; the hashes
    are random, but one that leaks (a screenshot, a log) would let another account read that tab's live
    output. The oldest entries are forgotten beyond `limit` (a forgotten hash is claimed anew)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session_hash: str, user: str) -> bool:
        """True when `user` may use `session_hash` (it was free, or is already theirs)."""
        with self._lock:
            owner = self._owners.get(session_hash)
            if owner is None:
                self._owners[session_hash] = user
                if len(self._owners) > self.limit:
                    self._owners.popitem(last=False)
                return True
            return owner == user


def claiming_uploads(send: Any, user: str, claim: Callable[[str | None, Path], None]) -> Any:
    """Wrap `send` of an upload: the paths Gradio answers with become the uploader's files."""
    status: list[int] = []
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message.get("status", 0))
        elif message["type"] == "http.response.body" and status == [200]:
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                try:
                    paths = json.loads(b"".join(chunks))
                except ValueError:
                    paths = []
                for item in paths if isinstance(paths, list) else []:
                    if isinstance(item, str):
                        await anyio.to_thread.run_sync(claim, user, Path(item))
        await send(message)

    return wrapped


def session_in_url(path: str, query: bytes) -> str | None:
    """The Gradio session hash a GET names: in the heartbeat or stream path, or `?session_hash=`."""
    match = _SESSION_PATH.match(path)
    if match:
        return match.group(1)
    found = parse_qs(query.decode("latin-1")).get("session_hash")
    return found[0] if found else None
