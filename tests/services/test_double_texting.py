"""Double-texting: messages sent while a run is active, under each policy (reject, enqueue, interrupt, rollback)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from chatmodel_app import events
from chatmodel_app.exceptions import InvalidParams, SessionBusy
from chatmodel_app.models import Message, Run, Session, Version
from chatmodel_app.services import leases, live, messages_add, run_stream, session_create
from chatmodel_app.services.double_texting import messages_submit, policy_for, start_run

pytestmark = pytest.mark.django_db(transaction=True)
LONG = " ".join(f"w{i}" for i in range(60))


@pytest.fixture
def session(make_chat_model, settings):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.02
    chat_model = make_chat_model(double_texting="reject", double_texting_allowed=["enqueue", "interrupt", "rollback"])
    session = session_create(chat_model=chat_model, version="latest")
    messages_add(session=session, messages=[{"role": "user", "content": f"Repeat after me: {LONG}"}])
    return session


def _stream_in_thread(session: Session) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["chunks"] = list(run_stream(session=session))
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 60
    while leases.holder(session_id=session.pk) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)  # a few words streamed
    return thread, box


def _wait_idle(session: Session, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = leases.holder(session_id=session.pk) is None
        if idle and not Session.objects.get(pk=session.pk).queued:
            time.sleep(0.2)
            if leases.holder(session_id=session.pk) is None:
                return
        time.sleep(0.05)
    row = Session.objects.get(pk=session.pk)
    raise AssertionError(f"the session did not become idle: {row.active_run_uuid} {row.queued} {_log(session)}")


def _log(session: Session) -> list[tuple[str, str]]:
    return [(m.role, (m.content or "")[:12]) for m in Message.objects.filter(session=session).order_by("seq")]


def test_reject_is_the_default_and_a_policy_must_be_allowed(session):
    thread, _ = _stream_in_thread(session)
    with pytest.raises(SessionBusy):
        messages_submit(session=session, messages=[{"role": "user", "content": "Hi?"}])
    with pytest.raises(InvalidParams, match="double_texting"):
        messages_submit(session=session, messages=[{"role": "user", "content": "Hi?"}], double_texting="never")
    thread.join(60)
    version = session.version
    Version.objects.filter(pk=version.pk).update(double_texting_allowed=[])
    version.refresh_from_db()
    with pytest.raises(InvalidParams, match="not allowed"):
        policy_for(version, "enqueue")
    assert policy_for(version, None) == "reject"


def test_enqueue_stores_and_runs_after_the_active_run_in_order(session):
    thread, _box = _stream_in_thread(session)
    first = messages_submit(
        session=session, messages=[{"role": "user", "content": "Second question"}], double_texting="enqueue"
    )
    second = messages_submit(
        session=session, messages=[{"role": "user", "content": "Third question"}], double_texting="enqueue"
    )
    assert (first.run, first.messages, second.run) == ("queued", [], "queued")
    thread.join(60)
    assert not thread.is_alive(), "the first run did not end"
    assert _box["chunks"][-1].status == "completed", _box["chunks"][-1]
    _wait_idle(session)
    roles = [role for role, _ in _log(session)]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    contents = [text for _, text in _log(session)]
    assert contents[2].startswith("Second") and contents[4].startswith("Third")
    assert set(Run.objects.filter(session=session).values_list("status", flat=True)) == {"completed"}
    seqs = list(Message.objects.filter(session=session).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 7))


def test_interrupt_keeps_the_partial_reply_then_runs_the_new_message(session):
    thread, _ = _stream_in_thread(session)
    submitted = messages_submit(
        session=session, messages=[{"role": "user", "content": "Stop, new idea"}], double_texting="interrupt"
    )
    assert submitted.run == "start" and len(submitted.messages) == 1
    thread.join(60)
    start_run(session=session)
    _wait_idle(session)
    log = Message.objects.filter(session=session).order_by("seq")
    assert [m.role for m in log] == ["user", "assistant", "user", "assistant"]
    partial = log[1]
    assert partial.metadata == {"cancelled": True} and 0 < len(partial.content) < len(LONG)
    statuses = list(Run.objects.filter(session=session).order_by("created_at").values_list("status", flat=True))
    assert statuses == ["cancelled", "completed"]


def test_rollback_discards_the_partial_reply_but_the_run_keeps_it(session):
    thread, _ = _stream_in_thread(session)
    submitted = messages_submit(
        session=session, messages=[{"role": "user", "content": "Never mind that"}], double_texting="rollback"
    )
    assert submitted.run == "start"
    thread.join(60)
    start_run(session=session)
    _wait_idle(session)
    assert [role for role, _ in _log(session)] == ["user", "user", "assistant"]
    first = Run.objects.filter(session=session).order_by("created_at").first()
    assert first.status == Run.Status.CANCELLED and first.partial_content
    assert not Message.objects.filter(run=first).exists()


# --- a queue left behind by a worker that died ---------------------------------------------------------------


def _dead_run_with_a_queued_batch(session: Session) -> uuid.UUID:
    """A run whose worker died mid-run: it holds an expired lease, with a batch enqueued behind it."""
    dead = uuid.uuid4()
    Run.objects.create(uuid=dead, session=session, version=session.version, model="offline/demo")
    assert leases.take(session_id=session.pk, run_uuid=dead)
    queued = messages_submit(
        session=session, messages=[{"role": "user", "content": "Queued"}], double_texting="enqueue"
    )
    assert queued.run == "queued"
    Session.objects.filter(pk=session.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return dead


def _ended_as_lease_expired(session: Session, dead: uuid.UUID) -> None:
    assert Run.objects.get(uuid=dead).error == "lease_expired"
    row = Session.objects.get(pk=session.pk)
    assert row.queued == []


def test_new_messages_after_a_dead_run_come_after_what_it_left_queued(session):
    dead = _dead_run_with_a_queued_batch(session)
    messages_submit(session=session, messages=[{"role": "user", "content": "Later"}])
    assert _log(session)[1:] == [("user", "Queued"), ("user", "Later")]
    _ended_as_lease_expired(session, dead)


def test_a_run_after_a_dead_run_answers_what_it_left_queued(session):
    dead = _dead_run_with_a_queued_batch(session)
    chunks = list(run_stream(session=session))
    assert chunks[-1].finish_reason == "stop"
    assert [role for role, _ in _log(session)] == ["user", "user", "assistant"]
    assert _log(session)[1] == ("user", "Queued")
    run = Run.objects.exclude(uuid=dead).get(session=session)
    assert run.status == Run.Status.COMPLETED and run.message_count == 2
    _ended_as_lease_expired(session, dead)


def test_a_rejoin_finds_a_dead_run_ended_and_its_queue_stored(session, monkeypatch):
    dead = _dead_run_with_a_queued_batch(session)
    Run.objects.filter(uuid=dead).update(partial_content="Half a rep", partial_seq=7)
    published: list[dict] = []
    monkeypatch.setattr(events, "publish", published.append)
    assert live.active_run(session_id=session.pk) is None
    # Clients still following the dead run (on other workers) learn that it ended, with what it had streamed.
    failed = [e for e in published if e["type"] == "run.failed"]
    assert len(failed) == 1
    assert failed[0]["run_id"] == str(dead) and failed[0]["seq"] == 8
    assert (failed[0]["error"], failed[0]["partial_content"]) == ("lease_expired", "Half a rep")
    assert Run.objects.get(uuid=dead).partial_content == "Half a rep"
    assert _log(session)[1:] == [("user", "Queued")]
    _ended_as_lease_expired(session, dead)
    assert Session.objects.get(pk=session.pk).active_run_uuid is None


def test_an_interrupt_does_not_wait_for_a_dead_run(session):
    """Its lease expired: the session is free, so the interrupt stores at once instead of timing out busy."""
    dead = _dead_run_with_a_queued_batch(session)
    submitted = messages_submit(
        session=session, messages=[{"role": "user", "content": "Interrupt"}], double_texting="interrupt"
    )
    assert submitted.run is None  # nothing was left to interrupt
    assert _log(session)[1:] == [("user", "Queued"), ("user", "Interrupt")]
    _ended_as_lease_expired(session, dead)
