"""Configuration: `models.yaml` and the `STUDIO_*` environment, parsed once into strict typed objects.

Owns: the schema of `models.yaml` (`ModelSpec`, `StudioConfig`, `SafetyConfig`), the spec of a trained
variant that the service adds at run time (`VariantSpec`: a base plus a LoRA adapter, never in the file) and
the error a typo produces (`ConfigError`, naming the file, line, model and field). The environment's half
(`Settings`, sizes, durations) lives in settings.py and is re-exported here.
Ignores: whether a backend kind exists or accepts a default; `studio.backends.check_models` checks that,
because config must not import backends (see ARCHITECTURE's import rules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

# The environment's half (settings.py), re-exported: the rest of the studio imports these from here.
from studio.settings import DEFAULT_MODELS_FILE as DEFAULT_MODELS_FILE
from studio.settings import ENV_FORMS as ENV_FORMS
from studio.settings import GB as GB
from studio.settings import MB as MB
from studio.settings import POOLS as POOLS
from studio.settings import ConfigError as ConfigError
from studio.settings import Pool as Pool
from studio.settings import Settings as Settings
from studio.settings import parse_budget as parse_budget
from studio.settings import parse_duration as parse_duration
from studio.settings import parse_size as parse_size

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
Gigabytes = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


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
