"""How often: token buckets for events and logins, and the gate every login passes before its password is
checked.

Owns: `RateLimiter` (a token bucket per key), the default limits, and `LoginGate`: a login attempt is
counted BEFORE its password is checked (so a burst of parallel attempts cannot all be checked before the
first failure is counted), against both the (address, user name) pair and the address alone (so an
attacker guessing one name does not lock out the others at that address); a success gives its attempt
back; and at most `slots` logins are being hashed or waiting for the hashing pool, the rest get 429.
Ignores: which address is the client's (uvicorn decides, trusting forwarded headers only from
`STUDIO_TRUSTED_PROXIES`), checking the password (`accounts.py`), answering (the guard).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from studio.config import Settings

DEFAULT_RATE = 120  # a busy person clicks a few times a minute; each click is 1-3 events
LOGIN_RATE = 20  # failed logins a minute per address and user name, after a first 10
ADDRESS_LOGIN_RATE = 100  # failed logins a minute per address, whatever the names, after a first 50
LOGIN_SLOTS = 8  # logins hashing (2) or waiting for the pool (6): at ~50 ms a hash, under 0.3 s of wait
MAX_LOGIN_BODY = 16 * 1024  # a user name and a password (1024 characters at most) fit many times
_MAX_KEYS = 20_000  # buckets kept before the full ones are forgotten


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
            if len(self._buckets) > _MAX_KEYS:
                self._forget_full(now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1 if count else tokens, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate else math.inf

    def give_back(self, key: str) -> None:
        """Return one token taken by `take` (an attempt that turned out not to count)."""
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, time.monotonic()))
            self._buckets[key] = (min(self.burst, tokens + 1), last)

    def _forget_full(self, now: float) -> None:
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[key]


def rate_for(settings: Settings, on_by_default: bool) -> RateLimiter | None:
    """The per-user limit: the settings' STUDIO_RATE_LIMIT events a minute (0 = off); unset, the default
    when `on_by_default` (logins or an exposed server), else none."""
    per_minute = settings.rate_limit
    if per_minute is None:
        per_minute = DEFAULT_RATE if on_by_default else 0
    return RateLimiter(per_minute) if per_minute > 0 else None


def too_many(wait: float, what: str) -> tuple[int, str, dict[str, str]]:
    seconds = max(1, math.ceil(wait))
    return 429, f"too many {what}: slow down and retry in {seconds} s", {"retry-after": str(seconds)}


Refusal = tuple[int, str, dict[str, str]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class LoginPass:
    """A login let through the gate: the request body to replay to Gradio, and what to undo at the end."""

    gate: LoginGate
    receive: Receive
    keys: list[str]
    finished: bool = False

    def finish(self, status: int | None) -> None:
        """The answer began with `status` (None: it never did): free the slot; a success is no failure."""
        if self.finished:
            return
        self.finished = True
        self.gate.release()
        if status == 200:
            self.gate.refund(self.keys)


@dataclass
class LoginGate:
    per_name: RateLimiter = field(default_factory=lambda: RateLimiter(LOGIN_RATE, burst=10))
    per_address: RateLimiter = field(default_factory=lambda: RateLimiter(ADDRESS_LOGIN_RATE, burst=50))
    slots: int = LOGIN_SLOTS
    _busy: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def admit(self, scope: dict[str, Any], receive: Receive) -> Refusal | LoginPass:
        """Read the login form, count the attempt and take a hashing slot, or say why not."""
        body = await _read_body(receive, MAX_LOGIN_BODY)
        if body is None:
            return 413, "login request too large", {}
        replay = _replaying(body, receive)
        try:
            form = await Request(scope, _replaying(body, receive)).form()
            name = str(form.get("username") or "").strip()[:64]
        except Exception:  # a malformed form: Gradio answers it; count it against the address alone
            name = ""
        client = scope.get("client")
        address = client[0] if client else "unknown"
        keys = [f"{address}\n{name}"]
        wait = self.per_name.take(keys[0])
        if wait:
            return too_many(wait, "failed logins for this name")
        wait = self.per_address.take(address)
        if wait:
            self.per_name.give_back(keys[0])
            return too_many(wait, "failed logins from this address")
        keys.append(address)
        with self._lock:
            if self._busy >= self.slots:
                busy = True
            else:
                busy = False
                self._busy += 1
        if busy:  # nothing was checked: the attempt does not count
            self.refund(keys)
            return 429, "too many logins at once: retry in a second", {"retry-after": "1"}
        return LoginPass(self, replay, keys)

    def refund(self, keys: list[str]) -> None:
        self.per_name.give_back(keys[0])
        if len(keys) > 1:
            self.per_address.give_back(keys[1])

    def release(self) -> None:
        with self._lock:
            self._busy -= 1


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then passes on to the real one (its disconnect)."""
    sent = False

    async def wrapped() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped
