"""Configuration: `models.yaml` and the `STUDIO_*` environment, parsed once into strict typed objects.

Owns: the schema of `models.yaml` (`ModelSpec`, `StudioConfig`), the spec of a trained variant that the
service adds at run time (`VariantSpec`: a base plus a LoRA adapter, never in the file), every `STUDIO_*`
environment variable (`Settings`, validated once at start-up), the memory-size format both share
(`parse_size`, `parse_budget`) and the error a typo produces (`ConfigError`, naming the file, line, model
and field, or the variable and the form it takes).
Ignores: whether a backend kind exists or accepts a default; `studio.backends.check_models` checks that,
because config must not import backends (see ARCHITECTURE's import rules).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

# "safety" is the tab of the checker models (used by models.yaml's `safety:`); "scorer" is not a tab of its
# own either: it marks reward models (backend transformers-reward) that Best of n in Chat and Code picks an
# answer with. Neither generates, so neither is in TABS.
Tab = Literal["chat", "code", "image", "speech", "music", "safety", "scorer"]
TABS: tuple[str, ...] = ("chat", "code", "image", "speech", "music")

# What the safety stage can name (studio/service/safety.py): every checker maps its labels onto these, and
# models.yaml's `safety.thresholds` may set only these. "checker" is a checker that failed or is missing.
SAFETY_CATEGORIES: tuple[str, ...] = (
    "profanity",
    "harassment",
    "hate",
    "sexual",
    "violence",
    "self-harm",
    "crime",
    "jailbreak",
)
SafetyCategory = Literal[
    "profanity", "harassment", "hate", "sexual", "violence", "self-harm", "crime", "jailbreak"
]
SafetyMode = Literal["off", "flag", "block"]
GeneratingTab = Literal["chat", "code", "image", "speech", "music"]
Threshold = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]

# The models.yaml shipped next to app.py; `STUDIO_MODELS` or `--models` picks another one.
DEFAULT_MODELS_FILE = Path(__file__).resolve().parent.parent / "models.yaml"


Gigabytes = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]

# Memory pools: RAM for CPU models, GPU memory for CUDA models.
Pool = Literal["cpu", "cuda"]
POOLS: tuple[Pool, ...] = ("cpu", "cuda")
GB = 1024**3
MB = 1024**2
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": GB, "k": 1024, "m": MB, "g": GB, "t": 1024 * GB}


class ConfigError(ValueError):
    """A configuration problem, worded for the person who has to fix the file."""


class LoraSpec(BaseModel):
    """A LoRA offered for an image model: where its weights are and the scale it starts at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    source: str = Field(min_length=1)  # Hub id, local folder or .safetensors file (relative to models.yaml)
    weight_name: str | None = None  # the file inside a Hub repo or folder, when it has several
    scale: float = Field(default=1.0, ge=0.0, le=2.0, allow_inf_nan=False)


