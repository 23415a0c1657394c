"""Tools and functions: their shape and their JSON Schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import InvalidParams
from .limits import MAX_TOOLS_CHARS, _field, json_check, keys_check

# --- tools and functions --------------------------------------------------------------------------

_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def normalise_tools(functions: Any = None, tools: Any = None) -> list[dict[str, Any]]:
    """Merge legacy ``functions`` and modern ``tools`` into validated OpenAI tool objects."""
    out: dict[str, dict[str, Any]] = {}
    total = 0
    for label, items in (("functions", functions), ("tools", tools)):
        if items is None:
            continue
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise InvalidParams(f"{label} must be a list of JSON schemas.", field=label)
        for i, item in enumerate(items):
            # validate_tool bounds each schema's depth and size first, so json.dumps is safe and cheap here.
            tool = validate_tool(item, f"{label}[{i}]")
            total += len(json.dumps(tool))
            if total > MAX_TOOLS_CHARS:
                raise InvalidParams(
                    f"functions and tools together are larger than {MAX_TOOLS_CHARS} characters as JSON.", field=label
                )
            out[tool["function"]["name"]] = tool
    return list(out.values())


def validate_tool(item: Any, where: str = "tool") -> dict[str, Any]:
    """Check one function schema (bare, or wrapped as ``{"type": "function", "function": ...}``)."""
    field = _field(where)
    json_check(item, where, InvalidParams)
    if not isinstance(item, Mapping):
        raise InvalidParams(f"{where} must be a dict (an OpenAI function schema).", field=field)
    if "type" in item and item["type"] != "function":
        raise InvalidParams(f"{where}.type must be 'function'; got {item['type']!r}.", field=field)
    if "function" in item or item.get("type") == "function":
        function = item.get("function")
        where = f"{where}.function"
    else:
        function = item
    if not isinstance(function, Mapping):
        raise InvalidParams(f"{where} must be a dict with 'name', 'description' and 'parameters'.", field=field)
    name = function.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise InvalidParams(f"{where}.name must be 1-64 letters, digits, '_' or '-'; got {name!r}.", field=field)
    description = function.get("description", "")
    if not isinstance(description, str):
        raise InvalidParams(f"{where}.description must be a string.", field=field)
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
        raise InvalidParams(f"{where}.parameters must be a JSON schema object: {{'type': 'object', ...}}.", field=field)
    properties = parameters.get("properties", {})
    if not isinstance(properties, Mapping) or not all(isinstance(v, Mapping) for v in properties.values()):
        raise InvalidParams(f"{where}.parameters.properties must map each argument name to a schema dict.", field=field)
    required = parameters.get("required", [])
    if not isinstance(required, Sequence) or isinstance(required, str) or not all(r in properties for r in required):
        raise InvalidParams(f"{where}.parameters.required must list names defined in properties.", field=field)
    keys_check(function, _FUNCTION_KEYS, where, InvalidParams)
    clean: dict[str, Any] = {"name": name, "parameters": dict(parameters)}
    if description:
        clean["description"] = description
    if "strict" in function:
        clean["strict"] = bool(function["strict"])
    return {"type": "function", "function": clean}


def json_schemas_check(tools: Sequence[Mapping[str, Any]], *, field: str = "tools") -> None:
    """Each tool's ``parameters`` must be a valid JSON Schema, or the provider refuses the whole call."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    for tool in tools:
        function = tool["function"]
        parameters = function["parameters"]
        try:
            validator_for(parameters, default=Draft202012Validator).check_schema(parameters)
        except SchemaError as exc:
            raise InvalidParams(
                f"{function['name']}.parameters is not a valid JSON Schema: {exc.message}", field=field
            ) from None


def validate_tools(functions: Any = None, tools: Any = None) -> list[dict[str, Any]]:
    """``normalise_tools`` plus the JSON Schema check of each tool's parameters: what a run may be offered."""
    checked = normalise_tools(functions, tools)
    function_names = {(f.get("function") or f).get("name") for f in functions or () if isinstance(f, Mapping)}
    for tool in checked:
        field = "functions" if tool["function"]["name"] in function_names else "tools"
        json_schemas_check([tool], field=field)
    return checked
