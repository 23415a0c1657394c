"""Provider profiles: model strings a prompt engineer types, mapped to LiteLLM routes and server-side credentials.

A version stores only a model string such as ``clova/HCX-005`` or ``ollama/llama3.1``. The
profile named by its prefix says which LiteLLM route serves it, at which ``api_base``, and
which environment variable holds the key. Keys are read from the environment at call time
and never stored, shown, returned or logged. Model strings without a profile prefix go to
LiteLLM as they are (``gpt-4o-mini``, ``anthropic/...``), which reads its own key variables.

Plain Python: no litellm import here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Built-in profiles; ``CHATMODEL_PROVIDERS`` adds to them or replaces them by name.
BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {
    # HyperCLOVA X through CLOVA Studio's OpenAI-compatible API (LiteLLM has no CLOVA provider).
    "clova": {
        "route": "openai",
        "api_base": "https://clovastudio.stream.ntruss.com/v1/openai",
        "api_base_env": "CLOVASTUDIO_API_BASE",
        "api_key_env": "CLOVASTUDIO_API_KEY",
    },
    # Ollama's OpenAI-compatible endpoint: the same tool-calling and streaming path as every
    # other OpenAI-compatible server (LiteLLM's native route stays available as ollama_chat/).
    "ollama": {
        "route": "openai",
        "api_base": "http://127.0.0.1:11434/v1",
        "api_base_env": "OLLAMA_API_BASE",
        "api_key_env": "OLLAMA_API_KEY",
        "key_required": False,
    },
    "vllm": {
        "route": "openai",
        "api_base": "http://127.0.0.1:8000/v1",
        "api_base_env": "VLLM_API_BASE",
        "api_key_env": "VLLM_API_KEY",
        "key_required": False,
    },
    "llamacpp": {
        "route": "openai",
        "api_base": "http://127.0.0.1:8080/v1",
        "api_base_env": "LLAMACPP_API_BASE",
        "api_key_env": "LLAMACPP_API_KEY",
        "key_required": False,
    },
    "lmstudio": {
        "route": "openai",
        "api_base": "http://127.0.0.1:1234/v1",
        "api_base_env": "LMSTUDIO_API_BASE",
        "api_key_env": "LMSTUDIO_API_KEY",
        "key_required": False,
    },
}
# OpenAI-compatible local servers accept any key, but the OpenAI client insists on one.
_PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Target:
    """Where a model string goes: the LiteLLM model, and the server-side api_base/key for it."""

    model: str  # the model string as typed (what Run.model records)
    route: str  # what LiteLLM is called with, e.g. "openai/HCX-005"
    profile: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None

    def call_kwargs(self) -> dict[str, Any]:
        """The kwargs LiteLLM gets for this target (model, api_base, api_key)."""
        kwargs: dict[str, Any] = {"model": self.route}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        return kwargs


def profiles() -> dict[str, dict[str, Any]]:
    """The built-in profiles with the site's ``CHATMODEL_PROVIDERS`` on top."""
    from django.conf import settings

    merged = {name: dict(profile) for name, profile in BUILTIN_PROVIDERS.items()}
    for name, profile in (getattr(settings, "CHATMODEL_PROVIDERS", None) or {}).items():
        if profile is None:
            merged.pop(name, None)
        else:
            merged[name] = {**merged.get(name, {}), **profile}
    return merged


def resolve(model: str, *, api_base: str | None = None) -> Target:
    """The target of a model string; ``api_base`` (a version's own setting) overrides the profile's."""
    prefix, _, rest = model.partition("/")
    profile = profiles().get(prefix) if rest else None
    if profile is None:
        return Target(model=model, route=model, api_base=api_base)
    key_env = profile.get("api_key_env")
    key = os.environ.get(key_env) if key_env else None
    if not key and not profile.get("key_required", True):
        key = _PLACEHOLDER_KEY
    base = api_base or (os.environ.get(profile["api_base_env"]) if profile.get("api_base_env") else None)
    return Target(
        model=model,
        route=f"{profile.get('route', 'openai')}/{rest}",
        profile=prefix,
        api_base=base or profile.get("api_base"),
        api_key=key,
        api_key_env=key_env,
    )


def missing_key(model: str) -> str | None:
    """The unset environment variable a model's profile needs for its key, or None."""
    prefix, _, rest = model.partition("/")
    profile = profiles().get(prefix) if rest else None
    if not profile or not profile.get("key_required", True) or not profile.get("api_key_env"):
        return None
    return None if os.environ.get(profile["api_key_env"]) else profile["api_key_env"]


def secret_values() -> list[str]:
    """Every key value the profiles can read, so error texts can be scrubbed of them."""
    values = []
    for profile in profiles().values():
        env = profile.get("api_key_env")
        value = os.environ.get(env) if env else None
        if value and value != _PLACEHOLDER_KEY and len(value) >= 4:
            values.append(value)
    return values


def model_info_table() -> dict[str, dict[str, Any]]:
    """``CHATMODEL_MODEL_INFO``: context window, max output, tools support and prices of models LiteLLM lacks."""
    from django.conf import settings

    table = getattr(settings, "CHATMODEL_MODEL_INFO", None) or {}
    return {str(k): dict(v) for k, v in table.items() if isinstance(v, Mapping)}
