"""The `STUDIO_*` environment, parsed once into a strict typed `Settings`, and the formats it shares with
`models.yaml`.

Owns: every `STUDIO_*` environment variable (`Settings`, validated once at start-up; `ENV_FORMS`, the
form each takes as error messages quote it), the memory sizes and pools (`parse_size`, `parse_budget`,
`Pool`, `GB`), durations (`parse_duration`), where the models file and the data dir are by default, and
`ConfigError` (naming the variable and the form it takes; config.py words it for models.yaml).
Ignores: `models.yaml`'s schema (config.py, which re-exports these names: callers import them from there).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

DEFAULT_MODELS_FILE = Path(__file__).resolve().parent.parent / "models.yaml"

# Memory pools: RAM for CPU models, GPU memory for CUDA models.
Pool = Literal["cpu", "cuda"]
POOLS: tuple[Pool, ...] = ("cpu", "cuda")
GB = 1024**3
MB = 1024**2
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": GB, "k": 1024, "m": MB, "g": GB, "t": 1024 * GB}


class ConfigError(ValueError):
    """A configuration problem, worded for the person who has to fix the file."""


def parse_size(text: str) -> int:
    """'8GB' / '8G' / '8' (gigabytes) / '512MB' / '1.5GiB' -> bytes; ValueError for anything else."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write it like 8GB or 512MB")
    unit = (match.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_budget(text: str) -> dict[Pool, int]:
    """STUDIO_MEMORY_BUDGET: one size for every pool ('10GB') or per pool ('cpu=12GB,cuda=20GB')."""
    if "=" not in text:
        size = parse_size(text)
        out: dict[Pool, int] = {"cpu": size, "cuda": size}
    else:
        out = {}
        for part in text.split(","):
            name, _, amount = part.partition("=")
            pool = name.strip().lower()
            if pool not in POOLS:
                raise ValueError(f"unknown memory pool {name.strip()!r} in {text!r}; use cpu= and/or cuda=")
            out["cpu" if pool == "cpu" else "cuda"] = parse_size(amount)
    if not all(out.values()):
        raise ValueError(f"a budget of 0 in {text!r} leaves no room for any model")
    return out


# The form each STUDIO_* variable with a format takes, as error messages quote it.
ENV_FORMS: dict[str, str] = {
    "STUDIO_PORT": "a whole number from 1 to 65535",
    "STUDIO_USERS_FILE": "the path of a JSON users file (it need not exist yet)",
    "STUDIO_JOBS_PER_DEVICE": "a whole number from 1 to 64",
    "STUDIO_MEMORY_BUDGET": "a size such as 12GB or 512MB, or one per pool such as cpu=12GB,cuda=20GB",
    "STUDIO_RATE_LIMIT": "a whole number of events a minute (0 turns the limit off)",
    "STUDIO_ALLOWED_ORIGINS": "comma-separated origins such as https://example.com,http://10.0.0.7:7860",
    "STUDIO_ALLOWED_HOSTS": "comma-separated host names such as studio.example.com,10.0.0.7",
    "STUDIO_TRUSTED_PROXIES": "comma-separated proxy addresses such as 127.0.0.1,10.0.0.2 (or *)",
    "STUDIO_SESSION_IDLE": "a duration such as 30m, 12h or 2d (at least 10s)",
    "STUDIO_SESSION_MAX": "a duration such as 12h or 7d (at least 10s)",
    "STUDIO_QUEUED_PER_USER": "a whole number from 1 to 1000",
    "STUDIO_MAX_NEW_TOKENS": "a whole number from 1 to 1000000",
    "STUDIO_UPLOAD_CACHE": "a size such as 2GB or 500MB",
    "STUDIO_TEMP_MAX_AGE": "a whole number of minutes from 1 to 100000",
    "STUDIO_LEASE_SECONDS": "a whole number of seconds from 2 to 86400",
}
_DURATION = re.compile(r"^([0-9]+)\s*([smhd]?)$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_HOST_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:]+\]?$")
_WHOLE = re.compile(r"[0-9]+")


def _whole(raw: str, low: int, high: int | None = None) -> int:
    if not _WHOLE.fullmatch(raw) or int(raw) < low or (high is not None and int(raw) > high):
        raise ValueError
    return int(raw)


def _set(**values: Any) -> dict[str, Any]:
    """The values that were set (None: unset, so the field's default applies)."""
    return {name: value for name, value in values.items() if value is not None}


def _times(value: int | None, factor: int) -> int | None:
    return None if value is None else value * factor


def _users_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if path.is_dir():
        raise ValueError("that is a folder")
    return path


def _origins(raw: str) -> frozenset[str]:
    """Each origin as the "host:port" the guard compares with a request's Origin header."""
    found = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if "://" in item:  # a URL: its path, if any, is dropped (an origin has none)
            parts = urlsplit(item)
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"{item!r} is not an http or https URL")
        else:  # a bare host[:port]
            parts = urlsplit(f"//{item}")
            if parts.netloc != item:
                raise ValueError(f"{item!r} is not a host or host:port")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            raise ValueError(f"{item!r} has a bad port") from None
        if not parts.hostname or "@" in parts.netloc or any(c.isspace() for c in parts.netloc):
            raise ValueError(f"{item!r} has no host" if not parts.hostname else f"{item!r} is not an origin")
        found.add(parts.netloc)
    return frozenset(found)


