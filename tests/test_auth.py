"""Accounts and the serve flags: hashed passwords in the users file, `studio users add`, and serving
beyond this machine refused without logins."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from studio import Settings, cli
from studio.cli import admin
from studio.security.accounts import UsersError, UserStore, add_user, load_users
from tests.helpers.net import free_port


def test_passwords_are_stored_salted_and_hashed_never_in_plain_text(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    add_user(users, "alice", "correct horse battery", admin=True)
    add_user(users, "bob", "correct horse battery")
    text = users.read_text()
    assert "correct horse" not in text
    entries = json.loads(text)["users"]
    assert entries["alice"]["salt"] != entries["bob"]["salt"]  # same password, different hashes
    assert entries["alice"]["hash"] != entries["bob"]["hash"]
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    store = UserStore(users)
    assert store("alice", "correct horse battery") and store("bob", "correct horse battery")
    for name, password in [
        ("alice", "correct horse batterY"),
        ("alice", ""),
        ("carol", "correct horse battery"),
    ]:
        assert not store(name, password)
    assert store.is_admin("alice") and not store.is_admin("bob") and not store.is_admin(None)


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("", "long enough pw", "user name"),
        ("../etc", "long enough pw", "user name"),
        ("a" * 65, "long enough pw", "user name"),
        ("alice", "short", "at least 8"),
        ("alice", "x" * 2000, "at most"),
    ],
)
def test_bad_accounts_are_refused(tmp_path: Path, name: str, password: str, message: str) -> None:
    with pytest.raises(UsersError, match=message):
        add_user(tmp_path / "users.json", name, password)
    assert not (tmp_path / "users.json").exists()


def test_an_account_added_while_serving_can_log_in_at_once(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    add_user(users, "alice", "alice-password")
    store = UserStore(users)
    assert not store("bob", "bob-password")
    time.sleep(0.01)  # a different mtime, on file systems with coarse timestamps
    add_user(users, "bob", "bob-password")
    assert store("bob", "bob-password")
    with pytest.raises(UsersError, match="already exists"):
        add_user(users, "bob", "another-password")


def test_users_add_reads_the_password_from_stdin_and_refuses_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-password\n"))
    assert cli.main(["users", "add", "alice", "--admin", "--file", str(users)]) == 0
    assert "alice (admin)" in capsys.readouterr().out
    assert UserStore(users)("alice", "s3cret-password")
    monkeypatch.setattr(sys, "stdin", io.StringIO("other-password\n"))
    assert cli.main(["users", "add", "alice", "--file", str(users)]) == 2
    assert "already exists" in capsys.readouterr().err
    # The default file is in the data dir; STUDIO_USERS_FILE names another.
    monkeypatch.setattr(sys, "stdin", io.StringIO("bob-password\n"))
    assert cli.main(["users", "add", "bob", "--data-dir", str(tmp_path / "data")]) == 0
    assert "bob" in load_users(tmp_path / "data" / "users.json")
    monkeypatch.setenv("STUDIO_USERS_FILE", str(tmp_path / "env-users.json"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("carol-password\n"))
    assert cli.main(["users", "add", "carol", "--data-dir", str(tmp_path / "data")]) == 0
    assert "carol" in load_users(tmp_path / "env-users.json")


@pytest.mark.parametrize(
    "flags",
    [["--share"], ["--listen"], ["--host", "0.0.0.0"], ["--share", "--listen"]],
)
def test_sharing_or_listening_without_logins_refuses_to_start(
    tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--data-dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve beyond this machine without logins" in err and "--auth" in err


def test_auth_with_no_accounts_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--auth", "--share"]) == 2
    assert "no accounts" in capsys.readouterr().err


def _serve(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], str, int]:
    """`studio serve` in a subprocess on a free loopback port; returns it with what it printed at start."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "serve", "--no-preload", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    printed = ""
    deadline = time.monotonic() + 60
    while "Studio is serving on" not in printed or ("--share" in flags and "ublic link" not in printed):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {printed}")
        printed += line
    return proc, printed, port


def test_offline_share_says_no_link_was_made_and_keeps_serving_locally(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    add_user(users, "alice", "alice-password")
    data = tmp_path / "data"
    proc, printed, port = _serve(tmp_path, "--data-dir", str(data), "--auth", str(users), "--share")
    try:
        assert "No public link was made" in printed and "Serving locally only" in printed
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/config").status_code == 401  # logins are on
            assert client.post("/login", data={"username": "alice", "password": "alice-password"}).is_success
            assert client.get("/config").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_insecure_no_auth_goes_ahead_with_a_loud_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli._parser().parse_args(["serve", "--listen", "--insecure-no-auth"])
    stop, accounts = admin.serve_guard(args, Settings.from_env(data_dir=tmp_path))
    assert stop is None and accounts is None and args.host == "0.0.0.0"
    assert "WARNING: serving WITHOUT LOGINS on a network interface" in capsys.readouterr().err
