"""Branches: regenerate a reply, edit an earlier user message, switch between alternatives, fork a session.

The shape (context/paths.py): every message carries a branch number; ``Session.branches`` holds one
record per branch, ``{"id", "parent", "cut", "at", "kind", "from"}``: the branch replaces its parent's
message ``seq == cut`` and all after it. ``Session.branch`` is the branch the conversation is on now;
the current path is the chain of branches from 0 to it. Alternatives at one point of the conversation
are the parent's message at ``cut`` (index 0) and the first message of every branch with that same
``(parent, cut)`` (index 1, 2, ... in the order they were made): a fork at the first message of a
branch is made at that branch's own fork point, so siblings always share one record key.

Changing the path needs a free session, checked and changed in one conditional UPDATE of the session
row (the one that also reserves seqs), so a run never sees the path change under it and a new path
never gets a reply computed from the old one. While a run is active the version's double-texting
policy applies: ``reject`` (and ``enqueue``: a regenerate or an edit cannot wait in the queue) raises
SessionBusy; ``interrupt``/``rollback`` cancel the active run first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Min

from .. import events
from ..conf import conf
from ..context import paths
from ..exceptions import InvalidMessages, InvalidParams, MessageNotFound, SessionBusy, SessionNotFound
from ..models import Message, Session
from ..validation import message_seq_clean, validate_messages
from . import leases
from .double_texting import Policy, interrupt_active, policy_for
from .messages import messages_add

logger = logging.getLogger("chatmodel_app")

PATH_CHANGED = "session.path_changed"


# --- reads ------------------------------------------------------------------------------------------------


def _first_seqs(session: Session, branch_ids: Iterable[int]) -> dict[int, int]:
    """The first stored seq of each of these branches (one indexed aggregate query)."""
    ids = sorted({b for b in branch_ids if b})
    if not ids:
        return {}
    rows = (
        Message.objects.filter(session_id=session.pk, branch__in=ids)
        .values("branch")
        .annotate(first=Min("seq"))
        .values_list("branch", "first")
    )
    return dict(rows)


def _children(branches: Any) -> dict[tuple[int, int], list[int]]:
    """Branch ids by their fork point ``(parent, cut)``, oldest first."""
    out: dict[tuple[int, int], list[int]] = {}
    for rec in sorted(branches or [], key=lambda r: int(r["id"])):
        if rec.get("parent") is not None:
            out.setdefault((int(rec["parent"]), int(rec["cut"])), []).append(int(rec["id"]))
    return out


def message_alternatives(*, session: Session, messages: Iterable[Message]) -> dict[int, dict[str, int]]:
    """``{seq: {"index": i, "count": n}}`` for each of these path messages that has alternatives."""
    messages = list(messages)
    branch, branches = paths.state(session)
    if not branches or not messages:
        return {}
    by_id = paths.records(branches)
    children = _children(branches)
    firsts = _first_seqs(session, (m.branch for m in messages))
    out: dict[int, dict[str, int]] = {}
    for m in messages:
        siblings = children.get((m.branch, m.seq))
        if siblings:
            out[m.seq] = {"index": 0, "count": len(siblings) + 1}
            continue
        rec = by_id.get(m.branch)
        if m.branch and rec and firsts.get(m.branch) == m.seq:
            siblings = children.get((int(rec["parent"]), int(rec["cut"])), [])
            if m.branch in siblings:
                out[m.seq] = {"index": siblings.index(m.branch) + 1, "count": len(siblings) + 1}
    return out


def messages_with_alternatives(*, session: Session, messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as the REST API shows them, each with ``alternatives`` (None where it has none)."""
    from ..selectors import message_json

    alts = message_alternatives(session=session, messages=messages)
    return [{**message_json(m), "alternatives": alts.get(m.seq)} for m in messages]


def _path_message(session: Session, seq: Any) -> Message:
    """The message ``seq`` of the current path, or MessageNotFound."""
    seq = message_seq_clean(seq)
    rows = Message.objects.filter(session_id=session.pk, seq=seq)
    path = paths.path_q(session)
    if path is not None:
        rows = rows.filter(path)
    message = rows.first()
    if message is None:
        raise MessageNotFound(f"Session {session.uuid} has no message {seq} on its current path.")
    return message


# --- writes -----------------------------------------------------------------------------------------------


def _free(session: Session, double_texting: Any) -> None:
    """Wait for the session to be free under the double-texting policy (interrupt/rollback), or SessionBusy."""
    policy = policy_for(session.version, double_texting)
    if leases.holder(session_id=session.pk) is None:
        return
    if policy not in (Policy.INTERRUPT, Policy.ROLLBACK):
        raise SessionBusy(
            f"Session {session.uuid} is busy: a run is in progress. Wait for its reply (or cancel it) before "
            "regenerating, editing or switching branches."
        )
    interrupt_active(session=session, rollback=policy == Policy.ROLLBACK)


