"""Messages a caller adds: roles, content, calls and results."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..exceptions import InvalidMessages, InvalidParams
from ..llm.messages import ALL_ROLES, PYTHON_ROLES, RESULT_ROLES
from .limits import json_check, keys_check, text_check
from .tools import _FUNCTION_NAME

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


# Seqs are positive database integers: a larger one names no message (and must not reach the query).
_MAX_SEQ = 2**31 - 1


def message_seq_clean(value: Any) -> int:
    """A message's ``seq`` as a request names it: an integer, or its digits as a string (a URL path).

    Anything else (a float, a bool, other text) is refused with ``invalid_params``. A seq no message can
    have (below 1, or past the database's integers) comes back as 0, which the caller finds no message for.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"seq must be a message's seq (a positive integer); got {value!r}.", field="seq")
    return value if 0 < value <= _MAX_SEQ else 0
