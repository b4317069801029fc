"""Accounts: the users file (names, scrypt-hashed passwords, admin flag) and checking a login.

Owns: the file format (JSON, written atomically with mode 0600), hashing with the standard library's
scrypt (random 16-byte salt per user, constant-time comparison) and the login check Gradio calls.
Ignores: sessions and cookies (Gradio's), what a user may see (the service checks ownership).
The file is re-read when it changes, so `studio users add` works while the studio is serving.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from studio.config import Settings

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
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
        try:
            accounts[name] = Account(
                name=name,
                admin=bool(entry.get("admin", False)),
                salt=str(entry["salt"]),
                hash=str(entry["hash"]),
                n=int(entry.get("n", SCRYPT_N)),
                r=int(entry.get("r", SCRYPT_R)),
                p=int(entry.get("p", SCRYPT_P)),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UsersError(f"users file {path}: the entry for {name!r} is malformed") from None
    return accounts


def add_user(path: Path, name: str, password: str, *, admin: bool = False, replace: bool = False) -> Account:
    """Create (or with `replace`, reset) an account; the file is rewritten atomically, owner-readable only."""
    if not NAME_PATTERN.match(name or ""):
        raise UsersError(
            "a user name is 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
        )
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
    body = {
        "users": {
            a.name: {"admin": a.admin, "salt": a.salt, "hash": a.hash, "n": a.n, "r": a.r, "p": a.p}
            for a in accounts.values()
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return account


class UserStore:
    """The accounts of one users file, re-read when the file changes; callable as Gradio's `auth`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._accounts: dict[str, Account] = {}
        self._reload()

    def _reload(self) -> dict[str, Account]:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = (0, 0)
            if stamp != self._stamp:
                self._accounts = load_users(self.path)
                self._stamp = stamp
            return self._accounts

    def __len__(self) -> int:
        return len(self._reload())

    def __call__(self, username: str, password: str) -> bool:
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return False
        account = self._reload().get(username)
        ok = (account or _DUMMY).matches(password)
        return ok and account is not None

    def is_admin(self, username: str | None) -> bool:
        account = self._reload().get(username or "")
        return bool(account and account.admin)
