"""Administration commands: `studio users add|list|remove|logout`, `studio backup PATH` and `studio serve`'s
safety flags.

Owns: their argument parsing and output; refusing --share/--listen without logins and printing the
share link with its expiry. The users file format is `studio.security.accounts`'s; the backup uses
SQLite's online backup API, so it is a consistent copy even while `studio serve` is writing.
Ignores: serving and everything the studio stores beyond copying it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from studio.config import Settings

SHARE_LIFETIME = timedelta(days=7)
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
    remove = users_sub.add_parser("remove", help="delete an account (its sessions end)", parents=[common])
    remove.add_argument("name")
    remove.add_argument("--file", help=FILE_HELP)
    logout = users_sub.add_parser(
        "logout", help="end every session of an account now (a running server notices)", parents=[common]
    )
    logout.add_argument("name")
    logout.add_argument("--file", help=FILE_HELP)

    backup = sub.add_parser(
        "backup", help="a consistent copy of the SQLite database (safe while serving)", parents=[common]
    )
    backup.add_argument("path", help="file to write (must not exist)")


def add_serve_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--auth",
        nargs="?",
        const="",
        default=None,
        metavar="USERS_FILE",
        help="require a login (accounts from USERS_FILE, $STUDIO_USERS_FILE or users.json in the data dir)",
    )
    serve.add_argument("--share", action="store_true", help="make a public Gradio share link (needs --auth)")
    serve.add_argument("--listen", action="store_true", help="bind all network interfaces (needs --auth)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow --share/--listen without logins: anyone who reaches the server can use it",
    )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_guard(args: argparse.Namespace, settings: Settings) -> tuple[int | None, Any]:
    """Check the serve flags before anything starts: (exit code to stop with or None, accounts or None)."""
    from studio.security.accounts import UsersError, UserStore, users_file

    if args.listen:
        args.host = "0.0.0.0"
    exposed = args.share or args.host not in LOOPBACK
    if args.auth is None:
        if exposed and not args.insecure_no_auth:
            print(
                "error: refusing to serve beyond this machine without logins: add --auth "
                "(create accounts with `studio users add NAME`), or --insecure-no-auth if you really mean it",
                file=sys.stderr,
            )
            return 2, None
        if exposed:
            print(
                "\n"
                + "!" * 78
                + "\nWARNING: serving WITHOUT LOGINS on a "
                + ("public share link" if args.share else f"network interface ({args.host})")
                + ".\nAnyone who reaches it can run models on this machine and read everything stored.\n"
                + "!" * 78
                + "\n",
                file=sys.stderr,
            )
        return None, None
    path = users_file(settings, args.auth or None)
    try:
        accounts = UserStore(path)
    except UsersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    if not len(accounts):
        hint = "create one with `studio users add NAME --admin`"
        print(f"error: no accounts in {path}; {hint}", file=sys.stderr)
        return 2, None
    return None, accounts


def print_links(local_url: str, share_url: str | None, share: bool) -> None:
    print(f"Studio is serving on {local_url}", flush=True)
    if not share:
        return
    if share_url:
        expires = datetime.now(UTC) + SHARE_LIFETIME
        print(
            f"Public link: {share_url}\n  it expires at the latest {expires:%Y-%m-%d %H:%M} UTC "
            "(Gradio keeps share links for up to a week); restart with --share for a new one",
            flush=True,
        )
    else:
        print(
            "No public link was made: the share server could not be reached (offline?). "
            f"Serving locally only, on {local_url}",
            flush=True,
        )


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
    from studio.security.accounts import (
        UsersError,
        add_user,
        load_users,
        logout_user,
        remove_user,
        users_file,
    )

    path = users_file(settings, args.file)
    try:
        if args.users_command == "list":
            for account in load_users(path).values():
                print(f"{account.name}{' (admin)' if account.admin else ''}")
            return 0
        if args.users_command in ("remove", "logout"):
            (remove_user if args.users_command == "remove" else logout_user)(path, args.name)
            done = "removed; its sessions end" if args.users_command == "remove" else "logged out everywhere"
            print(f"user {args.name} {done} ({path})")
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
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # everyone's data: owner only
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
