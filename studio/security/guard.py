"""The web server's guard: who may reach which route, whose files they may fetch, and how often.

Owns: an ASGI middleware in front of Gradio's routes that (0) refuses a Host header that is not this
server's (DNS rebinding; `headers.HostCheck`) and adds anti-framing headers to every answer; (1) with
auth on, refuses anonymous requests on every route but the login page and its static assets, and a
Gradio session hash used by another user than its first; (2) refuses cross-origin requests (strict
CORS: only the page's own origin and `STUDIO_ALLOWED_ORIGINS`); (3) on the file routes, refuses URLs
(no fetching for the caller), anything in the data dir outside media/ (database, users file, model
cache) and any generated media, upload or export that is not the requesting user's; (4) rate-limits
each user's (or, anonymous, each address's) event submissions and uploads, and passes logins through
`limits.LoginGate`; (5) closes routes the studio never uses (monitoring, proxy, run history, vibe).
Ignores: logins themselves (Gradio checks the password through `accounts`) and what a user sees in
the tabs (the service checks ownership of every row).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio.to_thread
from starlette.requests import HTTPConnection

from studio.security.headers import HostCheck, with_safe_headers, without_api_info
from studio.security.limits import DEFAULT_RATE, LOGIN_RATE, LoginGate, LoginPass, RateLimiter, too_many
from studio.security.limits import rate_for as rate_for
from studio.security.sessions import SessionOwners, claiming_uploads, session_in_url

log = logging.getLogger(__name__)
__all__ = ["DEFAULT_RATE", "LOGIN_RATE", "Guard", "GuardPolicy", "RateLimiter", "policy_for", "rate_for"]

Scope = dict[str, Any]
Refusal = tuple[int, str, dict[str, str]]
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
# POSTs whose JSON body names a Gradio session hash; read whole (at most MAX_EVENT_BODY) to check it.
_SESSION_BODIES = (
    "/gradio_api/queue/join",
    "/gradio_api/cancel",
    "/gradio_api/call/",
    "/gradio_api/run/",
    "/gradio_api/api/",
)
MAX_EVENT_BODY = 32 * 2**20
_LIMITED_PREFIXES = (
    "/gradio_api/queue/join",
    "/gradio_api/call/",
    "/gradio_api/run/",
    "/gradio_api/api/",
    "/gradio_api/upload",
)


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
    logins: LoginGate | None = field(default_factory=LoginGate)
    origins: set[str] = field(default_factory=set)  # extra allowed origins, as "host:port"
    hosts: HostCheck | None = None  # None: any Host header (tests of the guard alone)
    sessions: SessionOwners = field(default_factory=SessionOwners)
    # (user, path) of each file a user uploaded: from then on it is served only to them.
    claim_file: Callable[[str | None, Path], None] = lambda user, path: None


class Guard:
    """ASGI middleware: give it to FastAPI as `Middleware(Guard, policy=...)`."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            send = with_safe_headers(send)
        refusal = await self._check(scope)
        login: LoginPass | None = None
        if refusal is None and scope["type"] == "http":
            refusal, receive = await self._check_body(scope, receive)
        if refusal is None and self._is_login(scope) and self.policy.logins is not None:
            admitted = await self.policy.logins.admit(scope, receive)
            if isinstance(admitted, LoginPass):
                login, receive = admitted, admitted.receive
                send = _on_status(send, login.finish)
            else:
                refusal = admitted
        if refusal is None:
            conn = HTTPConnection(scope)
            user = self._user(scope, conn)
            method = scope.get("method")
            if self.policy.auth and method == "GET" and scope.get("path") == "/" and user is None:
                send = without_api_info(send)  # Gradio's login page embeds the whole API description
            if user is not None and method == "POST" and self._path(scope) == "/gradio_api/upload":
                send = claiming_uploads(send, user, self.policy.claim_file)
            try:
                await self.app(scope, receive, send)
            finally:
                if login is not None:
                    login.finish(None)  # no answer began (an error): free the slot all the same
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

    @staticmethod
    def _path(scope: Scope) -> str:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return str(path)

    async def _check(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        policy = self.policy
        conn = HTTPConnection(scope)
        if policy.hosts is not None and not policy.hosts.allows(conn.headers.get("host")):
            return 400, "unknown host: this server answers only to its own names", {}
        path = self._path(scope)
        if path.startswith(_CLOSED_PREFIXES):
            return 404, "not found", {}
        origin = conn.headers.get("origin")
        if origin is not None and not self._same_origin(origin, conn.headers.get("host", "")):
            return 403, "cross-origin requests are refused", {}
        user = self._user(scope, conn)
        client = conn.client.host if conn.client else "unknown"
        if policy.auth and user is None and not _public(path):
            return 401, "not authenticated: log in first", {}
        if user is not None and policy.auth:
            claimed = session_in_url(path, scope.get("query_string", b""))
            if claimed and not policy.sessions.claim(claimed, user):
                return 403, "this session belongs to another user", {}
        if path.startswith(_FILE_PREFIXES):
            refusal = await self._check_file(path, user)
            if refusal:
                return 403, refusal, {}
        if policy.rate is not None and scope.get("method") == "POST" and path.startswith(_LIMITED_PREFIXES):
            wait = policy.rate.take(f"user:{user}" if user else f"addr:{client}")
            if wait:
                return too_many(wait, "requests")
        return None

    async def _check_body(self, scope: Scope, receive: Any) -> tuple[Refusal | None, Any]:
        """With logins, an event's JSON body names its Gradio session: it must be the user's own."""
        path = self._path(scope)
        if not self.policy.auth or scope.get("method") != "POST" or not path.startswith(_SESSION_BODIES):
            return None, receive
        user = self._user(scope, HTTPConnection(scope))
        if user is None:
            return None, receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_EVENT_BODY:
                return (413, f"request body over {MAX_EVENT_BODY // 2**20} MB", {}), receive
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            session = json.loads(body).get("session_hash") if body else None
        except (ValueError, AttributeError):
            session = None  # not a JSON object: Gradio refuses it itself
        if isinstance(session, str) and not self.policy.sessions.claim(session, user):
            return (403, "this session belongs to another user", {}), receive
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        return None, replay

    @staticmethod
    def _is_login(scope: Scope) -> bool:
        return scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/login"

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


def _on_status(send: Any, callback: Callable[[int | None], None]) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            callback(message.get("status"))
        await send(message)

    return wrapped


def _public(path: str) -> bool:
    return path in _PUBLIC_EXACT or path.startswith(_PUBLIC_PREFIXES)


def blocked_paths(studio: Any) -> list[str]:
    """What Gradio's own file check must never serve: the database, the users file, config, model cache."""
    settings = studio.settings
    database = settings.database_url.removeprefix("sqlite:///")
    blocked = [database, f"{database}-wal", f"{database}-shm", f"{database}-journal"]
    blocked += [str(settings.model_cache), str(studio.config.path)]
    if getattr(studio.accounts, "path", None) is not None:
        blocked.append(str(studio.accounts.path))
    return blocked


def policy_for(
    studio: Any,
    *,
    auth: bool,
    exposed: bool = False,
    rate_limit: Any = "env",
    host: str = "127.0.0.1",
    logins: Any = "default",
) -> GuardPolicy:
    """The guard's rules for this studio served on `host`; the rate limit ("env": the settings'
    STUDIO_RATE_LIMIT) is on by default with logins or when exposed (a share link or a non-loopback
    address), keyed by user, or by address for anonymous callers; `logins` is a `LoginGate` ("default":
    the built-in limits). Extra origins and hosts are the settings' STUDIO_ALLOWED_ORIGINS / _HOSTS."""
    settings = studio.settings
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    return GuardPolicy(
        auth=auth,
        data_dir=settings.data_dir.resolve(),
        media_dir=settings.media_dir.resolve(),
        protected=[Path(p).resolve() for p in blocked_paths(studio)],
        media_allowed=studio.media_access,
        rate=rate_for(settings, auth or exposed) if rate_limit == "env" else rate_limit,
        logins=LoginGate() if logins == "default" else logins,
        origins=set(settings.allowed_origins),
        hosts=HostCheck.for_server(host, settings.allowed_hosts, settings.allowed_origins),
        claim_file=studio.claim_file,
    )