def _lock(session: Session) -> None:
    """Inside a transaction: lock the session row if no run holds it (else SessionBusy), and read its branches."""
    if not leases.reserve_seqs(session_id=session.pk, n=0):
        if not Session.objects.filter(pk=session.pk).exists():
            raise SessionNotFound(f"Session {session.uuid} was deleted.")
        raise SessionBusy(f"Session {session.uuid} is busy: a run is in progress.")
    paths.state(session, fresh=True)


def _save(session: Session, branch: int, branches: list[dict[str, Any]], *, cut: int | None) -> None:
    fields: dict[str, Any] = {"branch": branch, "branches": branches, "failed_run_seq": None}
    # A rolling summary of history the new path does not share is dropped; the next run writes a new one.
    if cut is not None and session.summary_until_seq is not None:
        until = Session.objects.filter(pk=session.pk).values_list("summary_until_seq", flat=True).first()
        if until is not None and until >= cut:
            fields.update(summary="", summary_until_seq=None)
    Session.objects.filter(pk=session.pk).update(**fields)
    session.branch, session.branches = branch, branches
    for key in ("summary", "summary_until_seq"):
        if key in fields:
            setattr(session, key, fields[key])


def _fork_point(session: Session, message: Message) -> tuple[int, int]:
    """Where an alternative to ``message`` forks: its own branch's fork point when it opens that branch."""
    if message.branch:
        rec = paths.records(session.branches).get(message.branch)
        if (
            rec
            and rec.get("parent") is not None
            and _first_seqs(session, [message.branch]).get(message.branch) == (message.seq)
        ):
            return int(rec["parent"]), int(rec["cut"])
    return message.branch, message.seq


def _new_branch(session: Session, message: Message, kind: str) -> tuple[int, list[dict[str, Any]], int]:
    parent, cut = _fork_point(session, message)
    records = paths.records(session.branches)
    new_id = max(records) + 1
    at = max(int(r.get("at", 0)) for r in records.values()) + 1
    rec = {"id": new_id, "parent": parent, "cut": cut, "at": at, "kind": kind, "from": session.branch}
    return new_id, [*sorted(records.values(), key=lambda r: int(r["id"])), rec], cut


def _announce(session: Session, reason: str) -> None:
    if conf.PUBLISH_EVENTS:
        event = events.RunEvents(str(session.uuid), None).make(PATH_CHANGED, reason=reason, branch=session.branch)
        events.publish(event)


def regenerate_prepare(*, session: Session, double_texting: Any = None) -> Message | None:
    """Put the session on a new branch without its last reply, so the next run answers again; the old reply
    stays as an alternative. Returns the user message the new reply answers (None when there was no reply yet:
    then nothing changes and the run simply answers). The caller starts the run (``run``, ``run_stream``, ...).
    """
    _free(session, double_texting)
    with transaction.atomic():
        _lock(session)
        tail = _path_tail(session)
        last_user = next((m for m in reversed(tail) if m.role == Message.Role.USER), None)
        if last_user is None:
            raise InvalidMessages(f"Session {session.uuid} has no user message to answer again.", code="no_messages")
        after = [m for m in tail if m.seq > last_user.seq]
        if not after:
            return last_user
        branch, branches, cut = _new_branch(session, after[0], "regenerate")
        _save(session, branch, branches, cut=cut)
    _announce(session, "regenerate")
    return last_user


def _path_tail(session: Session, size: int = 64) -> list[Message]:
    """The newest messages of the current path, oldest first (enough to reach the last user message)."""
    base = Message.objects.filter(session_id=session.pk)
    union = paths.newest_first(base, session, columns=("seq",), size=size)
    if union is None:
        seqs = list(base.order_by("-seq").values_list("seq", flat=True)[:size])
    else:
        seqs = [r[0] for r in paths.fetch(base.db, *union)]
    return list(base.filter(seq__in=seqs).order_by("seq"))


def message_edit(*, session: Session, seq: Any, content: Any, double_texting: Any = None) -> Message:
    """Store ``content`` as a new version of the user message ``seq``, on a new branch that continues from it.

    The old message and what followed stay as an alternative. Returns the stored message; the caller runs.
    """
    clean = validate_messages(
        [{"role": "user", "content": content}],
        allowed_roles=frozenset({"user"}),
        max_messages=1,
        max_chars=conf.MAX_MESSAGE_CHARS,
    )
    _free(session, double_texting)
    with transaction.atomic():
        _lock(session)
        message = _path_message(session, seq)
        if message.role != Message.Role.USER:
            raise InvalidParams(f"Only a user message can be edited; message {message.seq} is a {message.role}.")
        branch, branches, cut = _new_branch(session, message, "edit")
        _save(session, branch, branches, cut=cut)
        # Stored with the switch, in one transaction: a failed add leaves the path as it was.
        (stored,) = messages_add(session=session, messages=clean, allowed_roles=frozenset({"user"}))
    _announce(session, "edit")
    return stored


