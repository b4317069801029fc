"""Input validation shared by every caller (browser, API, CLI): one place, on the server.

Owns: resolving a model id for a tab, refusing at once a model whose weights are not on this machine (with
the pull command, before a row, a place in the line or a Hub lookup), merging and validating parameters
against the backend's Params (recording a random seed when none was given) and checking prompts.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from studio import sources
from studio.backends import Params, backend_class, validate_params
from studio.config import ModelSpec, StudioConfig
from studio.errors import StudioError

MAX_PROMPT_CHARS = 100_000

# Per-tab defaults layered over a model's own: code wants a cool, focused sampler.
TAB_DEFAULTS: dict[str, dict[str, Any]] = {"code": {"temperature": 0.2, "top_p": 0.95}}


def model_for(config: StudioConfig, model_id: str, tab: str | None) -> ModelSpec:
    try:
        spec = config.model(model_id)
    except KeyError as exc:
        raise StudioError(exc.args[0]) from None
    if tab is not None and tab not in spec.tabs:
        serves = ", ".join(spec.tabs)
        raise StudioError(f"model {model_id!r} does not serve the {tab} tab (it serves {serves})")
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
    except ValueError as exc:
        raise StudioError(f"invalid parameters: {exc}") from None
    if getattr(validated, "seed", "absent") is None:
        # Record the seed actually used, so any answer can be reproduced.
        validated = validated.model_copy(update={"seed": random.randrange(2**31)})
    return validated


def prompt_text(message: Any) -> str:
    if not isinstance(message, str):
        raise StudioError("the message must be text")
    if not message.strip():
        raise StudioError("the message is empty; type something to send")
    if len(message) > MAX_PROMPT_CHARS:
        raise StudioError(f"the message is {len(message)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return message
