"""Message and tool normalisation: what callers may send, and the form providers accept.

Pure Python (no litellm, no ORM): every front door validates through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..exceptions import InvalidMessages, InvalidParams

RESULT_ROLES = frozenset({"function", "tool"})
ALL_ROLES = frozenset({"system", "user", "assistant", "function", "tool"})
# Through the Python API a caller may add any turn but the system prompt, which the version owns.
PYTHON_ROLES = frozenset({"user", "assistant", "function", "tool"})
_MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "metadata"})
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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
    cleaned = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidMessages(f"{where} must be a dict with 'role' and 'content'.")
        unknown = set(message) - _MESSAGE_KEYS
        if unknown:
            raise InvalidMessages(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.")
        role = message.get("role")
        if role not in ALL_ROLES:
            raise InvalidMessages(f"{where}.role must be one of {', '.join(sorted(allowed))}; got {role!r}.")
        if role not in allowed:
            if role == "system":
                raise InvalidMessages(f"{where}: system messages cannot be added; the system prompt is the version's.")
            raise InvalidMessages(
                f"{where}: role {role!r} is not allowed here (allowed: {', '.join(sorted(allowed))})."
            )
        content = message.get("content")
        tool_calls = message.get("tool_calls")
        function_call = message.get("function_call")
        if content is not None and not isinstance(content, str):
            raise InvalidMessages(f"{where}.content must be a string.")
        if content is not None and len(content) > max_chars:
            raise InvalidMessages(f"{where}.content is {len(content)} characters long (at most {max_chars}).")
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
        if tool_call_id is not None and role not in RESULT_ROLES:
            raise InvalidMessages(f"{where}: only tool/function results carry tool_call_id.")
        metadata = message.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidMessages(f"{where}.metadata must be a dict.")
        clean: dict[str, Any] = {"role": role, "content": content}
        if name:
            clean["name"] = name
        if tool_call_id:
            clean["tool_call_id"] = tool_call_id
        if metadata:
            clean["metadata"] = dict(metadata)
        if tool_calls:
            clean["tool_calls"] = _validate_tool_calls(tool_calls, where)
        if function_call:
            call = _validate_function_call(function_call, f"{where}.function_call")
            # Stored in the modern form too, so a later result can answer it by id.
            clean["function_call"] = call
            clean.setdefault("tool_calls", [{"id": "", "type": "function", "function": call}])
        cleaned.append(clean)
    return cleaned


def _validate_function_call(call: Any, where: str) -> dict[str, str]:
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str) or not call.get("name"):
        raise InvalidMessages(f"{where} must be a dict with a 'name' and 'arguments'.")
    arguments = call.get("arguments", call.get("args", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {"name": call["name"], "arguments": arguments}


def _validate_tool_calls(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, str | bytes) or not tool_calls:
        raise InvalidMessages(f"{where}.tool_calls must be a non-empty list.")
    out = []
    for j, call in enumerate(tool_calls):
        if not isinstance(call, Mapping):
            raise InvalidMessages(f"{where}.tool_calls[{j}] must be a dict.")
        function = _validate_function_call(call.get("function"), f"{where}.tool_calls[{j}].function")
        call_id = call.get("id") or ""
        if not isinstance(call_id, str):
            raise InvalidMessages(f"{where}.tool_calls[{j}].id must be a string.")
        out.append({"id": call_id, "type": "function", "function": function})
    return out


def assign_tool_call_ids(messages: list[dict[str, Any]], *, first_seq: int) -> None:
    """Give calls without an id a stable one (``call_<seq>_<n>``), so results can name them."""
    for offset, message in enumerate(messages):
        for n, call in enumerate(message.get("tool_calls") or ()):
            if not call["id"]:
                call["id"] = f"call_{first_seq + offset}_{n}"


def answer_pending_calls(messages: list[dict[str, Any]], pending: list[dict[str, Any]]) -> None:
    """Match function/tool results to the calls they answer, filling in ``tool_call_id`` and ``name``.

    ``pending`` is the session's unanswered calls, oldest first (provider form). A result
    with no id answers the oldest unanswered call, so the seed's
    ``{"role": "function", "content": "13 degrees celsius"}`` works as written.
    """
    waiting = list(pending)
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("tool_calls"):
            waiting = list(message["tool_calls"])
            continue
        if message["role"] not in RESULT_ROLES:
            if waiting and message["role"] == "user":
                # A new user turn abandons calls nobody answered; they are dropped from context.
                waiting = []
            continue
        call_id = message.get("tool_call_id")
        if call_id:
            match = next((c for c in waiting if c["id"] == call_id), None)
            if match is None:
                raise InvalidMessages(f"messages[{i}]: no function call with id {call_id!r} is waiting for a result.")
        else:
            if message.get("name"):
                match = next((c for c in waiting if c["function"]["name"] == message["name"]), None)
            else:
                match = waiting[0] if waiting else None
            if match is None:
                raise InvalidMessages(
                    f"messages[{i}]: no function call is waiting for this result; run the model first "
                    "or give the tool_call_id of the call it answers."
                )
            message["tool_call_id"] = match["id"]
        message.setdefault("name", match["function"]["name"])
        waiting.remove(match)


def pending_calls(tail: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The unanswered calls of the newest assistant call message in ``tail`` (oldest first)."""
    answered: set[str] = set()
    for message in reversed(tail):
        role = message["role"]
        if role in RESULT_ROLES:
            if message.get("tool_call_id"):
                answered.add(message["tool_call_id"])
            continue
        if role == "assistant" and message.get("tool_calls"):
            return [c for c in message["tool_calls"] if c["id"] not in answered]
        return []
    return []


