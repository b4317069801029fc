"""Input validation shared by every caller (browser, API, CLI): one place, on the server.

Owns: resolving a model id for a tab, refusing at once a model whose weights are not on this machine (with
the pull command, before a row, a place in the line or a Hub lookup), merging and validating parameters
against the backend's Params (recording a random seed when none was given), the deployment's and the
model's limits on `max_new_tokens` (STUDIO_MAX_NEW_TOKENS; the context in the model's config.json), ids
(`whole_id`: a whole number in the database's range) and checking prompts (text, not too long, storable:
no lone surrogates).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from studio import sources
from studio.backends import Params, backend_class, validate_params
from studio.config import ModelSpec, StudioConfig
from studio.errors import StudioError, quote

MAX_PROMPT_CHARS = 100_000
MAX_ID = 2**63 - 1  # the database's integer range

# Per-tab defaults layered over a model's own: code wants a cool, focused sampler.
TAB_DEFAULTS: dict[str, dict[str, Any]] = {"code": {"temperature": 0.2, "top_p": 0.95}}


def model_for(config: StudioConfig, model_id: str, tab: str | None) -> ModelSpec:
    if not isinstance(model_id, str) or len(model_id) > 200:  # no id is that long: never echo it whole
        raise StudioError(f"unknown model {quote(model_id)}")
    try:
        spec = config.model(model_id)
    except KeyError as exc:
        raise StudioError(exc.args[0]) from None
    if tab is not None and tab not in spec.tabs:
        serves = ", ".join(spec.tabs)
        raise StudioError(f"model {quote(model_id)} does not serve the {tab} tab (it serves {serves})")
    return spec


def weights_status(spec: ModelSpec, *, cache: Path, base_dir: Path) -> str:
    """ready / not downloaded / missing for local weights; 'remote' for a model on a server.

    A backend may answer for itself with a `weights_status(spec)` classmethod: test doubles, whose
    weights are no files, do."""
    cls = backend_class(spec.backend)
    if getattr(cls, "remote", False):
        return "remote"
    own = getattr(cls, "weights_status", None)
    if own is not None:
        return str(own(spec))
    return sources.status(spec, cache=cache, base_dir=base_dir)


def require_weights(spec: ModelSpec, *, cache: Path, base_dir: Path) -> None:
    """Refuse a model whose weights are not here, at once and with the fix.

    Without this a run would queue, begin a row and let the library look for the weights: offline that
    fails after about 30 s of Hub retries with a misleading "no file named model_index.json" tail."""
    state = weights_status(spec, cache=cache, base_dir=base_dir)
    if state == "not downloaded":
        raise StudioError(sources.not_available(spec))
    if state == "missing":
        raise StudioError(
            f"model {spec.id!r}: its local source {spec.source} does not exist; fix models.yaml"
        )


def params_for(spec: ModelSpec, params: dict[str, Any] | None, tab: str | None = None) -> Params:
    """Model defaults overlaid with the caller's values, validated; a blank seed becomes a real one."""
    if params is not None and not isinstance(params, dict):
        raise StudioError("params must be a mapping of parameter names to values")
    try:
        values = {**spec.defaults, **TAB_DEFAULTS.get(tab or "", {}), **(params or {})}
        validated = validate_params(backend_class(spec.backend), values)
        own_check = getattr(backend_class(spec.backend), "check_params", None)
        if own_check is not None:  # a backend's rules that need the spec (hibari's one voice)
            own_check(spec, validated)
    except ValueError as exc:
        raise StudioError(f"invalid parameters: {exc}") from None
    if getattr(validated, "seed", "absent") is None:
        # Record the seed actually used, so any answer can be reproduced.
        validated = validated.model_copy(update={"seed": random.randrange(2**31)})
    return validated


def prompt_text(message: Any) -> str:
    if not isinstance(message, str):
        raise StudioError(f"the message must be text, not {type(message).__name__}")
    if len(message) > MAX_PROMPT_CHARS:  # by size first: nothing else looks at a huge value
        raise StudioError(f"the message is {len(message)} characters long; the limit is {MAX_PROMPT_CHARS}")
    if not message.strip():
        raise StudioError("the message is empty; type something to send")
    return storable(message, "the message")


def storable(text: str, what: str) -> str:
    """Refuse text the database cannot store: a lone surrogate (such as '\\ud800', which JSON allows) has
    no UTF-8 form, and the driver's own error would name neither the field nor the fix."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        raise StudioError(
            f"{what} holds a lone surrogate character (U+{bad:04X}) that cannot be stored; remove it"
        ) from None
    return text


def whole_id(value: Any, what: str = "id") -> int:
    """An id from outside: a whole number from 1 to the database's limit (a float such as 1.5 is refused,
    not rounded; 1e308 is refused, not passed to the driver)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudioError(f"the {what} must be a whole number, not {quote(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise StudioError(f"the {what} must be a whole number, not {quote(value)}")
    if not 1 <= value <= MAX_ID:
        raise StudioError(f"the {what} {quote(value)} is out of range (1 to {MAX_ID})")
    return int(value)


def context_tokens(spec: ModelSpec, *, cache: Path, base_dir: Path) -> int | None:
    """A local transformers model's context length from its config.json, read without loading it; None
    when not known here (a Hub id, a GGUF file not converted yet, a remote server)."""
    try:
        source = sources.parse_source(spec.source, base_dir)
    except (sources.SourceError, ValueError):
        return None
    folders = [cache / spec.id / "converted"]
    if isinstance(source, sources.LocalSource):
        folders.insert(0, source.path)
    for folder in folders:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        config = config.get("text_config", config) if isinstance(config, dict) else {}
        for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
            if isinstance(config.get(key), int) and config[key] > 0:
                return int(config[key])
    return None


def token_limits(validated: Params, *, cap: int | None, context: int | None) -> None:
    """Refuse `max_new_tokens` above this deployment's cap or beyond the model's context, before a row."""
    wanted = getattr(validated, "max_new_tokens", None)
    if not isinstance(wanted, int):
        return
    if cap is not None and wanted > cap:
        raise StudioError(
            f"max_new_tokens={wanted} is above this studio's cap of {cap} (STUDIO_MAX_NEW_TOKENS); ask for "
            f"at most {cap}"
        )
    if context is not None and wanted >= context:
        raise StudioError(
            f"max_new_tokens={wanted} does not fit the model's context of {context} tokens (the prompt "
            f"needs room too); ask for fewer"
        )
