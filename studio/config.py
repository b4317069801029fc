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

# "scorer" is not a tab of its own: it marks reward models (backend transformers-reward) that Best of n in
# Chat and Code picks an answer with.
Tab = Literal["chat", "code", "image", "speech", "music", "scorer"]
TABS: tuple[str, ...] = ("chat", "code", "image", "speech", "music", "scorer")

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

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\+[a-z]+-[0-9]+$")
    base: str  # the id of the models.yaml entry whose weights it shares
    method: str
    run_id: int


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
}
_WHOLE = re.compile(r"[0-9]+")


def _whole(raw: str, low: int, high: int | None = None) -> int:
    if not _WHOLE.fullmatch(raw) or int(raw) < low or (high is not None and int(raw) > high):
        raise ValueError
    return int(raw)


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
        )
        if errors:
            raise ConfigError("\n".join(errors))
        return settings

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


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
    entries = root.value if isinstance(root, yaml.MappingNode) else []
    models_node = next((v for k, v in entries if k.value == "models"), None)
    if isinstance(models_node, yaml.SequenceNode):
        for spec, node in zip(config.models, models_node.value, strict=False):
            spec._line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                spec._field_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return config
