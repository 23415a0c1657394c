"""chatmodel_app: host chat models in a Django site.

Importing the package is cheap: the public names are loaded on first access, so
``import chatmodel_app`` touches neither the models nor litellm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ChatModel", "ChatModelConfig", "FunctionCall", "LLMResponse", "LLMStreamResponse", "ToolCall"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import ChatModel
    from .types import ChatModelConfig, FunctionCall, LLMResponse, LLMStreamResponse, ToolCall

_LAZY = {
    "ChatModel": "chatmodel_app.client",
    "ChatModelConfig": "chatmodel_app.types",
    "FunctionCall": "chatmodel_app.types",
    "LLMResponse": "chatmodel_app.types",
    "LLMStreamResponse": "chatmodel_app.types",
    "ToolCall": "chatmodel_app.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chatmodel_app' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
