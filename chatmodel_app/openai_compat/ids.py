"""Public ids of this door and what they name.

- ``conv_<session uuid hex>``: a conversation is a Session;
- ``resp_<run uuid hex>``: a response is a Run (chat completions are ``chatcmpl-<run uuid hex>``);
- ``msg_<ref>``: a message item, ``fc_<ref>_<n>`` the n-th function call of an assistant message,
  ``fco_<ref>`` a function call output (a tool message). ``<ref>`` is the run's uuid hex for a reply the
  model wrote (known while it streams, before the message is stored), else the message's primary key.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

CONVERSATION = "conv_"
RESPONSE = "resp_"
CHAT_COMPLETION = "chatcmpl-"

_HEX = re.compile(r"^[0-9a-f]{32}$")
_ITEM = re.compile(r"^(msg|fc|fco)_([0-9a-f]{32}|[0-9]{1,19})(?:_([0-9]{1,4}))?$")


def _uuid(value: Any, prefix: str) -> uuid.UUID | None:
    if not isinstance(value, str) or not value.startswith(prefix):
        return None
    rest = value[len(prefix) :]
    return uuid.UUID(hex=rest) if _HEX.match(rest) else None


def conversation_id(session_uuid: uuid.UUID) -> str:
    return f"{CONVERSATION}{session_uuid.hex}"


def session_uuid(value: Any) -> uuid.UUID | None:
    """The session uuid a ``conv_`` id names, or None when it is not one."""
    return _uuid(value, CONVERSATION)


def response_id(run_uuid: uuid.UUID | str) -> str:
    return f"{RESPONSE}{uuid.UUID(str(run_uuid)).hex}"


def chat_completion_id(run_uuid: uuid.UUID | str) -> str:
    return f"{CHAT_COMPLETION}{uuid.UUID(str(run_uuid)).hex}"


def run_uuid(value: Any) -> uuid.UUID | None:
    """The run uuid a ``resp_`` id names, or None when it is not one."""
    return _uuid(value, RESPONSE)


def message_ref(*, pk: int, role: str, run_uuid: uuid.UUID | str | None) -> str:
    """The ``<ref>`` of a message: its run for a reply the model wrote, else its primary key."""
    if role == "assistant" and run_uuid:
        return uuid.UUID(str(run_uuid)).hex
    return str(pk)


def parse_item(value: Any) -> tuple[str, str, int | None] | None:
    """``(kind, ref, n)`` of an item id (kind msg, fc or fco), or None when it is not one of ours."""
    if not isinstance(value, str):
        return None
    match = _ITEM.match(value)
    if not match:
        return None
    n = match.group(3)
    return match.group(1), match.group(2), int(n) if n is not None else None
