"""Chats of the AI SDK: a chat id -> its session, the client's messages -> what is new, stored -> ``UIMessage``.

Chat ids. A chat id that is a UUID is the session's uuid. Any other id (the AI SDK's own ids are short random
strings) is mapped to ``uuid5(NAMESPACE, "<user pk>:<chat model pk>:<chat id>")``: stable, and private to the user
and the chat model (anonymous callers, when the host allows them, must use UUID ids).

Message ids. Every stored message has a UI id: ``metadata["ui_message_id"]`` when a client gave it one (the
user's messages sent through this door), else the run uuid for a reply (the ``messageId`` of the stream's
``start`` part, so the client knows its replies by that id), else ``"seq-<seq>"``. The client sends its whole
history with each request; the messages after the last one whose id is stored are new. When none of its ids
is stored and the session has messages (a client that got its history elsewhere), only its last message is new.
New messages are stored through ``services.messages_add`` (so ``validation``), with the REST API's roles and limits.
Tool results the client adds to a stored reply (``addToolOutput``) become ``tool`` messages answering its calls.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from .. import selectors
from ..conf import conf
from ..exceptions import InvalidMessages, InvalidParams
from ..models import ChatModel, Message, Session
from ..services import branches
from ..validation import text_check

NAMESPACE = uuid.UUID("5b0e6f8e-2f4e-4a53-9a4b-7c1d0f1c2a61")
MAX_ID_CHARS = 128
UI_ID_KEY = "ui_message_id"
TRIGGERS = frozenset({"submit-message", "regenerate-message"})
# The states of a tool part that carry the tool's result.
TOOL_OUTPUT_STATES = frozenset({"output-available", "output-error"})
# The nil and max uuids: what a client sends by mistake (an unset field), never a session (as the REST API).
RESERVED_UUIDS = frozenset({uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)})


@dataclass
class ChatRequest:
    """A POST body, checked: the chat id, the client's messages (plain dicts), the trigger, the extra keys."""

    chat_id: str
    messages: list[dict[str, Any]]
    trigger: str
    message_id: str | None
    extra: dict[str, Any]


# --- ids --------------------------------------------------------------------------------------------------------


