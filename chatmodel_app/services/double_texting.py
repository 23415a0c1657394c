"""Double-texting: what messages sent while a run is active do.

The version's ``double_texting`` policy decides, and a request may pick another one the version
lists in ``double_texting_allowed``:

- ``reject``: refused (SessionBusy, HTTP 409), the default;
- ``enqueue``: kept on the session and, after the active run ends, stored and run, batch by batch
  in the order they came;
- ``interrupt``: the active run is cancelled (its partial reply is stored, marked cancelled), then
  the messages are stored and a run starts;
- ``rollback``: as interrupt, but the partial reply is not stored (the Run keeps it as its record).

A run started this way belongs to the server like any other: clients follow it through the
session's events (websocket, SSE) and can rejoin it. The rules hold across worker processes:
the queue is a column of the session row, changed under its row lock, and cancels reach the
active run's worker through the database (and its control channel).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..conf import conf
from ..exceptions import InvalidParams, SessionBusy
from ..llm.messages import PYTHON_ROLES
from ..models import Message, Session, Version
from ..validation import validate_messages
from . import leases
from .messages import messages_add
from .runs import run_cancel

logger = logging.getLogger("chatmodel_app")

Policy = Version.DoubleTexting
# Batches a session may hold in its queue; more are refused as busy.
MAX_QUEUED = 20
# Seconds an interrupt waits for the active run to stop before it gives up (SessionBusy).
INTERRUPT_WAIT_SECONDS = 15.0

# Runs this process started after a finished run (enqueue), kept so the loop does not drop them.
_tasks: set[asyncio.Task[Any]] = set()


def interrupt_active(*, session: Session, rollback: bool) -> None:
    """Cancel the session's active run (its partial reply kept, or discarded for a rollback) and wait until it
    has let the session go; SessionBusy when it does not within INTERRUPT_WAIT_SECONDS."""
    run_cancel(session=session, rollback=rollback)
    deadline = time.monotonic() + INTERRUPT_WAIT_SECONDS
    while leases.holder(session_id=session.pk) is not None:
        if time.monotonic() > deadline:
            raise SessionBusy(f"Session {session.uuid}: the active run did not stop in time; try again.")
        time.sleep(0.05)


def policy_for(version: Version, requested: Any = None) -> str:
    """The policy that applies: the version's, or the one requested if the version allows it."""
    if requested in (None, ""):
        return version.double_texting
    if not isinstance(requested, str) or requested not in Policy.values:
        raise InvalidParams(f"double_texting must be one of {', '.join(Policy.values)}; got {requested!r}.")
    allowed = {version.double_texting, *version.double_texting_allowed}
    if requested not in allowed:
        raise InvalidParams(
            f"double_texting {requested!r} is not allowed by {version.chat_model.name} v{version.number}; "
            f"it allows {', '.join(sorted(allowed))}."
        )
    return requested


@dataclass
class Submitted:
    """What ``messages_submit`` did: the messages stored now, and the run it queued or started, if any."""

    messages: list[Message] = field(default_factory=list)
    # None: the session was free, the messages were simply added; else the policy that was applied.
    policy: str | None = None
    # "queued" (enqueue: runs after the active run), "start" (the caller starts a run now), or None.
    run: str | None = None


def messages_submit(
    *,
    session: Session,
    messages: Any,
    allowed_roles: frozenset[str] = PYTHON_ROLES,
    idempotency_key: str | None = None,
    double_texting: Any = None,
) -> Submitted:
    """``messages_add`` with the session's double-texting policy applied when a run is active.

    When the result's ``run`` is "start", the caller starts the run: ``start_run`` from sync code,
    ``astart_run`` from async code (a task of its loop).
    """
    policy = policy_for(session.version, double_texting)
    try:
        rows = messages_add(
            session=session, messages=messages, allowed_roles=allowed_roles, idempotency_key=idempotency_key
        )
        return Submitted(messages=rows)
    except SessionBusy:
        if policy == Policy.REJECT:
            raise
    if policy == Policy.ENQUEUE:
        clean = validate_messages(
            messages,
            allowed_roles=allowed_roles,
            max_messages=conf.MAX_MESSAGES_PER_REQUEST,
            max_chars=conf.MAX_MESSAGE_CHARS,
        )
        batch = {"messages": clean, "idempotency_key": idempotency_key, "allowed_roles": sorted(allowed_roles)}
        if _enqueue(session, batch):
            return Submitted(policy=policy, run="queued")
        # The active run ended meanwhile: this batch goes first, now.
        rows = messages_add(
            session=session, messages=clean, allowed_roles=allowed_roles, idempotency_key=idempotency_key
        )
        return Submitted(messages=rows, policy=policy, run="start")
    # interrupt / rollback
    interrupt_active(session=session, rollback=policy == Policy.ROLLBACK)
    rows = messages_add(
        session=session, messages=messages, allowed_roles=allowed_roles, idempotency_key=idempotency_key
    )
    return Submitted(messages=rows, policy=policy, run="start")


