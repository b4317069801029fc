"""Accounts: the users file (names, scrypt-hashed passwords, admin flag, logout stamp) and checking a login.

Owns: the file format (JSON, written atomically with mode 0600), hashing with the standard library's
scrypt (random 16-byte salt per user, constant-time comparison) in a small worker pool, so a burst of
logins never holds the server's event loop, and the login check Gradio calls (`UserStore.login`).
Ignores: sessions and cookies (`sessions.py`), how many logins may be tried (`logins.py`), what a user may
see (the service checks ownership).
The file is re-read when it changes, so `studio users add|remove|logout` work while the studio is serving;
a file that turns malformed while serving is logged and the last good accounts stay.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from studio.config import Settings

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# `local` owns what the CLI and a no-login server make: an account of that name would take it over.
RESERVED_NAMES = frozenset({"local"})
HASH_WORKERS = 2  # scrypt releases the GIL: two threads use two cores and leave the event loop free
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt's cost grows with the input; nobody types more
# scrypt cost: 2**14 x 8 x 1 takes 16 MiB and about 40 ms a check here (OWASP's minimum is 2**13 x 8).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class UsersError(ValueError):
    """A problem with the users file or a new account, worded for the person running the command."""


@dataclass(frozen=True)
class Account:
    name: str
    admin: bool
    salt: str  # hex
    hash: str  # hex
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    logged_out_at: float = 0.0  # `studio users logout`: sessions begun before this time (epoch s) end

    def matches(self, password: str) -> bool:
        digest = _scrypt(password, bytes.fromhex(self.salt), self.n, self.r, self.p)
        return hmac.compare_digest(digest, bytes.fromhex(self.hash))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


# Compared against when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY = Account("", False, "00" * 16, "00" * 32)


def users_file(settings: Settings, path: str | Path | None = None) -> Path:
    """The users file: the one given, else the settings' STUDIO_USERS_FILE, else data dir/users.json."""
    chosen = path or settings.users_file or settings.data_dir / "users.json"
    return Path(chosen).expanduser()


def load_users(path: Path) -> dict[str, Account]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsersError(f"cannot read users file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersError(f'users file {path}: expected {{"users": {{name: account}}}}')
    accounts = {}
    for name, entry in data["users"].items():
        if name.lower() in RESERVED_NAMES:
            raise UsersError(f"users file {path}: the name {name!r} is reserved; rename that account")
        try:
            accounts[name] = Account(
                name=name,
                admin=bool(entry.get("admin", False)),
                salt=str(entry["salt"]),
                hash=str(entry["hash"]),
                n=int(entry.get("n", SCRYPT_N)),
                r=int(entry.get("r", SCRYPT_R)),
                p=int(entry.get("p", SCRYPT_P)),
                logged_out_at=float(entry.get("logged_out_at", 0.0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UsersError(f"users file {path}: the entry for {name!r} is malformed") from None
    return accounts


def add_user(path: Path, name: str, password: str, *, admin: bool = False, replace: bool = False) -> Account:
    """Create (or with `replace`, reset) an account; the file is rewritten atomically, owner-readable only.
    A reset changes the salt and hash, which ends every session of the old password (`sessions.py`)."""
    if not NAME_PATTERN.match(name or ""):
        raise UsersError(
            "a user name is 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
        )
    if name.lower() in RESERVED_NAMES:
        raise UsersError(f"the name {name!r} is reserved (it owns what the CLI makes); choose another")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UsersError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsersError(f"the password must be at most {MAX_PASSWORD} characters")
    accounts = load_users(path)
    if name in accounts and not replace:
        raise UsersError(f"user {name!r} already exists in {path}")
    salt = secrets.token_bytes(16)
    account = Account(name, admin, salt.hex(), _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex())
    accounts[name] = account
    _write(path, accounts)
    return account


def remove_user(path: Path, name: str) -> None:
    """Delete an account; a serving studio ends its sessions when it sees the file change."""
    accounts = load_users(path)
    if accounts.pop(name, None) is None:
        raise UsersError(f"no user {name!r} in {path}")
    _write(path, accounts)


def logout_user(path: Path, name: str) -> None:
    """End every session of `name` begun before now, without changing the password."""
    accounts = load_users(path)
    if name not in accounts:
        raise UsersError(f"no user {name!r} in {path}")
    # A clock step of a few ms must not spare a session begun in the same instant.
    accounts[name] = replace(accounts[name], logged_out_at=time.time() + 0.001)
    _write(path, accounts)


def _write(path: Path, accounts: dict[str, Account]) -> None:
    body = {"users": {a.name: _entry(a) for a in accounts.values()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _entry(a: Account) -> dict[str, object]:
    entry: dict[str, object] = {"admin": a.admin, "salt": a.salt, "hash": a.hash}
    entry.update(n=a.n, r=a.r, p=a.p)
    if a.logged_out_at:
        entry["logged_out_at"] = a.logged_out_at
    return entry


class UserStore:
    """The accounts of one users file, re-read when the file changes; `login` is Gradio's `auth`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._accounts: dict[str, Account] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._reload(first=True)

    def _reload(self, first: bool = False) -> dict[str, Account]:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = (0, 0)
            except OSError as exc:
                if first:
                    raise UsersError(f"cannot read users file {self.path}: {exc}") from None
                return self._accounts
            if stamp != self._stamp:
                try:
                    self._accounts = load_users(self.path)
                except UsersError as exc:
                    if first:
                        raise
                    # Serving: a half-edited or broken file must not lock everyone out (or answer 500).
                    log.error("%s; keeping the %d accounts read before", exc, len(self._accounts))
                self._stamp = stamp
            return self._accounts

    def __len__(self) -> int:
        return len(self._reload())

    def account(self, name: str | None) -> Account | None:
        return self._reload().get(name or "")

    def __call__(self, username: str, password: str) -> bool:
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return False
        account = self._reload().get(username)
        ok = (account or _DUMMY).matches(password)
        return ok and account is not None

    async def login(self, username: str, password: str) -> bool:
        """The check, in the hashing pool: scrypt's ~40-70 ms never runs on the event loop. How many
        logins may wait for the pool is the guard's business (`logins.py` refuses beyond it with 429)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="studio-login")
        return await asyncio.wrap_future(self._pool.submit(self, username, password))

    def is_admin(self, username: str | None) -> bool:
        account = self.account(username)
        return bool(account and account.admin)
