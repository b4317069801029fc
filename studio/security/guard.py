"""The web server's guard: who may reach which route, whose files they may fetch, and how often.

Owns: an ASGI middleware in front of Gradio's routes that (1) with auth on, refuses anonymous requests
on every route but the login page and its static assets; (2) refuses cross-origin requests (strict
CORS: only the page's own origin and `STUDIO_ALLOWED_ORIGINS`); (3) on the file routes, refuses URLs
(no fetching for the caller), anything in the data dir outside media/ (database, users file, model
cache) and any generated media file that is not the requesting user's; (4) rate-limits each user's
(or, anonymous, each address's) event submissions, uploads and logins; (5) closes routes the studio
never uses (monitoring, proxy, run history, vibe editing).
Ignores: logins themselves (Gradio checks the password through `accounts`) and what a user sees in
the tabs (the service checks ownership of every row).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio.to_thread
from starlette.requests import HTTPConnection

from studio.config import Settings

log = logging.getLogger(__name__)

DEFAULT_RATE = 120  # a busy person clicks a few times a minute; each click is 1-3 events
LOGIN_RATE = 20  # failed logins a minute per address (scrypt makes each one cost ~40 ms as well)

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Reachable without logging in: the login page and what it loads. Everything else needs a session.
_PUBLIC_EXACT = {
    "/",
    "/login",
    "/login/",
    "/logout",
    "/favicon.ico",
    "/theme.css",
    "/robots.txt",
    "/manifest.json",
    "/gradio_api/theme.css",
    "/gradio_api/login_check",
    "/gradio_api/login_check/",
    "/gradio_api/startup-events",  # Gradio calls it on itself at launch; it runs nothing a user chose
}
_PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
# Routes the studio never uses: closed whoever asks.
_CLOSED_PREFIXES = (
    "/monitoring",
    "/gradio_api/monitoring",
    "/gradio_api/proxy=",
    "/gradio_api/run-history",
    "/gradio_api/runs",
    "/gradio_api/vibe",
    "/gradio_api/undo-vibe",
    "/gradio_api/dev/",
)
_FILE_PREFIXES = ("/gradio_api/file=", "/gradio_api/file/")
_LIMITED_PREFIXES = (
    "/gradio_api/queue/join",
    "/gradio_api/call/",
    "/gradio_api/run/",
    "/gradio_api/api/",
    "/gradio_api/upload",
)


class RateLimiter:
    """A token bucket per key: `per_minute` a minute on average, bursts of up to `burst`."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute // 2)))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, *, count: bool = True) -> float:
        """0 when allowed (and counted, unless `count` is False), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1 if count else tokens, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate else math.inf


@dataclass
class GuardPolicy:
    """What the guard enforces; built by `studio.ui.launch` from the studio's settings."""

    auth: bool
    data_dir: Path
    media_dir: Path
    protected: list[Path] = field(default_factory=list)  # refused on file routes wherever they are
    # (requesting user name or None, file path) -> may this user fetch it? Runs in a worker thread.
    media_allowed: Callable[[str | None, Path], bool] = lambda user, path: True
    rate: RateLimiter | None = None
    logins: RateLimiter | None = field(default_factory=lambda: RateLimiter(LOGIN_RATE, burst=10))
    origins: set[str] = field(default_factory=set)  # extra allowed origins, as "host:port"


def rate_for(settings: Settings, on_by_default: bool) -> RateLimiter | None:
    """The per-user limit: the settings' STUDIO_RATE_LIMIT events a minute (0 = off); unset, the default
    when `on_by_default` (logins or an exposed server), else none."""
    per_minute = settings.rate_limit
    if per_minute is None:
        per_minute = DEFAULT_RATE if on_by_default else 0
    return RateLimiter(per_minute) if per_minute > 0 else None


