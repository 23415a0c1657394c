"""The in-process transport: what a caller sees before and around a run."""

from __future__ import annotations

import time

import pytest

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import InvalidParams, SessionOfOtherChatModel
from chatmodel_app.models import Session
from chatmodel_app.transports.orm import OrmTransport


def test_a_malformed_session_uuid_is_refused_at_construction(make_chat_model):
    make_chat_model()
    with pytest.raises(InvalidParams, match="session_uuid must be a UUID .* not 'not-a-uuid'") as caught:
        ChatModel("simple_assistant", "not-a-uuid")
    assert isinstance(caught.value, ValueError) and caught.value.code == "invalid_params"
    assert not Session.objects.exists()


def test_a_session_of_another_chat_model_is_neither_reused_nor_created(make_chat_model):
    make_chat_model("weather_bot")
    make_chat_model()
    theirs = ChatModel("weather_bot")
    theirs.add_messages([{"role": "user", "content": "Rain?"}])
    mine = ChatModel("simple_assistant", theirs.session_uuid)
    assert isinstance(mine._transport, OrmTransport)
    with pytest.raises(SessionOfOtherChatModel, match="another chat model"):
        mine.add_messages([{"role": "user", "content": "hi"}])
    res = mine.run()
    assert res.error and res.error_code == "session_not_found"
    assert Session.objects.get().chat_model.name == "weather_bot"


# The sync calls hop to a worker thread with a database connection of its own: it must see committed rows.
@pytest.mark.django_db(transaction=True)
async def test_sync_calls_from_async_code_work_as_the_seed_writes_them(make_chat_model):
    from asgiref.sync import sync_to_async

    await sync_to_async(make_chat_model)()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])  # sync, from inside the event loop
    res = await session.arun()
    chunks = list(session.run(stream=True))
    assert not res.error and res.content and chunks[-1].is_final and not chunks[-1].error
    assert res.parsed_outputs is None and chunks[-1].parsed_outputs is None
    assert [m["role"] for m in session.get_config().message_logs] == ["user", "assistant", "assistant"]


@pytest.mark.django_db(transaction=True)
def test_rejoin_follows_a_run_in_progress_to_its_end(make_chat_model, settings):
    import threading

    from django.db import connections

    from chatmodel_app.models import Message
    from chatmodel_app.services import leases

    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.02
    make_chat_model()
    first = ChatModel("simple_assistant")
    first.add_messages([{"role": "user", "content": " ".join(f"w{i}" for i in range(60))}])
    assert list(ChatModel("simple_assistant", first.session_uuid).rejoin()) == []  # nothing running yet

    def drive():
        try:
            list(first.run(stream=True))
        finally:
            connections.close_all()

    thread = threading.Thread(target=drive)
    thread.start()
    session_id = first._transport.session().pk
    while leases.holder(session_id=session_id) is None and thread.is_alive():
        time.sleep(0.01)
    time.sleep(0.2)
    chunks = list(ChatModel("simple_assistant", first.session_uuid).rejoin())
    thread.join(30)
    final = chunks[-1]
    assert final.is_final and not final.error and final.status == "completed"
    reply = Message.objects.get(pk=final.message_id)
    assert chunks[0].content and len(chunks[0].content) < len(reply.content)  # joined mid-run
    assert "".join(c.content for c in chunks) == reply.content
