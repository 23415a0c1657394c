"""Version fields (admin forms, import, services.versions), A/B ratios, and credentials in params."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..conf import conf
from ..exceptions import InvalidParams
from ..models import Version
from .limits import json_check, text_check
from .runs import validate_run_params
from .tools import validate_tools
from .variables import variables_declarations_clean

# --- versions (admin forms, import, services.versions) --------------------------------------------

# The fields that make up what a version says and does (everything but its identity and publication).
VERSION_FIELDS = (
    "system_prompt",
    "model",
    "params",
    "tools",
    "memo",
    "tags",
    "truncation",
    "truncation_last_messages",
    "context_window",
    "summary_model",
    "fallbacks",
    "variables",
)
_TRUNCATIONS = tuple(Version.Truncation.values)
# Provider keys come from the server's environment, never from the database (DESIGN.md).
SECRET_PARAMS = frozenset(
    {
        "api_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "azure_ad_token",
        "vertex_credentials",
        "token",
        "password",
    }
)
# A param, header or body field whose name has one of these words ("x-api-key", "access_token", "Authorization")
# carries a credential. Whole words, so "max_tokens" or "top_k" are not taken for one.
_SECRET_WORDS = frozenset(
    {
        *("key", "apikey", "token", "secret", "password", "passwd"),
        *("authorization", "auth", "credential", "credentials", "cookie", "bearer"),
    }
)
# Params whose keys are sent as HTTP headers, body fields or query parameters: their names are checked too.
_NESTED_PARAMS = frozenset({"extra_headers", "headers", "default_headers", "extra_body", "extra_query"})
# What a stored or shown copy of params has in place of a credential.
REDACTED = "[redacted]"


def is_secret_param(name: Any) -> bool:
    """Whether a param (or a header or body field it sends) named ``name`` carries a credential."""
    text = str(name).lower()
    return text in SECRET_PARAMS or bool(_SECRET_WORDS.intersection(re.split(r"[^a-z0-9]+", text)))


def secret_param_paths(params: Mapping[str, Any]) -> list[str]:
    """The credential-carrying entries of ``params`` (``api_key``, ``extra_headers.Authorization``), sorted."""
    found = [str(k) for k in params if is_secret_param(k)]
    for name in _NESTED_PARAMS:
        nested = params.get(name)
        if isinstance(nested, Mapping):
            found += [f"{name}.{k}" for k in nested if is_secret_param(k)]
    return sorted(found)


def params_redacted(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` fit to store or show: every credential-carrying value replaced."""
    clean = {k: REDACTED if is_secret_param(k) else v for k, v in params.items()}
    for name in _NESTED_PARAMS:
        nested = clean.get(name)
        if isinstance(nested, Mapping):
            clean[name] = {k: REDACTED if is_secret_param(k) else v for k, v in nested.items()}
    return clean


SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


def version_params_validate(params: Any) -> dict[str, Any]:
    """Check a version's params: a JSON object, sampling values in range, and no API keys."""
    if not isinstance(params, Mapping):
        raise InvalidParams('params must be a JSON object, e.g. {"temperature": 0.7, "max_tokens": 512}.')
    json_check(dict(params), "params", InvalidParams)
    secrets = secret_param_paths(params)
    if secrets:
        raise InvalidParams(
            f"params must not hold provider keys ({', '.join(secrets)}): keys, tokens and auth headers come from the "
            "server's environment, never from the database."
        )
    # The caller-facing check knows the ranges; a blank version puts no ceiling on max_tokens.
    validate_run_params({k: v for k, v in params.items() if k in conf.ALLOWED_PARAMS}, Version(params={}))
    return dict(params)


def _positive_int_or_none(name: str, value: Any) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParams(f"{name} must be a positive whole number or empty; got {value!r}.")
    return value


def _string_list(name: str, value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{name} must be a list of strings; got {value!r}.")
    for v in value:
        text_check(v, name, InvalidParams)
    return [v.strip() for v in value if v.strip()]


def version_field_clean(name: str, value: Any) -> Any:
    """Validate one version field; return its clean value or raise InvalidParams with a readable message."""
    if name in ("system_prompt", "memo", "summary_model"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidParams(f"{name} must be text; got {type(value).__name__}.")
        text_check(value, name, InvalidParams)
        return value.strip() if name == "summary_model" else value
    if name == "model":
        if not isinstance(value, str) or not value.strip():
            raise InvalidParams("model is required: a LiteLLM model string such as 'gpt-4o-mini' or 'offline/demo'.")
        if len(value.strip()) > 200:
            raise InvalidParams("model must be at most 200 characters.")
        text_check(value, name, InvalidParams)
        return value.strip()
    if name == "params":
        return version_params_validate({} if value is None else value)
    if name == "tools":
        if value in (None, ""):
            return []
        # One schema pasted on its own is as good as a list of one.
        return validate_tools(tools=[value] if isinstance(value, Mapping) else value)
    if name in ("tags", "fallbacks"):
        return _string_list(name, value)
    if name == "truncation":
        if value not in _TRUNCATIONS:
            raise InvalidParams(f"truncation must be one of {', '.join(_TRUNCATIONS)}; got {value!r}.")
        return value
    if name in ("truncation_last_messages", "context_window"):
        return _positive_int_or_none(name, value)
    if name == "variables":
        return variables_declarations_clean(value)
    raise InvalidParams(f"{name} is not a version field (fields: {', '.join(VERSION_FIELDS)}).")


def version_fields_clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the given version fields (any subset of VERSION_FIELDS); return clean copies."""
    clean = {name: version_field_clean(name, value) for name, value in fields.items()}
    if clean.get("truncation") == Version.Truncation.LAST_MESSAGES and "truncation_last_messages" in clean:
        check_truncation(clean["truncation"], clean["truncation_last_messages"])
    return clean


def check_truncation(truncation: str | None, last_messages: int | None) -> None:
    """Truncation ``last_messages`` needs its N."""
    if truncation == Version.Truncation.LAST_MESSAGES and not last_messages:
        raise InvalidParams("truncation 'last_messages' needs truncation_last_messages: how many messages to keep.")


def ratios_clean(ratios: Mapping[Any, Any]) -> dict[int, float]:
    """Check the A/B ratios of a publish: version number -> a positive finite weight."""
    if not ratios:
        raise InvalidParams("Choose at least one version to publish.")
    clean: dict[int, float] = {}
    for number, ratio in ratios.items():
        try:
            n = int(number)
        except (TypeError, ValueError):
            raise InvalidParams(f"{number!r} is not a version number.") from None
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio <= 0:
            raise InvalidParams(
                f"The A/B ratio of v{n} must be a positive number; got {ratio!r}. "
                "To stop serving a version, unpublish it."
            )
        clean[n] = float(ratio)
    return clean
