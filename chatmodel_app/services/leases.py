"""The session lease: one active run per session, held across processes by conditional UPDATEs.

A run takes the session's lease (``active_run_uuid`` + ``lease_expires_at``), renews it while it
works, and releases it when it stores its outcome. A lease that outlives its worker (a killed or
stalled process) expires; whoever next takes the session, adds messages to it or rejoins it ends
that run's record as ``lease_expired`` and stores the messages it left queued (``reap``). Each step
is one conditional UPDATE, so two processes never both win.

Renewal, the cross-process cancel check and the snapshot of each stream's text so far are
batched per worker process (``Keeper``): at most one UPDATE, one SELECT and one UPDATE per beat
for all of the process's active runs, not one per run or per token.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, F, IntegerField, Q, TextField, Value, When
from django.utils import timezone

from .. import events
from ..conf import conf
from ..models import Run, Session

# Seconds between a process's batched lease renewals and cancel checks.
HEARTBEAT_SECONDS = 1.0


def _lease_end(now: datetime) -> datetime:
    return now + timedelta(seconds=conf.RUN_LEASE_SECONDS)


def _free(now: datetime) -> Q:
    return Q(active_run_uuid__isnull=True) | Q(lease_expires_at__lt=now)


def expire(*, session_id: int, now: datetime) -> int:
    """End the record of the run whose lease on the session expired; return how many runs that ended.

    The run that held it died with its worker or stalled past its lease: it must not store its reply
    after messages it never saw (``release`` is conditional on the lease), and its record says why.
    """
    stale = Session.objects.filter(pk=session_id, active_run_uuid__isnull=False, lease_expires_at__lt=now).values(
        "active_run_uuid"
    )
    return Run.objects.filter(uuid__in=stale, status=Run.Status.IN_PROGRESS).update(
        status=Run.Status.FAILED,
        error="lease_expired",
        error_log="The worker running this run stopped before it finished; its lease expired.",
        finished_at=now,
    )


def reap(*, session_id: int, now: datetime | None = None) -> None:
    """End an expired holder's record and store the batches its session queued behind it (double-texting).

    Those batches were accepted while the run was alive; its worker died before it could store them,
    so they go in now, in order, before whatever the caller came to add. Never raises for the queue:
    if it cannot be stored, it stays on the session for the next run's end (``queue_next``).
    """
    now = now or timezone.now()
    stale = (
        Session.objects.filter(pk=session_id, active_run_uuid__isnull=False, lease_expires_at__lt=now)
        .values_list("uuid", "active_run_uuid")
        .first()
    )
    if stale is None or stale[1] is None:
        return
    if expire(session_id=session_id, now=now):
        _announce_expired(str(stale[0]), stale[1])
    from .double_texting import queue_adopt  # double_texting builds on messages, which builds on this module

    queue_adopt(session_id=session_id, now=now)


def _announce_expired(session_uuid: str, run_uuid: uuid.UUID) -> None:
    """Tell the session's clients still following the dead run that it ended: ``run.failed``, ``lease_expired``."""
    if not conf.PUBLISH_EVENTS:
        return
    run = Run.objects.filter(uuid=run_uuid).values("error_log", "partial_content", "partial_seq").first()
    if run is None:
        return
    maker = events.RunEvents(session_uuid, str(run_uuid))
    maker.seq = run["partial_seq"] or 0  # after the last event its worker is known to have sent
    events.publish(
        maker.make(
            events.RUN_FAILED,
            status=Run.Status.FAILED,
            error="lease_expired",
            error_log=run["error_log"],
            partial_content=run["partial_content"],
        )
    )


def _take_over(session_id: int, now: datetime, **fields: Any) -> bool:
    """One conditional UPDATE on a free session; only when that fails, end an expired holder and try again."""
    if Session.objects.filter(pk=session_id, active_run_uuid__isnull=True).update(**fields):
        return True  # the common case: nobody held it, one query
    reap(session_id=session_id, now=now)
    return bool(Session.objects.filter(_free(now), pk=session_id).update(**fields))


def take(*, session_id: int, run_uuid: uuid.UUID) -> bool:
    """Take the session for one run, unless another run holds an unexpired lease."""
    now = timezone.now()
    return _take_over(
        session_id, now, active_run_uuid=run_uuid, lease_expires_at=_lease_end(now), failed_run_seq=None, updated_at=now
    )


def reserve_seqs(*, session_id: int, n: int) -> bool:
    """Reserve ``n`` seqs at the session's end while no run holds it; False when one does.

    Adding messages ends an expired lease too, as ``take`` does.
    """
    now = timezone.now()
    return _take_over(
        session_id,
        now,
        next_seq=F("next_seq") + n,
        active_run_uuid=None,
        lease_expires_at=None,
        updated_at=now,
        last_activity_at=now,  # the conversation list's order, in the same UPDATE (named conversations)
    )


def renew(*, run_uuids: Any) -> int:
    """Extend the leases of these runs (those that still hold one); return how many were renewed."""
    run_uuids = list(run_uuids)
    if not run_uuids:
        return 0
    return Session.objects.filter(active_run_uuid__in=run_uuids).update(lease_expires_at=_lease_end(timezone.now()))


