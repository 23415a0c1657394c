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


# Credential variables LiteLLM reads whose names the suffix rule below misses.
LITELLM_CREDENTIAL_VARS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AZURE_CREDENTIAL",
        "GIGACHAT_CREDENTIALS",
        "VERTEXAI_CREDENTIALS",
        "VERTEX_CREDENTIALS",
        "WATSONX_APIKEY",
        "WATSONX_ZENAPIKEY",
    }
)
_CREDENTIAL_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "APIKEY", "_CREDENTIALS", "_ACCESS_KEY_ID")
# Shorter values ("1", "true") are settings, not keys, and replacing them would garble error texts.
_MIN_SECRET_LENGTH = 8


def is_credential_var(name: str) -> bool:
    """Whether an environment variable holds a credential: LiteLLM's key variables and anything named like one."""
    upper = name.upper()
    return upper in LITELLM_CREDENTIAL_VARS or upper.endswith(_CREDENTIAL_SUFFIXES) or "PASSWORD" in upper


def secret_values() -> list[str]:
    """Every credential value the server holds, longest first, so error texts can be scrubbed of them.

    That is the profiles' key variables, every variable LiteLLM reads a credential from (``OPENAI_API_KEY``,
    ``ANTHROPIC_API_KEY``, ``AZURE_API_KEY``, ... all end in ``_KEY``, ``_TOKEN`` or ``_SECRET``), any
    variable named like a credential, and keys set on the litellm module.
    """
    profile_vars = {name for profile in profiles().values() if (name := profile.get("api_key_env"))}
    # A profile's key is a key whatever its length; elsewhere a short value is a setting.
    values = {v for v in (os.environ.get(name) for name in profile_vars) if v and len(v) >= 4}
    values.update(v for name, v in os.environ.items() if is_credential_var(name) and len(v) >= _MIN_SECRET_LENGTH)
    import sys

    litellm = sys.modules.get("litellm")  # only if loaded: reading the module must not import it
    for attr in ("api_key", "openai_key", "anthropic_key", "azure_key", "cohere_key", "replicate_key"):
        value = getattr(litellm, attr, None) if litellm is not None else None
        if isinstance(value, str) and len(value) >= 4:
            values.add(value)
    found = [v for v in values if v != _PLACEHOLDER_KEY]
    return sorted(found, key=len, reverse=True)


def model_info_table() -> dict[str, dict[str, Any]]:
    """``CHATMODEL_MODEL_INFO``: context window, max output, tools support and prices of models LiteLLM lacks."""
    from django.conf import settings

    table = getattr(settings, "CHATMODEL_MODEL_INFO", None) or {}
    return {str(k): dict(v) for k, v in table.items() if isinstance(v, Mapping)}