class ModelSpec(BaseModel):
    """One entry of `models:`; `defaults` is checked against the backend's Params by `check_models`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    tabs: list[Tab] = Field(min_length=1)
    backend: str
    source: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    loras: list[LoraSpec] = Field(default_factory=list)  # image models only
    options: dict[str, Any] = Field(default_factory=dict)  # backend load options, checked by its `Options`
    # Remote engines (backend openai-chat): the server's OpenAI-compatible URL, the env var holding its key.
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Memory the model takes once loaded, in GB; without it the manager estimates from the weights on disk.
    memory_gb: float | None = Field(default=None, ge=0.0, le=4096.0, allow_inf_nan=False)

    # Lines of this entry and of each of its fields in models.yaml, so later checks can point at them.
    _line: int = PrivateAttr(default=0)
    _field_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @property
    def line(self) -> int:
        return self._line

    def line_of(self, field: str) -> int:
        return self._field_lines.get(field, self._line)


class VariantSpec(ModelSpec):
    """A model trained in the studio: its base's weights plus a LoRA adapter folder (`source`). Made from the
    database's variant table at start-up and when a run finishes, never read from models.yaml; its id holds
    a `+` (`smollm2-135m+dpo-3`) so it cannot clash with a models.yaml id."""

    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\+[a-z]+(?:-[a-z]+)*-[0-9]+$"
    )  # +diffusion-dpo-4
    base: str  # the id of the models.yaml entry whose weights it shares
    method: str
    run_id: int


class SafetyConfig(BaseModel):
    """models.yaml's `safety:` section: which checker models run, the policy of each tab, the thresholds.

    A tab left out of `policy` gets the default: `flag` for one local user, `block` when the studio is
    exposed (--share, --listen, a non-loopback host). A score at or above its category's threshold counts.
    """

    model_config = ConfigDict(extra="forbid")

    # Ids of models with `tabs: [safety]`; text checkers see prompts and text output, image checkers pictures.
    checkers: list[str] = Field(default_factory=list)
    policy: dict[GeneratingTab, SafetyMode] = Field(default_factory=dict)
    thresholds: dict[SafetyCategory, Threshold] = Field(default_factory=dict)

    @field_validator("policy", mode="before")
    @classmethod
    def _off_is_not_false(cls, value: Any) -> Any:
        # YAML reads a bare `off` as false: `chat: off` means the policy "off".
        if isinstance(value, dict):
            return {tab: "off" if mode is False else mode for tab, mode in value.items()}
        return value

    def threshold(self, category: str) -> float:
        return self.thresholds.get(category, 0.5)  # type: ignore[call-overload]


class StudioConfig(BaseModel):
    """The whole `models.yaml`."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)
    # Memory the loaded models may take, in GB: one number for every pool, or per pool ({cpu: 12, cuda: 20});
    # the environment's STUDIO_MEMORY_BUDGET wins. Unset: 70 % of RAM, 90 % of GPU memory.
    memory_budget_gb: Gigabytes | dict[Literal["cpu", "cuda"], Gigabytes] | None = None
    # In-process generations (and loads) running at once on each device (the GPU, or the CPU); the rest wait
    # first come, first served. STUDIO_JOBS_PER_DEVICE wins. Remote (openai-chat) models never wait here.
    jobs_per_device: int = Field(default=1, ge=1, le=64)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    _path: Path = PrivateAttr(default=DEFAULT_MODELS_FILE)

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        seen: set[str] = set()
        for spec in models:
            if spec.id in seen:
                raise ValueError(f"model id {spec.id!r} is used twice")
            seen.add(spec.id)
        return models

    @property
    def path(self) -> Path:
        return self._path

    def model(self, model_id: str) -> ModelSpec:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        known = ", ".join(s.id for s in self.models)
        raise KeyError(f"unknown model {model_id!r}; known models: {known}")

    def add_model(self, spec: ModelSpec) -> None:
        """Offer one more model (a trained variant) in this process; its id must be new."""
        if any(s.id == spec.id for s in self.models):
            raise ValueError(f"model id {spec.id!r} is used twice")
        self.models.append(spec)

    def remove_model(self, model_id: str) -> bool:
        """Stop offering a model added with `add_model` (a deleted variant); False when it was not there."""
        kept = [s for s in self.models if s.id != model_id]
        removed = len(kept) != len(self.models)
        self.models[:] = kept
        return removed

    def for_tab(self, tab: str) -> list[ModelSpec]:
        return [s for s in self.models if tab in s.tabs]

    def where(self, spec: ModelSpec, field: str | None = None) -> str:
        """'models.yaml line 7: model 'x'' for error messages (the field's line when given)."""
        line = spec.line_of(field) if field else spec.line
        return f"{self._path} line {line}: model {spec.id!r}"


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


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Walk a composed YAML node along a pydantic error location, as deep as it goes."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == key]
            key_nodes = [k for k, _ in node.value if getattr(k, "value", None) == key]
            if not match:
                return node
            # Point at the key itself when the key is the problem (an unknown field).
            node = match[0] if loc[-1] != key else key_nodes[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _describe(error: Any, data: Any) -> str:
    loc = tuple(error["loc"])
    who = ""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entries = data.get("models") if isinstance(data, dict) else None
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        mid = entry.get("id") if isinstance(entry, dict) else None
        who = f"model {mid!r}" if mid else f"model #{loc[1] + 1}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "(entry)"
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    return f"{who + ': ' if who else ''}field {field!r}: {msg}"


def load_config(path: str | Path | None = None) -> StudioConfig:
    """Parse models.yaml strictly; raise ConfigError naming file, line, model and field."""
    file = Path(path) if path else DEFAULT_MODELS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read models file {file}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping with a 'models:' list at the top")
    try:
        config = StudioConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            node = _node_at(root, tuple(err["loc"]))
            line = node.start_mark.line + 1 if node is not None else 0
            lines.append(f"{file} line {line}: {_describe(err, data)}")
        raise ConfigError("invalid models file:\n  " + "\n  ".join(lines)) from None
    config._path = file
    unknown = [
        (i, name)
        for i, name in enumerate(config.safety.checkers)
        if "safety" not in next((m.tabs for m in config.models if m.id == name), [])
    ]
    if unknown:
        safety_ids = ", ".join(m.id for m in config.for_tab("safety")) or "none"
        lines = []
        for i, name in unknown:
            node = _node_at(root, ("safety", "checkers", i))
            line = node.start_mark.line + 1 if node is not None else 0
            lines.append(
                f"{file} line {line}: field 'safety.checkers.{i}': {name!r} is not a model with "
                f"tabs: [safety] (safety models: {safety_ids})"
            )
        raise ConfigError("invalid models file:\n  " + "\n  ".join(lines))
    entries = root.value if isinstance(root, yaml.MappingNode) else []
    models_node = next((v for k, v in entries if k.value == "models"), None)
    if isinstance(models_node, yaml.SequenceNode):
        for spec, node in zip(config.models, models_node.value, strict=False):
            spec._line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                spec._field_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return config