class Guard:
    """ASGI middleware: give it to FastAPI as `Middleware(Guard, policy=...)`."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = await self._check(scope)
        if refusal is None and self._is_login(scope) and self.policy.logins is not None:
            send = _counting_failures(send, self.policy.logins, self._login_key(scope))
        if refusal is None:
            if (
                self.policy.auth
                and scope.get("method") == "GET"
                and scope.get("path") == "/"
                and self._user(scope, HTTPConnection(scope)) is None
            ):
                send = _without_api_info(send)  # Gradio's login page embeds the whole API description
            await self.app(scope, receive, send)
            return
        status, message, headers = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": message}).encode()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def _check(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        policy = self.policy
        conn = HTTPConnection(scope)
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if path.startswith(_CLOSED_PREFIXES):
            return 404, "not found", {}
        origin = conn.headers.get("origin")
        if origin is not None and not self._same_origin(origin, conn.headers.get("host", "")):
            return 403, "cross-origin requests are refused", {}
        user = self._user(scope, conn)
        client = conn.client.host if conn.client else "unknown"
        if self._is_login(scope) and policy.logins is not None:
            wait = policy.logins.take(self._login_key(scope), count=False)  # failures are counted after
            if wait:
                return _too_many(wait, "failed logins")
        if policy.auth and user is None and not _public(path):
            return 401, "not authenticated: log in first", {}
        if path.startswith(_FILE_PREFIXES):
            refusal = await self._check_file(path, user)
            if refusal:
                return 403, refusal, {}
        if policy.rate is not None and scope.get("method") == "POST" and path.startswith(_LIMITED_PREFIXES):
            wait = policy.rate.take(f"user:{user}" if user else f"addr:{client}")
            if wait:
                return _too_many(wait, "requests")
        return None

    @staticmethod
    def _is_login(scope: Scope) -> bool:
        return scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/login"

    @staticmethod
    def _login_key(scope: Scope) -> str:
        client = scope.get("client")
        return f"login:{client[0] if client else 'unknown'}"

    def _same_origin(self, origin: str, host: str) -> bool:
        netloc = urlsplit(origin).netloc
        return bool(netloc) and (netloc == host or netloc in self.policy.origins)

    @staticmethod
    def _user(scope: Scope, conn: HTTPConnection) -> str | None:
        app = scope.get("app")
        tokens = getattr(app, "tokens", None)
        cookie_id = getattr(app, "cookie_id", None)
        if not tokens or cookie_id is None:
            return None
        token = conn.cookies.get(f"access-token-{cookie_id}") or conn.cookies.get(
            f"access-token-unsecure-{cookie_id}"
        )
        return tokens.get(token) if token else None

    async def _check_file(self, path: str, user: str | None) -> str | None:
        """Why this file request is refused, or None to let Gradio's own checks decide."""
        raw = unquote(path.split("=", 1)[1] if "=" in path else path.removeprefix("/gradio_api/file/"))
        if "://" in raw or raw.startswith("//"):
            return "URLs are not fetched"
        try:
            target = Path(os.path.abspath(raw)).resolve()
        except (OSError, ValueError):
            return "file not allowed"
        policy = self.policy
        if any(target == p or target.is_relative_to(p) for p in policy.protected):
            return "file not allowed"
        in_media = target.is_relative_to(policy.media_dir)
        if target.is_relative_to(policy.data_dir) and not in_media:
            return "file not allowed"
        allowed = await anyio.to_thread.run_sync(policy.media_allowed, user, target)
        return None if allowed else "file not allowed"


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)
_NO_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'


def _without_api_info(send: Any) -> Any:
    """Wrap `send` so the page's embedded API description (endpoint names, parameters) is emptied."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = _API_INFO.sub(lambda _: _NO_API_INFO, b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _counting_failures(send: Any, limiter: RateLimiter, key: str) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message.get("status") != 200:
            limiter.take(key)
        await send(message)

    return wrapped


def _public(path: str) -> bool:
    return path in _PUBLIC_EXACT or path.startswith(_PUBLIC_PREFIXES)


def _too_many(wait: float, what: str) -> tuple[int, str, dict[str, str]]:
    seconds = max(1, math.ceil(wait))
    return 429, f"too many {what}: slow down and retry in {seconds} s", {"retry-after": str(seconds)}


def blocked_paths(studio: Any) -> list[str]:
    """What Gradio's own file check must never serve: the database, the users file, config, model cache."""
    settings = studio.settings
    database = settings.database_url.removeprefix("sqlite:///")
    blocked = [database, f"{database}-wal", f"{database}-shm", f"{database}-journal"]
    blocked += [str(settings.model_cache), str(studio.config.path)]
    if getattr(studio.accounts, "path", None) is not None:
        blocked.append(str(studio.accounts.path))
    return blocked


def policy_for(studio: Any, *, auth: bool, exposed: bool = False, rate_limit: Any = "env") -> GuardPolicy:
    """The guard's rules for this studio; the rate limit ("env": the settings' STUDIO_RATE_LIMIT) is on by
    default with logins or when exposed (a share link or a non-loopback address), keyed by user, or by
    address for anonymous callers. Extra origins are the settings' STUDIO_ALLOWED_ORIGINS."""
    settings = studio.settings
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    return GuardPolicy(
        auth=auth,
        data_dir=settings.data_dir.resolve(),
        media_dir=settings.media_dir.resolve(),
        protected=[Path(p).resolve() for p in blocked_paths(studio)],
        media_allowed=studio.media_access,
        rate=rate_for(settings, auth or exposed) if rate_limit == "env" else rate_limit,
        origins=set(settings.allowed_origins),
    )
