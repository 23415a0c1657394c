"""The lease protocol, each step on its own: take, renew, release, expire, and the per-process keeper."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from chatmodel_app.models import Run, Session
from chatmodel_app.services import leases, session_create


@pytest.fixture
def session(make_chat_model):
    return session_create(chat_model=make_chat_model(), version="latest")


def _row(session: Session) -> Session:
    return Session.objects.get(pk=session.pk)


def _run(session: Session, run_uuid: uuid.UUID) -> Run:
    return Run.objects.create(uuid=run_uuid, session=session, version=session.version, model="offline/demo")


def test_take_holds_the_session_for_one_run_until_it_is_released(session):
    first, second = uuid.uuid4(), uuid.uuid4()
    assert leases.take(session_id=session.pk, run_uuid=first)
    assert not leases.take(session_id=session.pk, run_uuid=second)
    row = _row(session)
    assert row.active_run_uuid == first
    assert row.lease_expires_at > timezone.now()
    assert leases.holder(session_id=session.pk) == first

    assert not leases.release(session_id=session.pk, run_uuid=second)  # only the holder releases
    assert leases.release(session_id=session.pk, run_uuid=first, failed_seq=3)
    row = _row(session)
    assert (row.active_run_uuid, row.lease_expires_at, row.failed_run_seq) == (None, None, 3)
    assert leases.take(session_id=session.pk, run_uuid=second)
    assert _row(session).failed_run_seq is None  # a new run forgets the failed one


def test_release_with_reserve_allocates_the_reply_seq(session):
    run_uuid = uuid.uuid4()
    before = _row(session).next_seq
    leases.take(session_id=session.pk, run_uuid=run_uuid)
    assert leases.release(session_id=session.pk, run_uuid=run_uuid, reserve=1)
    assert _row(session).next_seq == before + 1
    assert not leases.release(session_id=session.pk, run_uuid=run_uuid, reserve=1)  # released already
    assert _row(session).next_seq == before + 1


def test_an_expired_lease_is_taken_over_and_its_run_recorded_as_lease_expired(session):
    stale = uuid.uuid4()
    leases.take(session_id=session.pk, run_uuid=stale)
    _run(session, stale)
    Session.objects.filter(pk=session.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    newer = uuid.uuid4()
    assert leases.take(session_id=session.pk, run_uuid=newer)
    stale_run = Run.objects.get(uuid=stale)
    assert (stale_run.status, stale_run.error) == (Run.Status.FAILED, "lease_expired")
    # The stalled run can no longer store anything: its release is refused.
    assert not leases.release(session_id=session.pk, run_uuid=stale, reserve=1)


def test_expire_leaves_a_live_lease_alone(session):
    run_uuid = uuid.uuid4()
    leases.take(session_id=session.pk, run_uuid=run_uuid)
    _run(session, run_uuid)
    assert leases.expire(session_id=session.pk, now=timezone.now()) == 0
    assert Run.objects.get(uuid=run_uuid).status == Run.Status.IN_PROGRESS


def test_reserve_seqs_is_refused_while_a_run_holds_the_session(session):
    before = _row(session).next_seq
    assert leases.reserve_seqs(session_id=session.pk, n=2)
    assert _row(session).next_seq == before + 2
    run_uuid = uuid.uuid4()
    leases.take(session_id=session.pk, run_uuid=run_uuid)
    assert not leases.reserve_seqs(session_id=session.pk, n=1)
    assert _row(session).next_seq == before + 2


def test_reserve_seqs_ends_an_expired_lease(session):
    stale = uuid.uuid4()
    leases.take(session_id=session.pk, run_uuid=stale)
    _run(session, stale)
    Session.objects.filter(pk=session.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases.reserve_seqs(session_id=session.pk, n=1)
    assert _row(session).active_run_uuid is None
    assert Run.objects.get(uuid=stale).error == "lease_expired"


def test_renew_extends_only_the_leases_still_held(session, make_chat_model):
    other = session_create(chat_model=session.chat_model, version="latest")
    held, gone = uuid.uuid4(), uuid.uuid4()
    leases.take(session_id=session.pk, run_uuid=held)
    leases.take(session_id=other.pk, run_uuid=gone)
    leases.release(session_id=other.pk, run_uuid=gone)
    soon = timezone.now() + timedelta(seconds=5)
    Session.objects.filter(pk=session.pk).update(lease_expires_at=soon)

    assert leases.renew(run_uuids=[held, gone]) == 1  # one UPDATE for all of them
    assert _row(session).lease_expires_at > soon
    assert _row(other).lease_expires_at is None
    assert leases.renew(run_uuids=[]) == 0


def test_the_keeper_renews_all_active_runs_and_picks_up_cancels_in_one_beat(session, django_assert_num_queries):
    other = session_create(chat_model=session.chat_model, version="latest")
    a, b = uuid.uuid4(), uuid.uuid4()
    for s, run_uuid in ((session, a), (other, b)):
        leases.take(session_id=s.pk, run_uuid=run_uuid)
        _run(s, run_uuid)
    Run.objects.filter(uuid=b).update(cancel_requested=True)  # as run_cancel in another process does
    Session.objects.update(lease_expires_at=timezone.now() + timedelta(seconds=5))

    keeper = leases.Keeper()
    keeper.add(str(a))
    keeper.add(str(b))
    assert not keeper.due()  # a busy spell beats a full interval after it starts
    keeper._last -= leases.HEARTBEAT_SECONDS
    assert keeper.due()
    with django_assert_num_queries(2):  # one UPDATE and one SELECT, however many runs
        keeper.beat()
    assert not keeper.due()
    assert keeper.cancelled(str(b)) and not keeper.cancelled(str(a))
    assert all(row.lease_expires_at > timezone.now() + timedelta(seconds=10) for row in Session.objects.all())
    keeper.discard(str(b))
    assert not keeper.cancelled(str(b)) and set(keeper.active) == {str(a)}
