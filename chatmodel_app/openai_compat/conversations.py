"""Conversations (sessions) as OpenAI shows them: metadata rules, updates, deletion, and items by id and page.

What the pipeline lacks for this door and nothing more: adding messages and runs stay ``services``'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from .. import selectors, validation
from ..exceptions import InvalidParams, SessionBusy, SessionNotFound
from ..models import Message, Session
from ..services import leases
from . import ids, items

# OpenAI's limits on metadata: 16 pairs, keys up to 64 characters, values up to 512.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class ItemNotFound(SessionNotFound):
    """No item with this id in the conversation (404, as a session that is not the caller's)."""

    code = "item_not_found"


def metadata_clean(value: Any, *, field: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata: up to 16 string pairs (keys up to 64 characters, values up to 512)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParams(f"{field} must be an object of string keys and values.", field=field)
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidParams(f"{field} may have at most {MAX_METADATA_KEYS} keys; got {len(value)}.", field=field)
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_METADATA_KEY:
            raise InvalidParams(f"{field} keys must be strings of 1 to {MAX_METADATA_KEY} characters.", field=field)
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE:
            raise InvalidParams(
                f"{field}.{key} must be a string of at most {MAX_METADATA_VALUE} characters.", field=field
            )
    validation.json_check(dict(value), field, InvalidParams)
    return dict(value)


def conversation_update(*, session: Session, metadata: dict[str, str]) -> Session:
    """Replace the conversation's metadata (OpenAI's update)."""
    Session.objects.filter(pk=session.pk).update(metadata=metadata)
    session.metadata = metadata
    return session


def conversation_delete(*, session: Session) -> None:
    """Delete the session with its messages and runs; refused while a run is active on it."""
    with transaction.atomic():
        if leases.holder(session_id=session.pk) is not None:
            raise SessionBusy(
                f"Conversation {ids.conversation_id(session.uuid)} has a run in progress: cancel it first."
            )
        session.delete()


def item_message(*, session: Session, item_id: Any) -> Message:
    """The stored message an item id of this conversation names, or ItemNotFound."""
    parsed = ids.parse_item(item_id)
    message = None
    if parsed is not None:
        _kind, ref, _n = parsed
        rows = Message.objects.filter(session=session).select_related("run")
        if len(ref) == 32:
            message = rows.filter(run__uuid=ref, role=Message.Role.ASSISTANT).first()
        else:
            message = rows.filter(pk=int(ref)).first()
    if message is None or not any(i["id"] == item_id for i in items.message_items(message)):
        raise ItemNotFound(f"No item {item_id!r} in conversation {ids.conversation_id(session.uuid)}.")
    return message


def item_get(*, session: Session, item_id: str) -> dict[str, Any]:
    message = item_message(session=session, item_id=item_id)
    return next(i for i in items.message_items(message) if i["id"] == item_id)


def stored_item_ids(*, session: Session, candidates: list[Any]) -> set[str]:
    """Which of these item ids are items this conversation already has."""
    found = set()
    for item_id in candidates:
        try:
            item_message(session=session, item_id=item_id)
        except ItemNotFound:
            continue
        found.add(item_id)
    return found


def item_page(
    *,
    session: Session,
    after: str | None,
    limit: int,
    order: str,
    seqs: tuple[int, int] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the conversation's items after item ``after``, in ``order``; and whether more follow.

    ``seqs`` keeps to the messages from one seq to another (a response's input items).
    """
    skip: set[str] = set()
    seq_after: int | None = None
    seq_before: int | None = None
    if after:
        message = item_message(session=session, item_id=after)
        own = [i["id"] for i in items.message_items(message)]
        if order == "desc":
            own.reverse()
        skip = set(own[: own.index(after) + 1])
        if order == "desc":
            seq_before = message.seq + 1
        else:
            seq_after = message.seq - 1
    if seqs is not None:
        seq_after = max(seq_after if seq_after is not None else 0, seqs[0] - 1)
        seq_before = min(seq_before if seq_before is not None else seqs[1] + 1, seqs[1] + 1)
    rows, more = selectors.message_page(
        session=session, after=seq_after, before=seq_before, limit=limit + 1, order=order
    )
    flat: list[dict[str, Any]] = []
    for message in rows:
        own_items = items.message_items(message)
        if order == "desc":
            own_items.reverse()
        flat += [i for i in own_items if i["id"] not in skip]
    return flat[:limit], more or len(flat) > limit
