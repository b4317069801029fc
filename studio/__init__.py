"""Studio: a local generative-AI creative studio (chat, image, audio, code) with a feedback library.

Public API: `Studio` (the service), `StudioError`, `Settings`, `load_config`, `ConfigError`.
Heavy libraries (torch, transformers, gradio) are imported only when a model loads or the UI is built.
"""

from studio.config import ConfigError, Settings, StudioConfig, load_config
from studio.errors import StudioError

__all__ = ["ConfigError", "Settings", "Studio", "StudioConfig", "StudioError", "load_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The service pulls in sqlmodel; keep `import studio` itself light.
    if name == "Studio":
        from studio.service import Studio

        return Studio
    raise AttributeError(name)
