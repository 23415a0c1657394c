"""The async pipeline's database steps run on a pool of threads (CHATMODEL_DB_THREADS), not one shared thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync

from chatmodel_app import ChatModel
from chatmodel_app.models import Message, Run
from chatmodel_app.services import steps
from chatmodel_app.testing import FakeReply


def test_the_default_is_one_shared_thread_on_sqlite_and_a_pool_elsewhere(settings):
    settings.CHATMODEL_DB_THREADS = None
    from django.db import connections

    expected = 1 if connections["default"].vendor == "sqlite" else 8
    assert steps.db_threads() == expected
    settings.CHATMODEL_DB_THREADS = 3
    assert steps.db_threads() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_async_runs_do_their_database_steps_on_several_threads(
    fake_chat_model, fake_llm, settings, monkeypatch
):
    settings.CHATMODEL_DB_THREADS = 4
    fake_chat_model()
    sessions = []
    for i in range(6):
        chat = ChatModel("simple_assistant")
        chat.add_messages([{"role": "user", "content": f"question {i}"}])
        sessions.append(chat)
        fake_llm.enqueue(FakeReply(content=f"answer {i}", delay=0.05))

    threads_seen: set[str] = set()
    original = steps._in_db_thread

    def spy(fn, args, kwargs):
        threads_seen.add(threading.current_thread().name)
        return original(fn, args, kwargs)

    monkeypatch.setattr(steps, "_in_db_thread", spy)

    async def all_runs():
        return await asyncio.gather(*(chat.arun() for chat in sessions))

    try:
        results = async_to_sync(all_runs)()
    finally:
        steps.db_threads_stop()  # their connections closed, so the test database can be dropped
    assert all(not r.error for r in results), [r.error_log for r in results]
    assert sorted(r.content for r in results) == sorted(f"answer {i}" for i in range(6))
    # Every reply is stored on its own session, and every Run completed.
    for chat in sessions:
        assert list(
            Message.objects.filter(session__uuid=chat.session_uuid).order_by("seq").values_list("role", flat=True)
        ) == ["user", "assistant"]
    assert Run.objects.filter(status=Run.Status.COMPLETED).count() == 6
    assert len(threads_seen) > 1 and all(name.startswith("chatmodel-db") for name in threads_seen)