def parse_duration(text: str) -> float:
    """'90' or '90s' / '30m' / '12h' / '7d' -> seconds (at least 10); ValueError for anything else."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError("write it like 30m, 12h or 7d")
    seconds = int(match.group(1)) * _SECONDS[match.group(2).lower()]
    if seconds < 10:
        raise ValueError("shorter than 10 seconds")
    return float(seconds)


def _hosts(raw: str) -> frozenset[str]:
    """Host names (a leading '*.' allows every subdomain), lower-cased, without ports."""
    found = set()
    for item in (part.strip().lower() for part in raw.split(",")):
        if not item:
            continue
        if not _HOST_NAME.match(item):
            raise ValueError(f"{item!r} is not a host name (no scheme, no port)")
        found.add(item.strip("[]"))
    return frozenset(found)


def _proxies(raw: str) -> tuple[str, ...]:
    """Proxy addresses (IPs or networks such as 10.0.0.0/8, or '*') whose forwarded headers are trusted."""
    import ipaddress

    found = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        found.append(item)
    return tuple(found)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "studio"


@dataclass(frozen=True)
class Settings:
    """Every `STUDIO_*` variable, read from the environment and checked once at start-up.

    A field left at None means "not set": the models.yaml value or the built-in default applies where the
    value is used (the manager, the guard, the users file).
    """

    data_dir: Path
    models_file: Path
    database_url: str
    model_cache: Path
    port: int = 7860  # STUDIO_PORT: `studio serve`'s default --port
    users_file: Path | None = None  # STUDIO_USERS_FILE; None: users.json in the data dir
    jobs_per_device: int | None = None  # STUDIO_JOBS_PER_DEVICE; None: models.yaml's jobs_per_device
    # STUDIO_MEMORY_BUDGET in bytes per pool; None: models.yaml's memory_budget_gb, else the device's share.
    memory_budget: dict[Pool, int] | None = field(default=None, hash=False)
    rate_limit: int | None = None  # STUDIO_RATE_LIMIT, events a minute (0: off); None: the guard's default
    allowed_origins: frozenset[str] = frozenset()  # STUDIO_ALLOWED_ORIGINS, as "host:port"
    allowed_hosts: frozenset[str] = frozenset()  # STUDIO_ALLOWED_HOSTS: Host names beyond loopback's
    trusted_proxies: tuple[str, ...] = ()  # STUDIO_TRUSTED_PROXIES: whose X-Forwarded-For is believed
    session_idle: float = 12 * 3600.0  # STUDIO_SESSION_IDLE, seconds: a login unused this long ends
    session_max: float = 7 * 86400.0  # STUDIO_SESSION_MAX, seconds: a login ends this long after it began
    queued_per_user: int = 8  # STUDIO_QUEUED_PER_USER: one user's jobs waiting or running on a device
    max_new_tokens: int | None = None  # STUDIO_MAX_NEW_TOKENS: this deployment's cap; None: the model's
    upload_cache: int = 2 * GB  # STUDIO_UPLOAD_CACHE: bytes the studio's upload and temp files may take
    temp_max_age_s: int = 24 * 3600  # STUDIO_TEMP_MAX_AGE (minutes): older temp files are removed
    lease_s: int = 60  # STUDIO_LEASE_SECONDS: a running row's owner lease; expired, others recover it

    @classmethod
    def from_env(
        cls, *, models_file: str | Path | None = None, data_dir: str | Path | None = None
    ) -> Settings:
        """Read the environment; raise ConfigError naming each bad variable and the form it takes."""
        data = Path(data_dir or os.environ.get("STUDIO_DATA_DIR") or _default_data_dir()).expanduser()
        models = Path(models_file or os.environ.get("STUDIO_MODELS") or DEFAULT_MODELS_FILE).expanduser()
        db_url = os.environ.get("STUDIO_DATABASE_URL") or f"sqlite:///{data / 'studio.db'}"
        cache = Path(os.environ.get("STUDIO_MODEL_CACHE") or data / "models").expanduser()
        errors: list[str] = []

        def read(name: str, parse: Any) -> Any:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return None  # unset or empty: the default
            try:
                return parse(raw)
            except ValueError as exc:
                why = f" ({exc})" if str(exc) else ""
                errors.append(f"{name} must be {ENV_FORMS[name]}, not {raw!r}{why}")
                return None

        port = read("STUDIO_PORT", lambda raw: _whole(raw, 1, 65535))
        settings = cls(
            data_dir=data,
            models_file=models,
            database_url=db_url,
            model_cache=cache,
            port=7860 if port is None else port,
            users_file=read("STUDIO_USERS_FILE", _users_file),
            jobs_per_device=read("STUDIO_JOBS_PER_DEVICE", lambda raw: _whole(raw, 1, 64)),
            memory_budget=read("STUDIO_MEMORY_BUDGET", parse_budget),
            rate_limit=read("STUDIO_RATE_LIMIT", lambda raw: _whole(raw, 0)),
            allowed_origins=read("STUDIO_ALLOWED_ORIGINS", _origins) or frozenset(),
            allowed_hosts=read("STUDIO_ALLOWED_HOSTS", _hosts) or frozenset(),
            trusted_proxies=read("STUDIO_TRUSTED_PROXIES", _proxies) or (),
            session_idle=read("STUDIO_SESSION_IDLE", parse_duration) or 12 * 3600.0,
            session_max=read("STUDIO_SESSION_MAX", parse_duration) or 7 * 86400.0,
            **_set(
                queued_per_user=read("STUDIO_QUEUED_PER_USER", lambda raw: _whole(raw, 1, 1000)),
                max_new_tokens=read("STUDIO_MAX_NEW_TOKENS", lambda raw: _whole(raw, 1, 1_000_000)),
                upload_cache=read("STUDIO_UPLOAD_CACHE", parse_size),
                temp_max_age_s=_times(read("STUDIO_TEMP_MAX_AGE", lambda raw: _whole(raw, 1, 100_000)), 60),
                lease_s=read("STUDIO_LEASE_SECONDS", lambda raw: _whole(raw, 2, 86_400)),
            ),
        )
        if errors:
            raise ConfigError("\n".join(errors))
        return settings

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def temp_dir(self) -> Path:
        """The studio's own temporary files (exports being zipped, code downloads), swept on a schedule."""
        return self.data_dir / "tmp"
