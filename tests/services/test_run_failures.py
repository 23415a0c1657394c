"""run()/arun() never raise: each failure is an error response, and the session's messages stay as they were."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from chatmodel_app import ChatModel
from chatmodel_app.models import Message, Run, Session
from chatmodel_app.testing import FakeReply, refused_url


def history(session: ChatModel) -> list[tuple[int, str, str | None]]:
    return list(
        Message.objects.filter(session__uuid=session.session_uuid).order_by("seq").values_list("seq", "role", "content")
    )


def started(name: str = "simple_assistant") -> ChatModel:
    session = ChatModel(name)
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    return session


def test_unknown_chat_model(db):
    res = ChatModel("no_such_bot").run()
    assert res.error and res.error_code == "chat_model_not_found"
    assert "no_such_bot" in res.error_log
    assert not Session.objects.exists()


def test_unknown_chat_model_stream(db):
    chunks = list(ChatModel("no_such_bot").run(stream=True))
    assert len(chunks) == 1 and chunks[0].is_final and chunks[0].error
    assert chunks[0].error_code == "chat_model_not_found"


def test_no_published_version(make_chat_model):
    make_chat_model(published=False)
    res = ChatModel("simple_assistant").run()
    assert res.error and res.error_code == "version_not_found"
    assert "no published version" in res.error_log and "latest" in res.error_log


def test_add_messages_and_config_raise_for_unknown_chat_model(db):
    from chatmodel_app.exceptions import ChatModelNotFound

    with pytest.raises(ChatModelNotFound):
        ChatModel("no_such_bot").add_messages([{"role": "user", "content": "hi"}])
    with pytest.raises(ChatModelNotFound):
        ChatModel("no_such_bot").get_config()


PROVIDER_FAULTS = [
    ("401", "authentication", "API key"),
    ("429", "rate_limit", "rate limit"),
    ("500", "provider_error", "provider failed"),
    ("400_context", "context_window_exceeded", "context window"),
    ("malformed", "malformed_response", "malformed"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize(("fault", "code", "words"), PROVIDER_FAULTS, ids=[f[0] for f in PROVIDER_FAULTS])
def test_provider_faults(fake_chat_model, fake_llm, fault, code, words, stream):
    fake_chat_model()
    session = started()
    before = history(session)
    fake_llm.enqueue(FakeReply(content="never stored", fault=fault))
    res = list(session.run(stream=True))[-1] if stream else session.run()
    assert res.error and res.error_code == code, res.error_log
    assert words.lower() in res.error_log.lower()
    assert history(session) == before
    run = Run.objects.get(uuid=res.run_uuid)
    assert run.status in (Run.Status.FAILED, Run.Status.INCOMPLETE) and run.error == code
    assert run.error_log == res.error_log
    # The session is free again: the next run answers.
    assert not session.run().error


@override_settings(CHATMODEL_TIMEOUT=0.5)
def test_timeout(fake_chat_model, fake_llm):
    fake_chat_model()
    session = started()
    before = history(session)
    fake_llm.enqueue(FakeReply(content="too late", fault="slow", delay=2.0))
    res = session.run()
    assert res.error and res.error_code == "timeout"
    assert "timeout" in res.error_log.lower()
    assert history(session) == before
    assert Run.objects.get(uuid=res.run_uuid).status == Run.Status.FAILED


def test_connection_refused(make_chat_model, fake_key):
    make_chat_model(model="openai/fake-model", params={"api_base": refused_url()})
    session = started()
    before = history(session)
    res = session.run()
    assert res.error and res.error_code == "connection_error", res.error_log
    assert "connect" in res.error_log.lower()
    assert history(session) == before


@pytest.mark.parametrize("fault", ["cut", "eof"])
def test_stream_cut_keeps_partial_text_on_run_marked_incomplete(fake_chat_model, fake_llm, fault):
    fake_chat_model()
    session = started()
    before = history(session)
    fake_llm.enqueue(FakeReply(content="one two three four five", fault=fault, cut_after=2))
    chunks = list(session.run(stream=True))
    final = chunks[-1]
    assert "".join(c.content for c in chunks[:-1]) == "one two"
    assert final.is_final and final.error and final.error_code == "stream_cut"
    assert final.status == Run.Status.INCOMPLETE
    run = Run.objects.get(uuid=final.run_uuid)
    assert run.status == Run.Status.INCOMPLETE and run.partial_content == "one two"
    # Not stored as if it were a finished answer.
    assert history(session) == before


def test_stream_without_finish_reason_is_incomplete():
    """LiteLLM can end a cut stream with a finish_reason of "stop" it made up; the assembler is not fooled."""
    from types import SimpleNamespace

    from chatmodel_app.llm import StreamAssembler

    def chunk(text, finish=None):
        delta = SimpleNamespace(content=text, tool_calls=None, function_call=None)
        return SimpleNamespace(choices=[SimpleNamespace(delta=delta, finish_reason=finish)])

    wrapper = SimpleNamespace(received_finish_reason=None, intermittent_finish_reason=None)
    assembler = StreamAssembler(wrapper, "openai/x")
    for piece in ("one", " two"):
        assembler.feed(chunk(piece))
    assembler.chunks = []  # nothing for stream_chunk_builder: the verdict comes from the wrapper
    assert assembler.finish().complete is False
    wrapper.received_finish_reason = "stop"
    assembler.feed(chunk(" three", "stop"))
    assert StreamAssembler(wrapper, "openai/x").finish().complete is False  # no chunks at all
    assert assembler.partial_text == "one two three"


def test_context_too_long_is_refused_before_the_provider(fake_chat_model, fake_llm):
    fake_chat_model(context_window=300)
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "word " * 2000}])
    before = history(session)
    res = session.run()
    assert res.error and res.error_code == "context_window_exceeded"
    assert "context window" in res.error_log
    assert fake_llm.requests == []
    assert history(session) == before


def test_database_error_while_storing_the_reply(fake_chat_model, fake_llm):
    fake_chat_model()
    session = started()
    before = history(session)

    def fail_message_insert(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and "chatmodel_app_message" in sql:
            raise OperationalError("disk I/O error (injected)")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_message_insert):
        res = session.run()
    assert res.error and res.error_code == "database_error"
    assert "disk I/O error" in res.error_log
    assert history(session) == before
    run = Run.objects.get(uuid=res.run_uuid)
    assert run.status == Run.Status.FAILED and run.error == "database_error"
    assert not session.run().error  # released, usable


def test_database_error_before_the_run(make_chat_model):
    make_chat_model()
    session = started()

    def fail_everything(execute, sql, params, many, context):
        raise OperationalError("database is gone (injected)")

    with connection.execute_wrapper(fail_everything):
        res = session.run()
        chunks = list(ChatModel("simple_assistant", session.session_uuid).run(stream=True))
    assert res.error and res.error_code == "database_error"
    assert chunks[-1].error and chunks[-1].error_code == "database_error"


def test_invalid_params_are_refused(make_chat_model):
    make_chat_model(params={"max_tokens": 100})
    session = started()
    for params, words in [
        ({"api_base": "http://evil.example"}, "cannot be set"),
        ({"model": "gpt-4"}, "cannot be set"),
        ({"api_key": "sk-x"}, "cannot be set"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 1000}, "at most 100"),
    ]:
        res = session.run(**params)
        assert res.error and res.error_code == "invalid_params" and words in res.error_log
    res = session.run(functions=[{"name": "bad name!"}])
    assert res.error and res.error_code == "invalid_params"
    assert not Run.objects.exists()


def test_pending_function_call_must_be_answered(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "What's the weather in Boston?"}])
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}
    assert session.run(functions=[weather]).function_call.name == "get_weather"
    res = session.run()
    assert res.error and res.error_code == "invalid_messages" and "waiting for its result" in res.error_log


@pytest.mark.django_db(transaction=True)
async def test_arun_failure(fake_chat_model, fake_llm):
    from asgiref.sync import sync_to_async

    await sync_to_async(fake_chat_model)()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    before = await sync_to_async(history)(session)
    fake_llm.enqueue(FakeReply(fault="500"))
    res = await session.arun()
    assert res.error and res.error_code == "provider_error"
    fake_llm.enqueue(FakeReply(content="one two three", fault="cut", cut_after=1))
    chunks = [c async for c in session.arun(stream=True)]
    assert chunks[-1].error and chunks[-1].error_code == "stream_cut"
    assert await sync_to_async(history)(session) == before
