"""Parameter validation: ranges, NaN/Inf and unknown names, with messages that state the valid range."""

from __future__ import annotations

import math

import pytest

from studio.backends import backend_class, validate_params
from studio.backends.params import ChatParams

CHAT = backend_class("transformers-chat")


def test_defaults_are_valid() -> None:
    params = validate_params(CHAT, {})
    assert isinstance(params, ChatParams) and params.max_new_tokens == 256 and params.seed is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"temperature": math.nan}, "must be a finite number"),
        ({"top_p": math.inf}, "must be a finite number"),
        ({"top_p": 1.5}, "valid: in (0.0, 1.0]"),
        ({"top_k": -1}, "valid: in [0, 1000]"),
        ({"num_beams": 9}, "valid: in [1, 8]"),
        ({"seed": -3}, "valid: in [0, 4294967295]"),
        ({"max_new_tokens": "many"}, "max_new_tokens='many'"),
        ({"system_prompt": "x" * 8001}, "at most 8000 characters"),
        ({"topp": 0.5}, "unknown parameter 'topp'"),
    ],
)
def test_bad_values_explain_the_valid_range(values: dict, expected: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_params(CHAT, values)
    assert expected in str(err.value)


def test_image_and_audio_backends_validate_their_params_too() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        validate_params(backend_class("diffusers"), {"width": 500})
    with pytest.raises(ValueError, match="duration"):
        validate_params(backend_class("musicgen"), {"duration": 0})
    with pytest.raises(ValueError, match="must be a finite number"):
        validate_params(backend_class("hibari-tts"), {"speed": math.nan})
    with pytest.raises(ValueError, match=r"duration=301: .*valid: in \(0.0, 300.0\]"):
        validate_params(backend_class("musicgen"), {"duration": 301})