def check_id(value: Any, where: str, error: type[InvalidParams] | type[InvalidMessages] = InvalidParams) -> str:
    """A chat or message id: a string of 1 to MAX_ID_CHARS characters, storable text."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise error(f"{where} must be a string of 1 to {MAX_ID_CHARS} characters.", field=where)
    text_check(value, where, error)
    return value


def session_uuid_for(chat_id: str, *, user: Any, chat_model: ChatModel) -> uuid.UUID:
    """The session uuid of a chat id (see the module)."""
    try:
        value = uuid.UUID(chat_id)
    except ValueError:
        value = None
    if value is not None:
        if value in RESERVED_UUIDS:
            raise InvalidParams("This chat id cannot be used: choose another (a random uuid4).", field="id")
        return value
    if not (user is not None and user.is_authenticated):
        raise InvalidParams("Without a logged-in user, the chat id must be a UUID (crypto.randomUUID()).", field="id")
    return uuid.uuid5(NAMESPACE, f"{user.pk}:{chat_model.pk}:{chat_id}")


# --- the request --------------------------------------------------------------------------------------------


def parse_request(data: Any) -> ChatRequest:
    """Check the shape of a POST body (the message rules themselves are ``validation``'s, applied when storing)."""
    if not isinstance(data, dict):
        raise InvalidParams("The body must be a JSON object: {id, messages, trigger, messageId}.")
    chat_id = check_id(data.get("id"), "id")
    trigger = data.get("trigger", "submit-message")
    if trigger not in TRIGGERS:
        raise InvalidParams(f"trigger must be one of {', '.join(sorted(TRIGGERS))}; got {trigger!r}.", field="trigger")
    message_id = data.get("messageId")
    if message_id is not None:
        check_id(message_id, "messageId")
    raw = data.get("messages")
    if not isinstance(raw, list):
        raise InvalidMessages("messages must be a list of UIMessage objects ({id, role, parts}).", field="messages")
    messages = [_ui_message(m, f"messages[{i}]") for i, m in enumerate(raw)]
    extra = {k: v for k, v in data.items() if k not in ("id", "messages", "trigger", "messageId")}
    return ChatRequest(chat_id=chat_id, messages=messages, trigger=trigger, message_id=message_id, extra=extra)


def _ui_message(message: Any, where: str) -> dict[str, Any]:
    """A UIMessage as ``{"id", "role", "content"}``: its text parts joined; other parts of a reply ignored."""
    if not isinstance(message, dict):
        raise InvalidMessages(f"{where} must be a UIMessage object ({{id, role, parts}}).", field="messages")
    message_id = check_id(message.get("id"), f"{where}.id", InvalidMessages)
    role = message.get("role")
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise InvalidMessages(f"{where}.parts must be a list of parts.", field="messages")
    texts = []
    outputs: list[dict[str, Any]] = []
    for j, item in enumerate(parts):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InvalidMessages(f"{where}.parts[{j}] must be a part object with a type.", field="messages")
        if item["type"] == "text":
            if not isinstance(item.get("text"), str):
                raise InvalidMessages(f"{where}.parts[{j}].text must be a string.", field="messages")
            texts.append(item["text"])
        elif role == "assistant" and _is_tool_part(item) and item.get("state") in TOOL_OUTPUT_STATES:
            # A tool's result the client added to a reply (addToolOutput): stored as a tool message.
            call_id = check_id(item.get("toolCallId"), f"{where}.parts[{j}].toolCallId", InvalidMessages)
            if item["state"] == "output-error":
                outputs.append({"id": call_id, "content": f"Error: {item.get('errorText') or 'the tool failed'}"})
            else:
                output = item.get("output")
                content = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
                outputs.append({"id": call_id, "content": content})
        elif role != "assistant":
            # A reply's own parts (step-start, reasoning, tool calls) are the server's; a user's files are not read.
            raise InvalidMessages(
                f"{where}.parts[{j}]: only text parts are accepted in a {role} message; got {item['type']!r}.",
                field="messages",
            )
    clean = {"id": message_id, "role": role, "content": "\n\n".join(texts)}
    if outputs:
        clean["tool_outputs"] = outputs
    return clean


def _is_tool_part(item: dict[str, Any]) -> bool:
    return item["type"].startswith("tool-") or item["type"] == "dynamic-tool"


# --- the session's messages -----------------------------------------------------------------------------------


def ui_id(message: Message) -> str:
    """A stored message's UI id (see the module)."""
    given = (message.metadata or {}).get(UI_ID_KEY)
    if isinstance(given, str) and given:
        return given
    if message.role == Message.Role.ASSISTANT and message.run_id is not None and message.run is not None:
        return str(message.run.uuid)
    return f"seq-{message.seq}"


def _stored_ids(session: Session, ids: Iterable[str]) -> dict[str, int]:
    """Which of ``ids`` are UI ids of the session's messages (on its current path): id -> seq."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    seqs = [int(i[4:]) for i in ids if i.startswith("seq-") and i[4:].isdigit() and len(i) < 14]
    run_uuids = []
    for i in ids:
        with contextlib.suppress(ValueError):
            run_uuids.append(uuid.UUID(i))
    query = Q(**{f"metadata__{UI_ID_KEY}__in": ids}) | Q(seq__in=seqs)
    if run_uuids:
        query |= Q(role=Message.Role.ASSISTANT, run__uuid__in=run_uuids)
    rows = selectors.session_messages(session=session).filter(query).select_related("run")
    wanted = set(ids)
    return {key: m.seq for m in rows if (key := ui_id(m)) in wanted}


@dataclass
class History:
    """What the client's history says: the messages that are new, and the stored message it ends on (if any)."""

    new: list[dict[str, Any]]
    last_known_seq: int | None
    # The client's message that matched ``last_known_seq`` (None when none did).
    last_known: dict[str, Any] | None = None


def history(session: Session, messages: list[dict[str, Any]]) -> History:
    """The client's messages after the last one already stored (see the module)."""
    stored = _stored_ids(session, (m["id"] for m in messages))
    last = max((i for i, m in enumerate(messages) if m["id"] in stored), default=None)
    if last is not None:
        return History(new=messages[last + 1 :], last_known_seq=stored[messages[last]["id"]], last_known=messages[last])
    if not selectors.session_messages(session=session).exists():
        return History(new=list(messages), last_known_seq=None)
    return History(new=messages[-1:], last_known_seq=None)


def tool_results(session: Session, found: History) -> list[dict[str, Any]]:
    """The tool results the client added to the stored reply it ends on, not stored yet, as tool messages.

    ``useChat`` runs a tool on the client (``onToolCall`` / ``addToolOutput``) and sends the reply back with the
    result in its tool part; each result answers one call of that stored reply.
    """
    outputs = (found.last_known or {}).get("tool_outputs") or []
    if not outputs or found.last_known_seq is None:
        return []
    path = selectors.session_messages(session=session)
    reply = path.filter(seq=found.last_known_seq, role=Message.Role.ASSISTANT).first()
    calls = {c.get("id") for c in (reply.tool_calls or [])} if reply is not None else set()
    answered = set(
        path.filter(seq__gt=found.last_known_seq, role=Message.Role.TOOL).values_list("tool_call_id", flat=True)
    )
    out = []
    for output in outputs:
        if output["id"] not in calls:
            raise InvalidMessages(f"Tool call {output['id']!r} is not a call of that reply.", field="messages")
        if output["id"] not in answered:
            out.append({"role": "tool", "tool_call_id": output["id"], "content": output["content"]})
            answered.add(output["id"])
    return out


def to_store(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new messages as ``messages_add`` takes them, each keeping its UI id in its metadata."""
    return [{"role": m["role"], "content": m["content"], "metadata": {UI_ID_KEY: m["id"]}} for m in new]


def ui_messages(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` messages of the session's current path as UIMessage objects, oldest first.

    A reply's tool calls are ``tool-<name>`` parts (``input-available``, or ``output-available`` with the
    result stored after it); the system prompt and summaries are not messages of the chat.
    """
    rows = list(selectors.session_messages(session=session).select_related("run").order_by("-seq")[:limit])
    out: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for message in reversed(rows):
        if message.role in (Message.Role.TOOL, Message.Role.FUNCTION):
            call = calls.get(message.tool_call_id or "")
            if call is not None:
                call.update(state="output-available", output=message.content)
            continue
        if message.role not in (Message.Role.USER, Message.Role.ASSISTANT):
            continue
        parts: list[dict[str, Any]] = []
        if message.content:
            text: dict[str, Any] = {"type": "text", "text": message.content}
            if message.role == Message.Role.ASSISTANT:
                text["state"] = "done"
            parts.append(text)
        for tool_call in message.tool_calls or []:
            function = tool_call.get("function") or {}
            call = {
                "type": f"tool-{function.get('name') or 'unknown'}",
                "toolCallId": tool_call.get("id") or "",
                "state": "input-available",
                "input": _arguments(function.get("arguments")),
            }
            calls[call["toolCallId"]] = call
            parts.append(call)
        ui: dict[str, Any] = {"id": ui_id(message), "role": message.role, "parts": parts}
        if message.role == Message.Role.ASSISTANT and message.run is not None:
            ui["metadata"] = {
                "sessionId": str(session.uuid),
                "runId": str(message.run.uuid),
                "status": message.run.status,
            }
        out.append(ui)
    return out


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value or "{}")
        except ValueError:
            return value
    return value


# --- regenerate -------------------------------------------------------------------------------------------------


def regenerate(session: Session, found: History) -> None:
    """Answer the client's last message again: the stored reply after it becomes an alternative (a branch).

    The client drops the reply it regenerates and sends the history before it, so its last message must be
    stored, be the current path's last user message, and nothing new may come with it.
    """
    if found.new or found.last_known_seq is None:
        raise InvalidMessages(
            "A regenerate-message request sends the stored history up to the message to answer again, and nothing new.",
            field="messages",
        )
    path = selectors.session_messages(session=session)
    last = path.filter(seq=found.last_known_seq).values_list("role", flat=True).first()
    if last != Message.Role.USER:
        raise InvalidMessages(
            "A regenerate-message request ends with the user's message: the client drops the reply it regenerates.",
            field="messages",
        )
    if path.filter(seq__gt=found.last_known_seq, role=Message.Role.USER).exists():
        raise InvalidMessages("Only the last reply can be regenerated.", field="messages")
    branches.regenerate_prepare(session=session)


def max_history() -> int:
    """The most messages ``ui_messages`` returns by default: the REST API's largest page."""
    return conf.API_MAX_PAGE_SIZE