def _enqueue(session: Session, batch: Mapping[str, Any]) -> bool:
    """Add a batch to the session's queue while a run is active; False when none is (the caller goes on)."""
    with transaction.atomic():
        row = (
            Session.objects.select_for_update().only("active_run_uuid", "lease_expires_at", "queued").get(pk=session.pk)
        )
        if row.active_run_uuid is None or (row.lease_expires_at and row.lease_expires_at < timezone.now()):
            return False
        if len(row.queued) >= MAX_QUEUED:
            raise SessionBusy(f"Session {session.uuid} already has {MAX_QUEUED} batches of messages queued.")
        Session.objects.filter(pk=session.pk).update(queued=[*row.queued, dict(batch)])
    return True


def queue_next(*, session: Session) -> bool:
    """After a run: store the first queued batch if the session is free; True when a run should follow.

    Never raises: the run that ended is stored already, and its caller must get its final chunk.
    """
    try:
        return _queue_next(session)
    except Exception:
        logger.exception("chatmodel: could not start the queued messages of session %s", session.uuid)
        return False


def _queue_next(session: Session) -> bool:
    with transaction.atomic():
        row = Session.objects.select_for_update().only("active_run_uuid", "queued").filter(pk=session.pk).first()
        if row is None or not row.queued or row.active_run_uuid is not None:
            return False
        batch, rest = row.queued[0], row.queued[1:]
        Session.objects.filter(pk=session.pk).update(queued=rest)
        messages_add(
            session=session,
            messages=batch["messages"],
            allowed_roles=frozenset(batch.get("allowed_roles") or PYTHON_ROLES),
            idempotency_key=batch.get("idempotency_key"),
        )
    return True


def queue_adopt(*, session_id: int, now: Any) -> bool:
    """Store, in order, the batches queued behind a run whose lease expired, and free its session.

    Called by ``leases.reap`` once that run's record is ended. True when there were batches and they are
    stored; False when there were none, or (logged) when they could not be stored: they then stay queued.
    """
    try:
        with transaction.atomic():
            row = (
                Session.objects.select_for_update()
                .filter(pk=session_id, active_run_uuid__isnull=False, lease_expires_at__lt=now)
                .first()
            )
            if row is None or not row.queued:
                return False
            Session.objects.filter(pk=session_id).update(active_run_uuid=None, lease_expires_at=None, queued=[])
            for batch in row.queued:
                messages_add(
                    session=row,
                    messages=batch["messages"],
                    allowed_roles=frozenset(batch.get("allowed_roles") or PYTHON_ROLES),
                    idempotency_key=batch.get("idempotency_key"),
                )
    except Exception:
        logger.exception("chatmodel: could not store the batches queued behind an expired run (session %s)", session_id)
        return False
    return True


def start_run(*, session: Session) -> None:
    """Start a streamed run of the session on a thread of its own; its events reach the session's clients."""
    threading.Thread(target=_drive_sync, args=(session,), name="chatmodel-run", daemon=True).start()


def astart_run(*, session: Session) -> None:
    """Start a streamed run of the session as a task of the running loop."""
    from .streaming import arun_stream

    async def drive() -> None:
        async for _chunk in arun_stream(session=session):
            pass

    task = asyncio.get_running_loop().create_task(drive())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _drive_sync(session: Session) -> None:
    from .streaming import run_stream

    try:
        for _chunk in run_stream(session=session):
            pass
    except Exception:
        logger.exception("chatmodel: a run started by double-texting on session %s failed", session.uuid)
    finally:
        connections.close_all()
