"""The UI handlers' entry: every event's raw input values, checked by size and type before anything else.

Owns: `guard_inputs(app)`, which makes the app check each event's raw values (as a browser, gradio_client
or a hand-written HTTP request sent them) against the kind of its input component, before Gradio's own
processing (a Textbox turns a list into the text "['x']", a Slider reads true as 1) and before any handler
runs: first by size (a value over MAX_FIELD_CHARS is refused without being read further or quoted), then
by type (text for text fields, a number but not true/false for sliders and numbers, true/false for check
boxes, a list for checkbox groups), then text the database cannot store (a lone surrogate). Every event is
covered, named or not, the ones added later too: the rules follow the component, not the endpoint.
The refusal is a `gr.Error` with a short message naming the field (at most QUOTE_CHARS of the value), and
one log line, no traceback.
Ignores: ranges and meanings (the service's checks, which callers other than the UI go through too).
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import gradio as gr

from studio.service import StudioError
from studio.service.checks import quote, storable

log = logging.getLogger(__name__)

# The largest text one field may carry: above every limit the service states itself (prompts 100,000
# characters), so those keep their own messages; anything bigger is refused here, unread.
MAX_FIELD_CHARS = 200_000
MAX_ITEMS = 1_000  # items in one list value (a checkbox group has a handful)

_SKIPPED = ("State",)  # Gradio uses the value the server holds, never the one sent


class Refused(ValueError):
    """One input value of an event, refused with a message for the caller."""


def guard_inputs(app: gr.Blocks) -> None:
    """Check every event's raw input values before Gradio processes them (see the module docstring)."""
    validate = app.validate_inputs  # Gradio's own check of the count, run first in preprocess_data

    def checked(block_fn: Any, inputs: list[Any]) -> None:
        try:
            if not isinstance(inputs, list):
                raise Refused("the input values must be a list")
            check_inputs(
                block_fn.inputs, inputs, _parameter_names(block_fn)
            )  # first: Gradio's own messages quote every value whole
            if len(inputs) < len(block_fn.inputs):
                raise Refused(f"this call needs {len(block_fn.inputs)} input values, not {len(inputs)}")
        except Refused as exc:
            log.warning("refused a call of %s: %s", block_fn.api_name or block_fn.name, exc)
            raise gr.Error(str(exc), print_exception=False) from None
        validate(block_fn, inputs)

    app.validate_inputs = checked  # type: ignore[method-assign]


def _parameter_names(block_fn: Any) -> list[str]:
    """The handler's parameter names, which name a gr.api endpoint's inputs (its components are "1st"...)."""
    try:
        parameters = inspect.signature(block_fn.fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if "Request" not in str(p.annotation)]


def check_inputs(components: list[Any], values: list[Any], names: list[str] | None = None) -> None:
    """Refuse the first value that is too big or of the wrong type for its component."""
    for place, (component, value) in enumerate(zip(components, values, strict=False), start=1):
        kind = type(component).__name__
        if kind in _SKIPPED:
            continue
        named = kind == "Api" and names is not None and place <= len(names)
        what = repr(names[place - 1]) if named and names else _name(component, place)
        _check_size(value, what)
        _check_type(component, kind, value, what)
        _check_storable(value, what)


def _name(component: Any, place: int) -> str:
    label = getattr(component, "label", None)
    return f"{label!r}" if isinstance(label, str) and label else f"input {place}"


def _check_size(value: Any, what: str) -> None:
    """By size before anything else: a string's length, a list's items, without reading them."""
    if isinstance(value, (str, bytes)) and len(value) > MAX_FIELD_CHARS:
        raise Refused(f"{what} is {len(value):,} characters long; the limit is {MAX_FIELD_CHARS:,}")
    if isinstance(value, (list, dict)):
        if len(value) > MAX_ITEMS:
            raise Refused(f"{what} has {len(value):,} items; the limit is {MAX_ITEMS:,}")
        for item in value.values() if isinstance(value, dict) else value:
            _check_size(item, what)


def _kind_of(component: Any, kind: str) -> str | None:
    """string / number / boolean / array for the components whose values are those; None: not checked
    here (uploads and the like have Gradio's own data models)."""
    if kind in ("Textbox", "Code"):
        return "string"
    if kind in ("Slider", "Number"):
        return "number"
    if kind == "Checkbox":
        return "boolean"
    if kind == "CheckboxGroup" or (kind == "Dropdown" and getattr(component, "multiselect", False)):
        return "array"
    if kind in ("Dropdown", "Radio"):
        return "choice"
    if kind == "Api":  # a gr.api endpoint's parameter: its type hint
        try:
            info = component.api_info()
        except Exception:  # no schema: nothing to check against
            return None
        return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean"}.get(
            str(info.get("type")) if isinstance(info, dict) else ""
        )
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_name(value: Any) -> str:
    names = {bool: "true/false", list: "a list", dict: "an object", str: "text", type(None): "nothing"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _check_type(component: Any, kind: str, value: Any, what: str) -> None:
    wanted = _kind_of(component, kind)
    if wanted is None or value is None:
        return  # None: an empty field, which each handler answers itself
    if wanted == "string" and not isinstance(value, str):
        raise Refused(f"{what} must be text, not {_type_name(value)}")
    if wanted == "number" and not _number(value):
        if isinstance(value, float):
            raise Refused(f"{what} must be a finite number, not {quote(value)}")
        raise Refused(f"{what} must be a number, not {_type_name(value)}")
    if wanted == "boolean" and not isinstance(value, bool):
        raise Refused(f"{what} must be true or false, not {_type_name(value)}")
    if wanted == "array":
        if not isinstance(value, list):
            raise Refused(f"{what} must be a list of choices, not {_type_name(value)}")
        for item in value:
            if not (isinstance(item, str) or _number(item)):
                raise Refused(f"{what}'s choices must be text, not {_type_name(item)}")
    if wanted == "choice" and not (isinstance(value, str) or _number(value)):
        raise Refused(f"{what} must be one of its choices, not {_type_name(value)}")


def _check_storable(value: Any, what: str) -> None:
    """A lone surrogate ('\\ud800', which JSON allows) has no UTF-8 form: the database driver would fail
    with its own words after a row began."""
    if isinstance(value, str):
        try:
            storable(value, what)
        except StudioError as exc:
            raise Refused(str(exc)) from None
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, what)
