"""transformers-chat's `options:` checked at start-up (fast, no model): int8 only on the CPU, unknown values
of `quantize` and `prefix_cache` refused with the model and field."""

from __future__ import annotations

import pytest

from studio.backends import check_models
from studio.config import ConfigError, StudioConfig


def test_int8_on_a_gpu_and_unknown_options_are_refused_at_start_up() -> None:
    config = StudioConfig.model_validate(
        {
            "models": [
                {"id": "a", "tabs": ["chat"], "backend": "transformers-chat", "source": "x/y",
                 "device": "cuda", "options": {"quantize": "int8"}},
                {"id": "b", "tabs": ["chat"], "backend": "transformers-chat", "source": "x/y",
                 "options": {"quantize": "int4", "prefix_cache": "maybe"}},
            ]
        }
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        check_models(config)
    text = str(err.value)
    assert "quantize: int8 runs on the CPU only" in text
    assert (
        "quantize: Input should be 'int8'" in text and "prefix_cache: Input should be a valid boolean" in text
    )