def branch_switch(*, session: Session, seq: Any, index: Any) -> Session:
    """Show alternative ``index`` (0-based) of the path message ``seq``; the path continues where that
    alternative was last left. Refused (SessionBusy) while a run is active."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidParams(f"index must be an integer >= 0; got {index!r}.")
    with transaction.atomic():
        _lock(session)
        message = _path_message(session, seq)
        parent, cut = _fork_point(session, message)
        siblings = _children(session.branches).get((parent, cut), [])
        if index > len(siblings):
            raise InvalidParams(
                f"Message {message.seq} has {len(siblings) + 1} alternatives; index {index} is not one."
            )
        records = paths.records(session.branches)
        if index == 0:
            # The original: the parent itself, or a branch below it that keeps the message at cut.
            candidates = [b for b in records if b == parent or _keeps(records, b, parent, cut)]
        else:
            top = siblings[index - 1]
            candidates = [b for b in records if top in paths.chain(b, session.branches)]
        target = max(candidates, key=lambda b: (int(records[b].get("at", 0)), b))
        at = max(int(r.get("at", 0)) for r in records.values()) + 1
        records[target] = {**records[target], "at": at}
        _save(session, target, sorted(records.values(), key=lambda r: int(r["id"])), cut=cut)
    _announce(session, "switch")
    return session


def _keeps(records: dict[int, dict[str, Any]], branch: int, parent: int, cut: int) -> bool:
    """Whether ``branch`` descends from ``parent`` by a fork after ``cut`` (so its path keeps message ``cut``)."""
    ids = paths.chain(branch, list(records.values()))
    if parent not in ids or ids[-1] == parent:
        return False
    child = ids[ids.index(parent) + 1]
    return int(records[child]["cut"]) > cut


def session_fork(*, session: Session, seq: Any, user: Any = None) -> Session:
    """A new session of the same chat model and version whose messages are this one's current path up to
    and including message ``seq`` (one branch, seq from 1)."""
    from .sessions import session_create

    paths.state(session, fresh=True)
    message = _path_message(session, seq)
    rows = Message.objects.filter(session_id=session.pk, seq__lte=message.seq)
    path = paths.path_q(session)
    if path is not None:
        rows = rows.filter(path)
    with transaction.atomic():
        new = session_create(
            chat_model=session.chat_model,
            version=session.version,
            user=user if user is not None else session.user,
            metadata={**(session.metadata or {}), "forked_from": {"session": str(session.uuid), "seq": message.seq}},
            variables=session.variables,  # the fork keeps the prompt variables' values (docs/prompts.md)
        )
        copies = [
            Message(
                session=new,
                seq=i,
                role=m.role,
                content=m.content,
                name=m.name,
                function_call=m.function_call,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                token_count=m.token_count,
                metadata=m.metadata,
            )
            for i, m in enumerate(rows.order_by("seq").iterator(), start=1)
        ]
        Message.objects.bulk_create(copies, batch_size=1000)
        Session.objects.filter(pk=new.pk).update(next_seq=len(copies) + 1)
        new.next_seq = len(copies) + 1
    return new


def after_failed_run(*, session_id: int) -> None:
    """After a failed run: a regenerate branch that got no reply is dropped and its path restored, so the
    old reply is shown again rather than a question without an answer. Never raises."""
    try:
        with transaction.atomic():
            row = (
                Session.objects.select_for_update()
                .filter(pk=session_id, active_run_uuid__isnull=True)
                .values_list("branch", "branches")
                .first()
            )
            if row is None or not row[0]:
                return
            branch, branches = row
            rec = paths.records(branches).get(branch)
            if (
                not rec
                or rec.get("kind") != "regenerate"
                or any(int(r.get("parent") or -1) == branch for r in branches)
            ):
                return
            if Message.objects.filter(session_id=session_id, branch=branch).exists():
                return
            rest = [r for r in branches if int(r["id"]) != branch]
            back = int(rec.get("from") or 0)
            Session.objects.filter(pk=session_id).update(branch=back, branches=rest if len(rest) > 1 else [])
    except Exception:
        logger.exception("chatmodel: could not restore the path of session %s after a failed regenerate", session_id)
