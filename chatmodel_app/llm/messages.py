"""Message formats: stored messages in the form providers accept, and how tool results find their calls.

Pure Python (no litellm, no ORM). What callers may send is checked in ``chatmodel_app.validation``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import InvalidMessages

RESULT_ROLES = frozenset({"function", "tool"})
ALL_ROLES = frozenset({"system", "user", "assistant", "function", "tool"})
# Through the Python API a caller may add any turn but the system prompt, which the version owns.
PYTHON_ROLES = frozenset({"user", "assistant", "function", "tool"})


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
