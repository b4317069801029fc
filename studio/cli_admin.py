"""Administration commands: `studio users add|list` and `studio backup PATH`.

Owns: their argument parsing and output. The users file format is `studio.auth`'s; the backup uses
SQLite's online backup API, so it is a consistent copy even while `studio serve` is writing.
Ignores: serving and everything the studio stores beyond copying it.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
import time
from pathlib import Path

from studio.config import Settings

FILE_HELP = "users file (default: $STUDIO_USERS_FILE, else users.json in the data dir)"


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    users = sub.add_parser("users", help="manage login accounts (for serve --auth)", parents=[common])
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser(
        "add",
        help="create an account; the password is asked for (or read from standard input)",
        parents=[common],
    )
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may export every user's data")
    add.add_argument("--replace", action="store_true", help="reset the password of an existing user")
    add.add_argument("--file", help=FILE_HELP)
    listing = users_sub.add_parser("list", help="the accounts of a users file", parents=[common])
    listing.add_argument("--file", help=FILE_HELP)

    backup = sub.add_parser(
        "backup", help="a consistent copy of the SQLite database (safe while serving)", parents=[common]
    )
    backup.add_argument("path", help="file to write (must not exist)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "users":
        return _users(args, settings)
    return backup(settings, Path(args.path))


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise ValueError("the passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")  # scripts: `echo "$PASSWORD" | studio users add NAME`


def _users(args: argparse.Namespace, settings: Settings) -> int:
    from studio.auth import UsersError, add_user, load_users, users_file

    path = users_file(settings, args.file)
    try:
        if args.users_command == "list":
            for account in load_users(path).values():
                print(f"{account.name}{' (admin)' if account.admin else ''}")
            return 0
        password = _read_password()
        add_user(path, args.name, password, admin=args.admin, replace=args.replace)
    except (UsersError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name}{' (admin)' if args.admin else ''} saved in {path}")
    return 0


def backup(settings: Settings, target: Path) -> int:
    """Copy the live database page by page (SQLite's backup API), then check the copy's integrity."""
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        print("error: `studio backup` copies SQLite databases; for PostgreSQL use pg_dump", file=sys.stderr)
        return 2
    source = Path(url.removeprefix("sqlite:///"))
    if not source.exists():
        print(f"error: no database at {source}", file=sys.stderr)
        return 2
    if target.exists():
        print(f"error: {target} already exists; choose a new file", file=sys.stderr)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # Small steps with a pause let the server's writers in between; a write during the copy restarts it.
        src.backup(dst, pages=1024, sleep=0.005)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        print(f"error: the copy failed its integrity check: {check}", file=sys.stderr)
        return 1
    size = target.stat().st_size
    print(f"backed up {source} to {target} ({size / 1e6:.1f} MB, {time.perf_counter() - started:.2f} s)")
    return 0
