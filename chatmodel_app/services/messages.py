"""Adding messages to a session: validated, numbered without gaps, never slipped in before a reply."""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from .. import context, events
from ..conf import conf
from ..context import message_tokens, paths
from ..exceptions import InvalidMessages, SessionBusy, SessionNotFound
from ..llm.messages import PYTHON_ROLES, answer_pending_calls, assign_tool_call_ids, pending_calls
from ..models import Message, Session
from ..selectors import message_json
from ..validation import text_check, validate_messages
from . import leases


class _Limit(enum.Enum):
    SETTING = "setting"  # the default of max_messages: the setting, read at call time


class _Retry(Exception):
    """Rolls back an add_messages that repeats what a failed run was given."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages


def _same(stored: Message, new: Mapping[str, Any]) -> bool:
    return (stored.role, stored.content or "", stored.name) == (new["role"], new["content"] or "", new.get("name", ""))


def messages_add(
    *,
    session: Session,
    messages: Any,
    allowed_roles: frozenset[str] = PYTHON_ROLES,
    idempotency_key: str | None = None,
    max_messages: int | None | _Limit = _Limit.SETTING,
) -> list[Message]:
    """Append messages to the session in one transaction; raises InvalidMessages or SessionBusy.

    While a run is active the session is busy: messages are refused, never slipped in
    before the reply. Repeating exactly the messages that a failed run was given (the
    seed's retry loop) stores nothing new and returns the stored ones, and so does a
    call with the ``idempotency_key`` of one that was already stored (a client retrying
    after a lost response).

    ``max_messages`` caps one call: CHATMODEL_MAX_MESSAGES_PER_REQUEST unless given (the REST and websocket
    doors), None for no cap (trusted in-process code, the ``ChatModel`` shim).
    """
    if idempotency_key is not None and not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 128):
        raise InvalidMessages("The Idempotency-Key must be 1 to 128 characters.")
    if idempotency_key is not None:
        text_check(idempotency_key, "Idempotency-Key", InvalidMessages)
    if max_messages is _Limit.SETTING:
        max_messages = conf.MAX_MESSAGES_PER_REQUEST
    clean = validate_messages(
        messages,
        allowed_roles=allowed_roles,
        max_messages=sys.maxsize if max_messages is None else max_messages,
        max_chars=conf.MAX_MESSAGE_CHARS,
    )
    model = session.version.model
    for message in clean:
        # The text is counted outside the transaction; the call ids and names given below are added there.
        message["token_count"] = context.count_content(model, message)
    n = len(clean)
    try:
        with transaction.atomic():
            first_seq, failed_run_seq = _allocate(session, n)
            if idempotency_key:
                # Checked under the session's row lock (taken by _allocate), so two retries cannot both store.
                stored = list(Message.objects.filter(session=session, idempotency_key=idempotency_key).order_by("seq"))
                if stored:
                    raise _Retry(stored)
            if conf.DEDUPE_RETRIED_MESSAGES and failed_run_seq == first_seq - 1 and first_seq > n:
                tail = list(
                    Message.objects.filter(
                        session=session, seq__gte=first_seq - n, seq__lt=first_seq, branch=session.branch
                    ).order_by("seq")
                )
                if len(tail) == n and all(_same(s, m) for s, m in zip(tail, clean, strict=True)):
                    raise _Retry(tail)
            # The calls a result may answer: those of the newest assistant call message.
            pending = pending_calls([_log_dict(m) for m in _recent_for_calls(session, first_seq)])
            assign_tool_call_ids(clean, first_seq=first_seq)
            answer_pending_calls(clean, pending)
            for message in clean:
                message["token_count"] = message_tokens(model, message, content_tokens=message["token_count"])
            rows = [
                Message(
                    session=session,
                    seq=first_seq + i,
                    role=m["role"],
                    content=m["content"],
                    name=m.get("name", ""),
                    function_call=m.get("function_call"),
                    tool_calls=m.get("tool_calls"),
                    tool_call_id=m.get("tool_call_id", ""),
                    token_count=m["token_count"],
                    metadata=m.get("metadata") or {},
                    idempotency_key=idempotency_key or "",
                    branch=session.branch,
                )
                for i, m in enumerate(clean)
            ]
            Message.objects.bulk_create(rows)
    except _Retry as retry:
        return retry.messages
    if conf.PUBLISH_EVENTS:
        event = events.RunEvents(str(session.uuid), None).make(
            events.MESSAGES_ADDED, messages=[message_json(m) for m in rows]
        )
        events.publish(event)
    return rows


def _allocate(session: Session, n: int) -> tuple[int, int | None]:
    """Reserve ``n`` seqs at the session's end (refused while a run holds it); return the first."""
    if not leases.reserve_seqs(session_id=session.pk, n=n):
        if not Session.objects.filter(pk=session.pk).exists():
            raise SessionNotFound(f"Session {session.uuid} was deleted.")
        raise SessionBusy(
            f"Session {session.uuid} is busy: a run is in progress. Wait for its reply (or cancel it) before adding "
            "messages."
        )
    # The branch they join too (services/branches.py): read under the row lock just taken, so no switch slips in.
    next_seq, failed_run_seq, session.branch, session.branches = (
        Session.objects.filter(pk=session.pk).values_list("next_seq", "failed_run_seq", "branch", "branches").get()
    )
    return next_seq - n, failed_run_seq


def _recent_for_calls(session: Session, before: int) -> list[Message]:
    """The messages back to (and including) the newest non-result message."""
    out: list[Message] = []
    # Only the fields the call pairing reads: result messages are rarely many, but each row may be large.
    rows = Message.objects.filter(session=session, seq__lt=before).order_by("-seq")
    path = paths.path_q(session)
    if path is not None:  # a branched session: the calls of its current path
        rows = rows.filter(path)
    for row in rows.only("role", "content", "tool_calls", "tool_call_id")[:64]:
        out.append(row)
        if row.role not in ("tool", "function"):
            break
    return list(reversed(out))


def _log_dict(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id}
