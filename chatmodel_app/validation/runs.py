"""Run parameters: what a caller may set, and in which ranges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..conf import conf
from ..exceptions import InvalidParams
from ..models import Version
from .limits import json_check

# --- run parameters -------------------------------------------------------------------------------

# The fields of a run request that are not sampling parameters. Everything else a caller sends with a run
# (REST body, websocket frame) is a parameter, and must be in CHATMODEL_ALLOWED_PARAMS.
RUN_OPTIONS = frozenset({"stream", "functions", "tools"})

# Inclusive bounds of the numeric sampling parameters (the REST serializer documents them from here).
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def run_request_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling parameters of a run request: every field but ``RUN_OPTIONS``."""
    return {k: v for k, v in request.items() if k not in RUN_OPTIONS}


def params_refused(params: Iterable[Any]) -> list[str]:
    """The names in ``params`` a caller may not set (anything outside CHATMODEL_ALLOWED_PARAMS), sorted."""
    allowed = conf.ALLOWED_PARAMS
    return sorted(str(k) for k in params if k not in allowed)


def validate_run_params(params: Mapping[str, Any], version: Version) -> dict[str, Any]:
    """Check caller-given sampling params: only the allowed ones, within the version's bounds."""
    if not isinstance(params, Mapping):
        raise InvalidParams("params must be a JSON object, e.g. {'temperature': 0.7}.")
    refused = params_refused(params)
    if refused:
        raise InvalidParams(
            f"These parameters cannot be set by a caller: {', '.join(refused)}. "
            f"Allowed: {', '.join(sorted(conf.ALLOWED_PARAMS))}. "
            "The model, its URL and keys are the version's and the server's.",
            field=refused[0],
        )
    json_check(dict(params), "params", InvalidParams)
    clean = dict(params)
    for name, (low, high) in PARAM_RANGES.items():
        if name in clean and clean[name] is not None:
            value = clean[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidParams(f"{name} must be a number from {low} to {high}; got {value!r}.", field=name)
    for name in ("max_tokens", "max_completion_tokens"):
        if name in clean and clean[name] is not None:
            value = clean[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParams(f"{name} must be a positive integer; got {value!r}.", field=name)
            ceiling = version.params.get("max_tokens")
            if ceiling and value > ceiling:
                raise InvalidParams(
                    f"{name} may be at most {ceiling} (the version's max_tokens); got {value}.", field=name
                )
    if clean.get("n", 1) != 1:
        raise InvalidParams("n must be 1: a run stores one reply.", field="n")
    return clean
