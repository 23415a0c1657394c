"""The current path of a session with branches: which stored messages the conversation is made of now.

Every message carries a branch number (0: the first). ``Session.branches`` records, for each branch
after the first, its parent branch and its fork point ``cut``: the branch replaces its parent's
message ``seq == cut`` and everything after it. A branch's messages are stored after its fork, so the
current path, read in ``seq`` order, is one range of ``seq`` per branch of the chain from branch 0 to
the current one: branch 0's messages below the first cut, then the next branch's between its cut and
the next cut, and so on. Each range is an index range of ``(session, branch, seq)``.

``seq`` stays the session's gapless storage order; the path is a subsequence of it. A session without
branch records (``[]``) is read exactly as before, with no branch condition at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet

from ..models import Session


@dataclass(frozen=True)
class Segment:
    """The part of the path one branch contributes: its messages with ``lo < seq < hi`` (None: unbounded)."""

    branch: int
    lo: int | None
    hi: int | None

    def q(self) -> Q:
        q = Q(branch=self.branch)
        if self.lo is not None:
            q &= Q(seq__gt=self.lo)
        if self.hi is not None:
            q &= Q(seq__lt=self.hi)
        return q


def records(branches: Any) -> dict[int, dict[str, Any]]:
    """The branch records by id (branch 0 is implicit when there are none)."""
    out = {int(b["id"]): b for b in branches or []}
    out.setdefault(0, {"id": 0, "parent": None, "cut": None, "at": 0})
    return out


def chain(branch: int, branches: Any) -> list[int]:
    """The branch ids from branch 0 to ``branch``."""
    by_id = records(branches)
    out = [branch]
    seen = {branch}
    while by_id.get(out[-1], {}).get("parent") is not None:
        parent = int(by_id[out[-1]]["parent"])
        if parent in seen:  # never written so; a guard against a hand-edited row
            break
        seen.add(parent)
        out.append(parent)
    return list(reversed(out))


def segments(branch: int, branches: Any) -> list[Segment] | None:
    """The path's segments, oldest first; None for a single-branch session (read with no branch condition)."""
    if not branches:
        return None
    by_id = records(branches)
    ids = chain(branch, branches)
    out: list[Segment] = []
    for i, b in enumerate(ids):
        lo = by_id[b].get("cut") if i else None
        hi = by_id[ids[i + 1]]["cut"] if i + 1 < len(ids) else None
        out.append(Segment(b, lo, hi))
    return out


def state(session: Session, *, fresh: bool = False) -> tuple[int, list[dict[str, Any]]]:
    """The session's (current branch, branch records); re-read from the database when ``fresh``."""
    if fresh and session.pk is not None:
        row = Session.objects.filter(pk=session.pk).values_list("branch", "branches").first()
        if row is not None:
            session.branch, session.branches = row
    return session.branch, session.branches


def path_q(session: Session) -> Q | None:
    """A filter for the path's messages (session not included), or None when the session has one branch."""
    segs = segments(*state(session))
    if segs is None:
        return None
    q = Q(pk__in=[])
    for seg in segs:
        q |= seg.q()
    return q


def newest_first(
    base: QuerySet[Any],
    session: Session,
    *,
    columns: Iterable[str],
    size: int,
    before_seq: int | None = None,
    after_seq: int | None = None,
    desc: bool = True,
) -> tuple[str, list[Any]] | None:
    """SQL of the newest ``size`` path rows of ``base`` (``columns``, seq first) below ``before_seq``, newest first
    (or, with ``desc=False``, the oldest above ``after_seq``, oldest first).

    One query: a UNION ALL of one bounded index range per segment, each read at most ``size`` rows deep,
    so a read costs O(window) rows whatever the other branches hold. None for a single-branch session.
    """
    segs = segments(*state(session))
    if segs is None:
        return None
    parts: list[str] = []
    params: list[Any] = []
    for seg in reversed(segs) if desc else segs:
        if before_seq is not None and seg.lo is not None and seg.lo >= before_seq - 1:
            continue
        if after_seq is not None and seg.hi is not None and seg.hi <= after_seq + 1:
            continue
        qs = base.filter(seg.q())
        if before_seq is not None:
            qs = qs.filter(seq__lt=before_seq)
        if after_seq is not None:
            qs = qs.filter(seq__gt=after_seq)
        sql, p = qs.order_by("-seq" if desc else "seq").values_list(*columns)[:size].query.sql_with_params()
        parts.append(f"SELECT * FROM ({sql}) AS s{len(parts)}")
        params.extend(p)
    if not parts:
        return "", []
    return " UNION ALL ".join(parts) + f" ORDER BY 1 {'DESC' if desc else 'ASC'} LIMIT {int(size)}", params


def fetch(db: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``newest_first``'s SQL (none for an empty one)."""
    if not sql:
        return []
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
