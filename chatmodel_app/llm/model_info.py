"""What the app knows of a model: offline or not, its context window, its token counts, the known list."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import providers
from ._litellm import get_litellm
from .offline import PROVIDER as OFFLINE_PROVIDER
from .offline import estimate_tokens


def is_offline(model: str) -> bool:
    """Whether ``model`` is served by the offline demo provider."""
    return model.split("/", 1)[0] == OFFLINE_PROVIDER


_OFFLINE_CONTEXT_WINDOW = 32768


def context_window(model: str, default: int) -> int:
    """The model's max input tokens as LiteLLM knows it, else ``default``."""
    if is_offline(model):
        return _OFFLINE_CONTEXT_WINDOW
    litellm = get_litellm()
    register_model_info()
    try:
        info = litellm.get_model_info(providers.resolve(model).route)
    except Exception:  # litellm raises several unrelated types for unknown models
        return default
    return int(info.get("max_input_tokens") or info.get("max_tokens") or default)


_registered: dict[str, Any] | None = None


def register_model_info() -> None:
    """Tell LiteLLM what ``CHATMODEL_MODEL_INFO`` says of models it does not know (window, prices, tools)."""
    global _registered
    table = providers.model_info_table()
    if table == _registered:
        return
    litellm = get_litellm()
    entries = {}
    for model, info in table.items():
        route = providers.resolve(model).route
        entry = {"mode": "chat", "litellm_provider": route.split("/", 1)[0] if "/" in route else "openai", **info}
        entries[route] = entry
    if entries:
        litellm.register_model(entries)
    _registered = table


def count_tokens(
    model: str,
    *,
    text: str | None = None,
    messages: Sequence[Mapping] | None = None,
    tools: Sequence[Mapping] | None = None,
) -> int:
    """Tokens in a text, messages or tool schemas for ``model`` (an estimate for unknown models)."""
    if text is None and messages is None and tools is None:
        return 0
    if is_offline(model):
        total = estimate_tokens(text) if text is not None else 0
        for message in messages or ():
            total += 3 + estimate_tokens(json.dumps(message, default=str))
        if tools:
            total += estimate_tokens(json.dumps(list(tools)))
        return total
    litellm = get_litellm()
    try:
        if text is not None:
            return int(litellm.token_counter(model=model, text=text))
        count = 0
        if messages:
            count += int(litellm.token_counter(model=model, messages=list(messages)))
        if tools:
            count += int(litellm.token_counter(model=model, text=json.dumps(list(tools))))
        return count
    except Exception:  # a tokenizer we cannot load must not fail a run: estimate
        payload = text if text is not None else json.dumps([*(messages or ()), *(tools or ())], default=str)
        return estimate_tokens(payload)


_known_models: list[str] | None = None


def known_models() -> list[str]:
    """The offline demo model, then every chat model LiteLLM knows, sorted (imports litellm on first call)."""
    global _known_models
    if _known_models is None:
        from .offline import MODEL as OFFLINE_MODEL

        names = {
            name
            for name, info in get_litellm().model_cost.items()
            if isinstance(info, dict) and info.get("mode") == "chat" and name != "sample_spec"
        }
        _known_models = [OFFLINE_MODEL, *sorted(names - {OFFLINE_MODEL})]
    return list(_known_models)
