"""Every rule on input, written once and used by every front door.

REST serializers, the websocket consumer, the Python API (through ``services``) and the admin forms
all call these functions, so one bad input gets the same error code whichever door it came through.
Each function raises ``InvalidParams`` or ``InvalidMessages`` (with ``field`` set when one request
field is at fault); doors tell errors apart by that type or its ``code``, never by the wording.

Pure checks: no ORM query, no litellm. ``models`` is imported only for ``Version`` (its params and
truncation choices).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .conf import conf
from .exceptions import ChatModelError, InvalidMessages, InvalidParams
from .llm.messages import ALL_ROLES, PYTHON_ROLES, RESULT_ROLES
from .models import Version

# --- limits on any JSON a caller sends ------------------------------------------------------------
# Checked before any other rule, any JSON Schema validation or any rendering: a deeply nested value
# makes recursive code (jsonschema, json.dumps, templates) slow or crash with RecursionError.

# How deep a caller's JSON may nest (a tool's parameters schema, message metadata, tool arguments).
MAX_JSON_DEPTH = 32
# Serialized size of one tool schema, one message's metadata, or one call's arguments, in characters.
MAX_JSON_CHARS = 64_000
# Size of all of a run's functions and tools together.
MAX_TOOLS_CHARS = 256_000


def _at(where: str, text: str) -> str:
    """``text`` about the value at ``where``; a serializer field that already names it passes ``""``."""
    return f"{where}: {text}" if where else text[:1].upper() + text[1:]


def text_check(value: str, where: str, error: type[ChatModelError]) -> None:
    """Refuse NUL (U+0000) and lone surrogates: PostgreSQL cannot store the one, UTF-8 cannot encode the other."""
    if "\x00" in value:
        raise error(_at(where, "contains a NUL character (U+0000), which cannot be stored."), field=_field(where))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(
            _at(where, "contains a lone surrogate (half of a UTF-16 pair), which is not valid text."),
            field=_field(where),
        ) from None


def json_check(
    value: Any,
    where: str,
    error: type[ChatModelError],
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_chars: int | None = MAX_JSON_CHARS,
) -> None:
    """Bound a JSON value's nesting depth and size, and check every string and key in it with ``text_check``.

    Walks the value without recursion (so any depth is safe) and raises ``error`` at the first fault.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    chars = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                raise error(_at(where, f"nested more than {max_depth} levels deep."), field=_field(where))
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise error(_at(where, f"has a key that is not a string: {key!r}."), field=_field(where))
                    text_check(key, f"{where} (a key)" if where else "a key", error)
                    chars += len(key) + 4
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
            chars += 2
        elif isinstance(item, str):
            text_check(item, where, error)
            chars += len(item) + 2
        elif item is None or isinstance(item, bool | int):
            chars += 5
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(_at(where, f"holds {item!r}, which is not valid JSON."), field=_field(where))
            chars += 8
        else:
            raise error(_at(where, f"holds a {type(item).__name__}, which is not a JSON value."), field=_field(where))
        if max_chars is not None and chars > max_chars:
            raise error(_at(where, f"larger than {max_chars} characters as JSON."), field=_field(where))


