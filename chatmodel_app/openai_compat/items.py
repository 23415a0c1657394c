"""OpenAI items and chat messages to the messages a session stores, and stored messages back to items.

A conversation's items are its messages: a user or assistant message is a ``message`` item, each tool call of
an assistant message a ``function_call`` item, a tool (or function) result a ``function_call_output`` item.
Only text content is accepted (``input_text``, ``output_text``, ``text`` parts); the message rules themselves
(roles, sizes, calls and results) are ``chatmodel_app.validation``'s, applied when the messages are added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import InvalidMessages
from ..models import Message
from . import ids

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# Roles that would replace the version's system prompt.
SYSTEM_ROLES = frozenset({"system", "developer"})
# What a chat message may carry into a session (other keys OpenAI clients send, such as "refusal", are dropped).
_CHAT_KEYS = ("role", "content", "name", "tool_calls", "function_call", "tool_call_id")


def _text(content: Any, where: str) -> str:
    """The text of a content: a string, or a list of text parts (joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, Mapping) or part.get("type") not in _TEXT_PARTS:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise InvalidMessages(
                    f"{where}[{j}]: only text content is supported here (input_text, output_text, text); got {kind!r}.",
                    field=where.split("[")[0],
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidMessages(f"{where}[{j}].text must be a string.", field=where.split("[")[0])
            texts.append(text)
        return "".join(texts)
    raise InvalidMessages(f"{where} must be a string or a list of text parts.", field=where.split("[")[0])


# --- Responses input -------------------------------------------------------------------------------


def input_messages(value: Any, *, field: str = "input") -> list[dict[str, Any]]:
    """A Responses ``input`` (a string, or a list of items) as messages to add; [] for none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, Sequence) or isinstance(value, bytes):
        raise InvalidMessages(f"{field} must be a string or a list of items.", field=field)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidMessages(f"{where} must be an object (an item).", field=field)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in SYSTEM_ROLES:
                raise InvalidMessages(
                    f"{where}: {role} messages cannot be given; the chat model's version has the instructions "
                    "(its system prompt), managed in the admin.",
                    field=field,
                )
            if not isinstance(role, str):
                raise InvalidMessages(f"{where}.role must be user or assistant.", field=field)
            out.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str):
                raise InvalidMessages(f"{where}: a function_call item needs call_id and name.", field=field)
            if not isinstance(arguments, str):
                raise InvalidMessages(f"{where}.arguments must be a string (JSON).", field=field)
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            previous = out[-1] if out else None
            if previous is not None and previous["role"] == "assistant" and i > 0:
                # The calls of one reply follow its text (or each other): one assistant message, as stored.
                previous.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidMessages(
                    f"{where}: a function_call_output item needs the call_id it answers.", field=field
                )
            output = _text(item.get("output", ""), f"{where}.output")
            out.append({"role": "tool", "tool_call_id": call_id, "content": output})
        else:
            raise InvalidMessages(
                f"{where}.type {kind!r} is not supported: use message, function_call or function_call_output items.",
                field=field,
            )
    return out


# --- Chat Completions messages ---------------------------------------------------------------------

SYSTEM_NOTE = "openai_role"


def chat_messages(value: Any) -> list[dict[str, Any]]:
    """A Chat Completions ``messages`` list as messages to store in a new session.

    A client's system (or developer) message becomes a user message marked ``metadata.openai_role``: the model
    reads it as the user's words, the version's system prompt stays the only system prompt (docs/openai.md).
    """
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise InvalidMessages("messages must be a non-empty list of messages.", field="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidMessages(f"{where} must be an object with role and content.", field="messages")
        clean = {k: message[k] for k in _CHAT_KEYS if message.get(k) is not None}
        role = clean.get("role")
        if "content" in clean and not isinstance(clean["content"], str):
            clean["content"] = _text(clean["content"], f"{where}.content")
        if role in SYSTEM_ROLES:
            clean = {"role": "user", "content": clean.get("content", ""), "metadata": {SYSTEM_NOTE: role}}
        elif role == "assistant":
            clean.setdefault("content", None)
        out.append(clean)
    return out


# --- stored messages as items ----------------------------------------------------------------------


def message_items(message: Message) -> list[dict[str, Any]]:
    """One stored message as the items OpenAI shows for it (a message, its function calls, or a call's output)."""
    run_uuid = message.run.uuid if message.run_id and message.run is not None else None
    ref = ids.message_ref(pk=message.pk, role=message.role, run_uuid=run_uuid)
    if message.role in ("tool", "function"):
        return [
            {
                "type": "function_call_output",
                "id": f"fco_{ref}",
                "call_id": message.tool_call_id or "",
                "output": message.content or "",
                "status": "completed",
            }
        ]
    items: list[dict[str, Any]] = []
    status = "incomplete" if (message.metadata or {}).get("cancelled") else "completed"
    if message.content is not None and (message.content != "" or not message.tool_calls):
        items.append(message_item(ref, role=message.role, text=message.content, status=status))
    for n, call in enumerate(message.tool_calls or ()):
        function = call.get("function") or {}
        items.append(
            function_call_item(
                ref,
                n,
                call_id=call.get("id") or "",
                name=function.get("name") or "",
                arguments=function.get("arguments"),
            )
        )
    return items


def message_item(ref: str, *, role: str, text: str, status: str = "completed") -> dict[str, Any]:
    if role == "assistant":
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    else:
        part = {"type": "input_text", "text": text}
    return {"type": "message", "id": f"msg_{ref}", "status": status, "role": role, "content": [part]}


def function_call_item(
    ref: str, n: int, *, call_id: str, name: str, arguments: str | None, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{ref}_{n}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments or "",
        "status": status,
    }