def to_provider(message: Mapping[str, Any]) -> dict[str, Any]:
    """One stored message in the form providers accept (tool calls always in the modern form)."""
    role = message["role"]
    if role in RESULT_ROLES:
        if message.get("tool_call_id"):
            return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": message.get("content") or ""}
        return {"role": "function", "name": message.get("name") or "function", "content": message.get("content") or ""}
    out: dict[str, Any] = {"role": role, "content": message.get("content")}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": dict(c["function"])} for c in message["tool_calls"]
        ]
    elif out["content"] is None:
        out["content"] = ""
    if message.get("name") and role == "user":
        out["name"] = message["name"]
    return out


def to_log(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as the seed's message_logs show it: role/content plus only the keys that are set."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content")}
    if out["content"] is None:
        del out["content"]
    for key in ("name", "tool_call_id"):
        if message.get(key):
            out[key] = message[key]
    for key in ("function_call", "tool_calls"):
        if message.get(key):
            out[key] = message[key]
    return out


def normalise_tools(functions: Any = None, tools: Any = None) -> list[dict[str, Any]]:
    """Merge legacy ``functions`` and modern ``tools`` into validated OpenAI tool objects."""
    out: dict[str, dict[str, Any]] = {}
    for label, items in (("functions", functions), ("tools", tools)):
        if items is None:
            continue
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise InvalidParams(f"{label} must be a list of JSON schemas.")
        for i, item in enumerate(items):
            tool = validate_tool(item, f"{label}[{i}]")
            out[tool["function"]["name"]] = tool
    return list(out.values())


def validate_tool(item: Any, where: str = "tool") -> dict[str, Any]:
    """Check one function schema (bare, or wrapped as ``{"type": "function", "function": ...}``)."""
    if not isinstance(item, Mapping):
        raise InvalidParams(f"{where} must be a dict (an OpenAI function schema).")
    if "type" in item and item["type"] != "function":
        raise InvalidParams(f"{where}.type must be 'function'; got {item['type']!r}.")
    if "function" in item or item.get("type") == "function":
        if item.get("type", "function") != "function":
            raise InvalidParams(f"{where}.type must be 'function'.")
        function = item.get("function")
        where = f"{where}.function"
    else:
        function = item
    if not isinstance(function, Mapping):
        raise InvalidParams(f"{where} must be a dict with 'name', 'description' and 'parameters'.")
    name = function.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise InvalidParams(f"{where}.name must be 1-64 letters, digits, '_' or '-'; got {name!r}.")
    description = function.get("description", "")
    if not isinstance(description, str):
        raise InvalidParams(f"{where}.description must be a string.")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
        raise InvalidParams(f"{where}.parameters must be a JSON schema object: {{'type': 'object', ...}}.")
    properties = parameters.get("properties", {})
    if not isinstance(properties, Mapping) or not all(isinstance(v, Mapping) for v in properties.values()):
        raise InvalidParams(f"{where}.parameters.properties must map each argument name to a schema dict.")
    required = parameters.get("required", [])
    if not isinstance(required, Sequence) or isinstance(required, str) or not all(r in properties for r in required):
        raise InvalidParams(f"{where}.parameters.required must list names defined in properties.")
    unknown = set(function) - {"name", "description", "parameters", "strict"}
    if unknown:
        raise InvalidParams(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.")
    clean = {"name": name, "parameters": dict(parameters)}
    if description:
        clean["description"] = description
    if "strict" in function:
        clean["strict"] = bool(function["strict"])
    return {"type": "function", "function": clean}
