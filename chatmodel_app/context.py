"""Which history goes to the model: the newest messages that fit the token budget.

One function, ``select_history``, used by every front door. It reads the session's
tail newest-first in pages (the ``(session, seq)`` unique index), stops when the
budget is full, and never splits an assistant tool call from its results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import llm
from .conf import conf
from .exceptions import ContextTooLong, InvalidMessages
from .llm.messages import RESULT_ROLES
from .models import Message, Session, Version

PAGE_SIZE = 200
# Per-message framing tokens providers add around each message.
_FRAMING = 4
_APP_PARAMS = frozenset({"api_base", "context_window", "api_key"})


@dataclass
class Selection:
    """The messages chosen for a run, oldest first, and what they cost."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    tokens: int = 0
    budget: int = 0


def message_tokens(model: str, message: dict[str, Any]) -> int:
    """Tokens one stored message costs in a prompt."""
    payload = message.get("content") or ""
    if message.get("tool_calls"):
        payload += json.dumps(message["tool_calls"])
    return llm.count_tokens(model, text=payload) + _FRAMING if payload else _FRAMING


def input_budget(version: Version, *, system_tokens: int, tools_tokens: int, max_tokens: int | None) -> int:
    """Tokens left for history: context window - reply reserve - system prompt - tools."""
    window = version.context_window or llm.context_window(version.model, conf.DEFAULT_CONTEXT_WINDOW)
    reserve = max_tokens or version.params.get("max_tokens") or conf.DEFAULT_MAX_TOKENS
    return int(window) - int(reserve) - system_tokens - tools_tokens


def _as_dict(row: Message) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "role": row.role,
        "content": row.content,
        "name": row.name,
        "tool_calls": row.tool_calls,
        "function_call": row.function_call,
        "tool_call_id": row.tool_call_id,
        "token_count": row.token_count,
    }


def _tail(session: Session):
    """The session's messages newest first, a page at a time."""
    before = None
    while True:
        qs = Message.objects.filter(session=session)
        if before is not None:
            qs = qs.filter(seq__lt=before)
        page = list(qs.order_by("-seq")[:PAGE_SIZE])
        yield from page
        if len(page) < PAGE_SIZE:
            return
        before = page[-1].seq


def select_history(*, session: Session, version: Version, budget: int) -> Selection:
    """The newest messages that fit ``budget`` tokens, keeping each tool call with all its results.

    Raises ContextTooLong when not even the newest turn fits, and InvalidMessages when
    the newest assistant call still waits for a result.
    """
    chosen: list[list[dict[str, Any]]] = []
    used = 0
    results: list[dict[str, Any]] = []  # tool results seen (newest first) whose call is older
    newest = True
    too_long = False
    for row in _tail(session):
        message = _as_dict(row)
        if message["token_count"] is None:
            message["token_count"] = message_tokens(version.model, message)
        if message["role"] in RESULT_ROLES:
            results.append(message)
            continue
        if message["role"] == "assistant" and message["tool_calls"]:
            ids = {c["id"] for c in message["tool_calls"]}
            answers = [r for r in reversed(results) if r["tool_call_id"] in ids]
            if {r["tool_call_id"] for r in answers} != ids:
                if newest:
                    missing = sorted(ids - {r["tool_call_id"] for r in answers})
                    raise InvalidMessages(
                        "the model's function call is waiting for its result: add a function/tool message "
                        f"answering {', '.join(missing)} before running."
                    )
                # An old call that was never answered: providers reject it, so leave it out.
                results = []
                continue
            unit = [message, *answers]
        else:
            # Results with no call before them (their call was dropped) cannot be sent alone.
            unit = [message]
        results = []
        cost = sum(m["token_count"] for m in unit)
        if used + cost > budget:
            too_long = not chosen
            break
        used += cost
        chosen.append(unit)
        newest = False
    if results and newest:
        raise InvalidMessages("the session's newest messages are function results with no call before them.")
    if not chosen:
        if not too_long:
            # An empty session: the model gets the system prompt alone.
            return Selection(budget=budget)
        raise ContextTooLong(
            f"The newest message does not fit the model's context window ({budget} tokens are left for history "
            "after the system prompt, tools and the reply's reserve). Shorten the message or raise the limit."
        )
    messages = [m for unit in reversed(chosen) for m in unit]
    return Selection(
        messages=messages,
        first_seq=messages[0]["seq"],
        last_seq=max(m["seq"] for m in messages),
        tokens=used,
        budget=budget,
    )


def request_params(version: Version, params: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters sent to the model: the version's, overridden by the caller's allowed ones."""
    merged = {k: v for k, v in version.params.items() if k not in _APP_PARAMS}
    merged.update(params)
    return merged