def release(*, session_id: int, run_uuid: uuid.UUID, failed_seq: int | None = None, reserve: int = 0) -> bool:
    """Free the session if this run still holds it, reserving ``reserve`` seqs for its reply; False if not."""
    fields: dict[str, Any] = {"active_run_uuid": None, "lease_expires_at": None}
    if reserve:
        now = timezone.now()
        fields.update(next_seq=F("next_seq") + reserve, updated_at=now, last_activity_at=now)
    else:
        fields["failed_run_seq"] = failed_seq
    return bool(Session.objects.filter(pk=session_id, active_run_uuid=run_uuid).update(**fields))


def holder(*, session_id: int) -> uuid.UUID | None:
    """The run that holds the session's lease; None when none does, or when its lease expired (its worker died
    or stalled: the session is free for whoever comes next, see ``reap``)."""
    return (
        Session.objects.filter(pk=session_id, lease_expires_at__gte=timezone.now())
        .values_list("active_run_uuid", flat=True)
        .first()
    )


def cancel_requested(*, run_uuids: Any) -> dict[str, bool]:
    """Which of these runs someone asked to cancel (in any process): run uuid -> whether to roll it back."""
    run_uuids = list(run_uuids)
    if not run_uuids:
        return {}
    rows = Run.objects.filter(uuid__in=run_uuids, cancel_requested=True).values_list("uuid", "rollback_requested")
    return {str(u): rollback for u, rollback in rows}


def partials_save(*, snapshots: dict[str, tuple[int, str]]) -> int:
    """Save the text so far of these in-progress runs (run uuid -> (event seq, text)), in one UPDATE."""
    if not snapshots:
        return 0
    # NUL, which PostgreSQL refuses, as U+FFFD (as the stored reply will have it).
    text = Case(
        *(When(uuid=u, then=Value(t.replace("\x00", "\ufffd"))) for u, (_, t) in snapshots.items()),
        output_field=TextField(),
    )
    seq = Case(*(When(uuid=u, then=Value(s)) for u, (s, _) in snapshots.items()), output_field=IntegerField())
    return Run.objects.filter(uuid__in=list(snapshots), status=Run.Status.IN_PROGRESS).update(
        partial_content=text, partial_seq=seq
    )


class Keeper:
    """This process's active runs: their batched lease renewals and cancels.

    Process-wide state (see ``chatmodel_app/services/__init__.py``): ``cancels`` holds the runs this
    process was asked to stop, by a local ``run_cancel`` or found by a beat in the database; stream
    loops check it on every chunk, which costs a set lookup.
    """

    def __init__(self) -> None:
        # run uuid -> a callable giving its (event seq, text so far) for streams, or None
        self.active: dict[str, Callable[[], tuple[int, str]] | None] = {}
        self.cancels: set[str] = set()
        # Cancelled runs whose partial reply is discarded (double-texting "rollback").
        self.rollbacks: set[str] = set()
        self._saved: dict[str, int] = {}
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._beating = False

    def add(self, run_uuid: str, *, partial: Callable[[], tuple[int, str]] | None = None) -> None:
        """Keep this run's lease alive (and, with ``partial``, save its text so far at each beat)."""
        if not self.active:
            # The first beat of a busy spell is due a full interval after it starts: short runs never beat.
            self._last = time.monotonic()
        self.active[run_uuid] = partial

    def discard(self, run_uuid: str) -> None:
        self.active.pop(run_uuid, None)
        self.cancels.discard(run_uuid)
        self.rollbacks.discard(run_uuid)
        self._saved.pop(run_uuid, None)

    def cancel(self, run_uuid: str, *, rollback: bool = False) -> None:
        """Ask a run of this process to stop (its stream loop sees it at the next chunk)."""
        if rollback:
            self.rollbacks.add(run_uuid)
        self.cancels.add(run_uuid)

    def cancelled(self, run_uuid: str) -> bool:
        return run_uuid in self.cancels

    def due(self) -> bool:
        """Whether a beat is due (a cheap check for every chunk)."""
        return not self._beating and time.monotonic() - self._last >= HEARTBEAT_SECONDS

    def beat(self) -> None:
        """Renew every active run's lease and pick up cancels from other processes (sync; one caller at a time)."""
        with self._lock:
            if self._beating or time.monotonic() - self._last < HEARTBEAT_SECONDS:
                return
            self._beating = True
        try:
            active = dict(self.active)
            renew(run_uuids=active)
            for run_uuid, rollback in cancel_requested(run_uuids=active).items():
                self.cancel(run_uuid, rollback=rollback)
            snapshots = {u: partial() for u, partial in active.items() if partial is not None}
            changed = {u: snap for u, snap in snapshots.items() if snap[1] and self._saved.get(u) != snap[0]}
            if changed:
                partials_save(snapshots=changed)
                self._saved.update((u, snap[0]) for u, snap in changed.items())
        finally:
            self._last = time.monotonic()
            self._beating = False


keeper = Keeper()
