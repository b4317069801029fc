"""The Sampling panel's values as API callers send them: one constant for every test and helper.

Owns: `SAMPLING_NAMES` (the panel's order, studio.ui.conversation.PARAM_NAMES, checked by
tests/test_ui_api.py), `SAMPLING` (greedy, 16 new tokens, no seed) and `sampling(**changes)` for a variant.
Ignores: the models; imports nothing heavy (tests/helpers/api_clients.py runs it in a bare process).
"""

from __future__ import annotations

from typing import Any

SAMPLING_NAMES = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "max_new_tokens",
    "num_beams",
    "seed",
    "min_p",
    "typical_p",
    "prompt_lookup_num_tokens",
)
_DEFAULTS: dict[str, Any] = {
    "do_sample": False,
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 50,
    "repetition_penalty": 1.0,
    "max_new_tokens": 16,
    "num_beams": 1,
    "seed": None,
    "min_p": 0.0,
    "typical_p": 1.0,
    "prompt_lookup_num_tokens": 0,
}


def sampling(**changes: Any) -> list[Any]:
    """The panel's values in order, with `changes` (by name) applied; an unknown name is a KeyError."""
    unknown = set(changes) - set(SAMPLING_NAMES)
    if unknown:
        raise KeyError(f"not a Sampling value: {sorted(unknown)}")
    return [changes.get(name, _DEFAULTS[name]) for name in SAMPLING_NAMES]


SAMPLING = sampling()  # do_sample .. seed, as the Sampling panel sends them

# The Best of n row that follows the Sampling panel in Chat and Code: one candidate, no scorer (the dropdown's
# `studio.ui.best_of.NO_SCORER`). Raw HTTP callers of the queue send every input, so they send these too.
BEST_OF_OFF: list[Any] = [1, "(no scorer)"]