def json_too_deep(value: Any, max_depth: int) -> bool:
    """Whether a parsed JSON value nests deeper than ``max_depth`` (without recursion; Python 3.13's decoder
    parses any depth, where 3.11 and 3.12 raised RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def keys_check(
    item: Mapping[Any, Any], allowed: frozenset[str] | set[str], where: str, error: type[ChatModelError]
) -> None:
    """Refuse keys of ``item`` outside ``allowed``, naming them: a typo must not be ignored silently."""
    unknown = set(item) - allowed
    if unknown:
        raise error(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.", field=_field(where))


def _field(where: str) -> str | None:
    """The request field a location names: ``functions[0].parameters`` -> ``functions``."""
    return re.split(r"[\[. ]", where, maxsplit=1)[0] or None


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


# --- messages -------------------------------------------------------------------------------------

_MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "metadata"})


def validate_messages(
    messages: Any,
    *,
    allowed_roles: Iterable[str] = PYTHON_ROLES,
    max_messages: int,
    max_chars: int,
) -> list[dict[str, Any]]:
    """Check messages a caller wants to add; return clean copies or raise InvalidMessages."""
    allowed = frozenset(allowed_roles)
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InvalidMessages("messages must be a list of message dicts, e.g. [{'role': 'user', 'content': 'Hi'}].")
    if not messages:
        raise InvalidMessages("messages is empty: give at least one message.")
    if len(messages) > max_messages:
        raise InvalidMessages(f"too many messages in one call: {len(messages)} (at most {max_messages}).")
    return [_validate_message(message, f"messages[{i}]", allowed, max_chars) for i, message in enumerate(messages)]


def _validate_message(message: Any, where: str, allowed: frozenset[str], max_chars: int) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise InvalidMessages(f"{where} must be a dict with 'role' and 'content'.")
    keys_check(message, _MESSAGE_KEYS, where, InvalidMessages)
    role = message.get("role")
    if not isinstance(role, str):
        raise InvalidMessages(
            f"{where}.role must be a string, one of {', '.join(sorted(allowed))}; got {type(role).__name__}."
        )
    if role not in ALL_ROLES:
        raise InvalidMessages(f"{where}.role must be one of {', '.join(sorted(allowed))}; got {role!r}.")
    if role not in allowed:
        if role == "system":
            raise InvalidMessages(f"{where}: system messages cannot be added; the system prompt is the version's.")
        raise InvalidMessages(f"{where}: role {role!r} is not allowed here (allowed: {', '.join(sorted(allowed))}).")
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    function_call = message.get("function_call")
    if content is not None and not isinstance(content, str):
        raise InvalidMessages(f"{where}.content must be a string.")
    if content is not None and len(content) > max_chars:
        raise InvalidMessages(f"{where}.content is {len(content)} characters long (at most {max_chars}).")
    if content is not None:
        text_check(content, f"{where}.content", InvalidMessages)
    if role == "assistant":
        if content is None and not tool_calls and not function_call:
            raise InvalidMessages(f"{where}: an assistant message needs content, tool_calls or function_call.")
    elif content is None:
        raise InvalidMessages(f"{where}.content is required for role {role!r}.")
    if (tool_calls or function_call) and role != "assistant":
        raise InvalidMessages(f"{where}: only assistant messages carry tool_calls or function_call.")
    name = message.get("name")
    if name is not None and (not isinstance(name, str) or not _FUNCTION_NAME.match(name)):
        raise InvalidMessages(f"{where}.name must be 1-64 letters, digits, '_' or '-'.")
    tool_call_id = message.get("tool_call_id")
    if tool_call_id is not None and (not isinstance(tool_call_id, str) or not 0 < len(tool_call_id) <= 128):
        raise InvalidMessages(f"{where}.tool_call_id must be a non-empty string of at most 128 characters.")
    if tool_call_id is not None:
        text_check(tool_call_id, f"{where}.tool_call_id", InvalidMessages)
    if tool_call_id is not None and role not in RESULT_ROLES:
        raise InvalidMessages(f"{where}: only tool/function results carry tool_call_id.")
    metadata = message.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidMessages(f"{where}.metadata must be a dict.")
    if metadata is not None:
        json_check(metadata, f"{where}.metadata", InvalidMessages, max_chars=max_chars)
    clean: dict[str, Any] = {"role": role, "content": content}
    if name:
        clean["name"] = name
    if tool_call_id:
        clean["tool_call_id"] = tool_call_id
    if metadata:
        clean["metadata"] = dict(metadata)
    if tool_calls:
        clean["tool_calls"] = _validate_tool_calls(tool_calls, where, max_chars)
    if function_call:
        call = _validate_function_call(function_call, f"{where}.function_call", max_chars)
        # Stored in the modern form too, so a later result can answer it by id.
        clean["function_call"] = call
        clean.setdefault("tool_calls", [{"id": "", "type": "function", "function": call}])
    return clean


def _validate_function_call(call: Any, where: str, max_chars: int) -> dict[str, str]:
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str) or not call.get("name"):
        raise InvalidMessages(f"{where} must be a dict with a 'name' and 'arguments'.")
    text_check(call["name"], f"{where}.name", InvalidMessages)
    arguments = call.get("arguments", call.get("args", {}))
    json_check(arguments, f"{where}.arguments", InvalidMessages, max_chars=max_chars)
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {"name": call["name"], "arguments": arguments}


def _validate_tool_calls(tool_calls: Any, where: str, max_chars: int) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, str | bytes) or not tool_calls:
        raise InvalidMessages(f"{where}.tool_calls must be a non-empty list.")
    out = []
    for j, call in enumerate(tool_calls):
        if not isinstance(call, Mapping):
            raise InvalidMessages(f"{where}.tool_calls[{j}] must be a dict.")
        function = _validate_function_call(call.get("function"), f"{where}.tool_calls[{j}].function", max_chars)
        call_id = call.get("id") or ""
        if not isinstance(call_id, str):
            raise InvalidMessages(f"{where}.tool_calls[{j}].id must be a string.")
        text_check(call_id, f"{where}.tool_calls[{j}].id", InvalidMessages)
        out.append({"id": call_id, "type": "function", "function": function})
    return out


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
