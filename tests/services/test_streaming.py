"""The stream state machine: coalesced deltas, the text-so-far snapshot, abandon and cancel, sync and async alike."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chatmodel_app import events
from chatmodel_app.models import Message, Run
from chatmodel_app.services import leases, run_stream, session_create
from chatmodel_app.services.streaming import arun_stream

WORDS = " ".join(f"w{i}" for i in range(24))


@pytest.fixture
def session(make_chat_model):
    session = session_create(chat_model=make_chat_model(), version="latest")
    Message.objects.create(session=session, seq=1, role="user", content=f"Repeat after me: {WORDS}")
    session.__class__.objects.filter(pk=session.pk).update(next_seq=2)
    return session


def _deltas(chunks) -> list[str]:
    return [e["delta"] for c in chunks for e in c.events or () if e["type"] == events.TEXT_DELTA]


def test_without_coalescing_every_chunk_is_an_event(session, settings):
    settings.CHATMODEL_STREAM_COALESCE_MS = 0
    chunks = list(run_stream(session=session))
    texts = [c.content for c in chunks if c.content]
    assert _deltas(chunks) == texts
    assert chunks[-1].is_final and not chunks[-1].error


def test_deltas_are_coalesced_first_at_once_then_per_window(session, settings):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.01
    settings.CHATMODEL_STREAM_COALESCE_MS = 80
    chunks = list(run_stream(session=session))
    texts = [c.content for c in chunks if c.content]
    deltas = _deltas(chunks)
    final = chunks[-1]
    assert not final.error
    assert "".join(deltas) == "".join(texts) == Message.objects.get(run__uuid=final.run_uuid).content
    assert deltas[0] == texts[0]  # the first delta is not held back
    assert len(deltas) < len(texts) / 2  # fewer events than chunks: the fan-out's cost per token drops
    kinds = [e["type"] for c in chunks for e in c.events or ()]
    assert kinds[0] == events.RUN_STARTED and kinds[-1] == events.RUN_COMPLETED
    seqs = [e["seq"] for c in chunks for e in c.events or ()]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap for a client counting events


@pytest.mark.django_db(transaction=True)
async def test_async_stream_coalesces_alike(make_chat_model, settings):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.01
    settings.CHATMODEL_STREAM_COALESCE_MS = 80

    @sync_to_async
    def prepare():
        session = session_create(chat_model=make_chat_model(), version="latest")
        Message.objects.create(session=session, seq=1, role="user", content=f"Repeat after me: {WORDS}")
        session.__class__.objects.filter(pk=session.pk).update(next_seq=2)
        return session

    session = await prepare()
    chunks = [c async for c in arun_stream(session=session)]
    texts = [c.content for c in chunks if c.content]
    deltas = _deltas(chunks)
    assert "".join(deltas) == "".join(texts) and deltas[0] == texts[0]
    assert len(deltas) < len(texts) / 2


def test_the_beat_saves_the_text_so_far_and_a_finished_run_clears_it(session, settings, monkeypatch):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.01
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.05)
    seen: list[str] = []
    stream = run_stream(session=session)
    for chunk in stream:
        if chunk.is_final:
            break
        seen.append(Run.objects.get(uuid=chunk.run_uuid).partial_content)
    snapshots = [s for s in seen if s]
    assert snapshots, "no snapshot was saved while the stream ran"
    run = Run.objects.get(uuid=chunk.run_uuid)
    reply = Message.objects.get(run=run).content
    assert all(reply.startswith(s) for s in snapshots)  # each snapshot is the reply so far
    assert snapshots == sorted(snapshots, key=len)
    assert run.status == Run.Status.COMPLETED and run.partial_content == ""


def test_an_abandoned_stream_is_stored_as_cancelled_with_what_was_said(session, settings):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.005
    stream = run_stream(session=session)
    said = [next(stream).content for _ in range(4)]
    stream.close()
    reply = Message.objects.get(session=session, role="assistant")
    assert reply.metadata == {"cancelled": True}
    assert reply.content == "".join(said)
    run = Run.objects.get(pk=reply.run_id)
    assert run.status == Run.Status.CANCELLED
    session.refresh_from_db()
    assert session.active_run_uuid is None
    assert not leases.keeper.active.get(str(run.uuid))
