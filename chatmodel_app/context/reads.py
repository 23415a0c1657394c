"""Bounded reads of a session's messages: newest first, light columns a page at a time, text only where sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.db.models import TextField
from django.db.models.functions import Cast

from ..models import Message, Session
from . import paths
from .budget import FRAMING, message_tokens

# Light rows (no text) per read. The first read covers the whole window when messages average
# _TYPICAL tokens or more (nearly always: framing alone is 4); later reads are sized by what the rows
# read so far cost, never by the session's length.
_TYPICAL = 8
_PAGE_MIN = 50
_PAGE_MAX = 5000
_LIGHT = ("seq", "role", "token_count", "name", "tool_call_id")
_FULL = ("seq", "role", "content", "name", "tool_call_id", "token_count")
_JSON = ("tool_calls", "function_call")


def _rows(queryset: Any, columns: tuple[str, ...], path: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts; the JSON columns read as text and parsed only where set (most rows have none).

    ``path``: the newest rows of a branched session's current path (``paths.newest_first``'s arguments).
    """
    casts = {f"{name}_json": Cast(name, output_field=TextField()) for name in _JSON}
    query = queryset.annotate(**casts).values_list(*columns, *casts)
    # The ORM writes the SQL; the rows are fetched plainly, because its per-row machinery (converters,
    # iterables) costs more than SQLite's read of them: this is the part of a run that grows with the window.
    union = paths.newest_first(queryset.annotate(**casts), columns=(*columns, *casts), **path) if path else None
    sql, params = union if union is not None else query.query.sql_with_params()
    fetched = paths.fetch(query.db, sql, list(params))
    names = (*columns, *_JSON)
    rows = [dict(zip(names, values, strict=True)) for values in fetched]
    for row in rows:
        for name in _JSON:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


def light_rows(
    session: Session,
    *,
    model: str,
    budget: int,
    after_seq: int | None = None,
    before_seq: int | None = None,
    max_messages: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The session's messages newest first, without their text, a page at a time."""
    size = min(_PAGE_MAX, max(0, budget) // _TYPICAL + _PAGE_MIN)
    if max_messages:
        size = min(size, max_messages + _PAGE_MIN)
    read = tokens = 0
    branched = paths.segments(*paths.state(session)) is not None
    while True:
        if branched:
            # The current path of a session with branches: one bounded index range per branch, one query.
            path = {"session": session, "size": size, "before_seq": before_seq, "after_seq": after_seq}
            page = _rows(Message.objects.filter(session_id=session.pk), _LIGHT, path)
        else:
            rows = Message.objects.filter(session_id=session.pk)
            if before_seq is not None:
                rows = rows.filter(seq__lt=before_seq)
            if after_seq is not None:
                rows = rows.filter(seq__gt=after_seq)
            page = _rows(rows.order_by("-seq")[:size], _LIGHT)
        uncounted = [r for r in page if r["token_count"] is None]
        if uncounted:
            _count(session, model, uncounted)
        yield from page
        if len(page) < size:
            return
        before_seq = page[-1]["seq"]
        read += len(page)
        tokens += sum(r["token_count"] for r in page)
        left = max(0, budget - tokens)
        size = min(_PAGE_MAX, int(left / max(FRAMING, tokens / read) * 1.25) + _PAGE_MIN)


def _count(session: Session, model: str, rows: list[dict[str, Any]]) -> None:
    """Fill in the token counts of rows stored without one (imported or bulk-created)."""
    texts = dict(
        Message.objects.filter(session_id=session.pk, seq__in=[r["seq"] for r in rows]).values_list("seq", "content")
    )
    for row in rows:
        row["token_count"] = message_tokens(model, {**row, "content": texts.get(row["seq"])})


def full_rows(session: Session, seqs: list[int]) -> dict[int, dict[str, Any]]:
    rows = Message.objects.filter(session_id=session.pk, seq__gte=seqs[0], seq__lte=seqs[-1])
    path = paths.path_q(session)
    if path is not None:  # a branched session: only the path's rows in that range (an index range per branch)
        rows = rows.filter(path)
    wanted = set(seqs)
    return {r["seq"]: r for r in _rows(rows, _FULL) if r["seq"] in wanted}


def history_range(
    *, session: Session, model: str, after_seq: int | None, upto_seq: int, max_tokens: int, message_cap: int
) -> tuple[list[dict[str, Any]], bool]:
    """Messages in (after_seq, upto_seq], oldest first, at most ``max_tokens`` of the newest (a message
    counting at most ``message_cap``: longer ones are cut for the summary); and whether older ones were left out."""
    taken: list[dict[str, Any]] = []
    used = 0
    skipped = False
    for row in light_rows(session, model=model, budget=max_tokens, after_seq=after_seq, before_seq=upto_seq + 1):
        cost = min(row["token_count"], message_cap)
        if used + cost > max_tokens and taken:
            skipped = True
            break
        used += cost
        taken.append(row)
    if not taken:
        return [], False
    taken.reverse()
    full = full_rows(session, [r["seq"] for r in taken])
    return [{**full[r["seq"]], "token_count": r["token_count"]} for r in taken], skipped
